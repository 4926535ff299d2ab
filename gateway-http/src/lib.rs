//! # gateway-http
//!
//! An origin HTTP server for any `tower::Service` over `http` types (an axum
//! `Router` runs unchanged), built on hyper 1.x: HTTP/1.1 with keep-alive
//! and pipelining, chunked bodies both ways, `Expect: 100-continue`, and
//! HTTP/2 with prior knowledge. Every request goes through the same
//! [`gateway_core::Handler`] as the CGI, FastCGI and SCGI backends: the
//! environ is derived from the request the way Python's wsgiref
//! `simple_server` does (`SCRIPT_NAME` empty, `PATH_INFO` percent-decoded,
//! `HTTP_*` with repeated fields joined by `,`), the response goes through
//! the core's pipeline (head checks, Content-Length rules, error page) and
//! hyper writes it.
//!
//! ## Getting started
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let app = tower::service_fn(|_req: http::Request<gateway_http::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new("Hello, world!\n".to_string()))
//! });
//! gateway_http::serve("127.0.0.1:8000", app).await
//! # }
//! ```
//!
//! [`serve`] listens on an address and stops gracefully on SIGTERM or
//! SIGINT. [`Server`] holds the settings (handler, limits, the `Server`
//! header, HTTP/2, shutdown, runtime threads) and serves in three ways:
//!
//! - [`Server::run`]: the whole `main`, on a runtime of its own, with
//!   systemd socket activation and readiness, stopping on SIGTERM;
//! - [`Server::serve`]: on a [`Listener`] (TCP, a Unix socket, the socket
//!   on fd 0, a systemd socket), on the caller's runtime, until the
//!   [`Shutdown`];
//! - [`Server::connections`]: the server with its application
//!   ([`Connections`]), which serves and refuses accepted connections one by
//!   one, for an accept loop of your own or a socket shared with other
//!   protocols.
//!
//! ## Behaviour
//!
//! - The head: hyper writes the status line and adds `Date` (unless the
//!   application gave one), so the header order is `Server`, the
//!   application's headers, then `Date` (wsgiref puts `Date` first).
//! - A response that fails after its head (a body error, a body shorter
//!   than its Content-Length) ends the connection without a clean end: no
//!   chunked terminator, a short body, or an HTTP/2 stream reset, so the
//!   client sees truncation.
//! - `HEAD`: no body bytes; the application's Content-Length is kept.
//! - The handler runs in the task hyper polls the request in (HTTP/1: the
//!   connection's task, no task per request; HTTP/2: the stream's task):
//!   first until the head is ready, then as hyper reads the response body.
//!   A client that goes away drops the body, and with it the application's
//!   future; so does a timeout (a client that takes nothing written to it,
//!   or an HTTP/2 stream whose window stays shut, for `write_timeout`).
//! - A request body the client sends too slowly, too large, malformed or
//!   cut short fails the application's read with the core's body error
//!   ([`gateway_core::Error::is_body_timeout`] and its siblings); an
//!   application that passes it on before sending anything gets the client
//!   a 408, 413 or 400, and nothing is logged as an application error.
//! - Past `max_connections` a new connection gets a busy answer at once
//!   (HTTP/1: 503 with `Retry-After: 1`; HTTP/2: GOAWAY with
//!   REFUSED_STREAM) and is closed.
//! - Bad requests are answered by hyper before the application runs: a
//!   request target over 65534 bytes gets 414, a head over `max_head_len`
//!   or too many headers 431, raw non-ASCII bytes in the target,
//!   Content-Length with Transfer-Encoding, duplicate Content-Lengths and
//!   obs-fold 400; the connection is then closed.
//! - The application gets the request as hyper parsed it (every header,
//!   repeated ones separate, in its `HeaderMap`), with the scheme and the
//!   `Host` authority filled in so that `req.uri()` reads as on every other
//!   backend; the core does not rebuild it from the environ. Header names
//!   with `_` are left out of the environ (as `simple_server` does).
//! - Per request the server allocates the deferred environ, which holds a
//!   copy of the request head (the field values shared with hyper's, not
//!   copied): the environ itself is made only if something reads it. The
//!   copy's list of fields, the handler's future and the one-chunk
//!   exchange between the handler and the response body are allocated once
//!   per connection and reused by the requests that follow (a request
//!   whose handler is still running when the next one starts, such as on
//!   HTTP/2, or whose environ the application kept, gets its own); there
//!   is no channel, and on HTTP/1 no task and no timer per request. The
//!   response head goes to hyper as the application made it, not copied. `INSTR=1 scripts/bench-http.sh` counts the
//!   instructions this costs against a bare hyper server.
//! - Between requests, an HTTP/1 keep-alive connection quiet for 25 to
//!   50 ms is parked: hyper's connection state and buffers are freed, the
//!   socket stays open, and the next bytes get a new hyper connection (see
//!   [`Server`]). A client that sends its next request at once never meets
//!   a parked connection.
//!
//! - HTTP/1.1 `Upgrade` (WebSocket): an axum `WebSocketUpgrade` route works
//!   unchanged (the request carries hyper's `OnUpgrade`, and a 101 keeps
//!   its `Connection` and `Upgrade`). The upgraded connection counts
//!   against `max_connections` until the application drops it, and is shut
//!   down once the server stops and the grace period is over.
//! - HTTP/2 extended CONNECT (RFC 8441, [`Server::extended_connect`], on by
//!   default): a WebSocket over HTTP/2 reaches the application as a
//!   `CONNECT` request with hyper's `OnUpgrade` and `hyper::ext::Protocol`,
//!   and a `2xx` answer hands the stream over; an axum `WebSocketUpgrade`
//!   route routed with `any` serves both HTTP versions. While such a stream
//!   is open its connection is not closed for being idle; once the server
//!   stops, it gets the grace period, then the connection is closed.
//!
//! Limits and timeouts: see [`Server`].

mod body;
mod conn;
mod date;
mod gateway;
mod h2streams;
mod refuse;
mod server;
mod stream;
#[cfg(test)]
mod tests;
mod upgrade;

pub use gateway_core::server::{ListenAddr, Listener, ServerOptions, Shutdown};
pub use gateway_core::{
    Body, BoxError, ErrorStream, Handler, HandlerBuilder, Limits, Metrics, PathView,
};
pub use server::{Connections, Server};

use gateway_core::{AppBody, Application};

/// Serves `app` over HTTP on `addr` with the default [`Server`], until
/// SIGTERM or SIGINT; the requests in flight then get the grace period
/// (30 s) to finish. `addr` is a [`ListenAddr`]: `HOST:PORT` with an IP
/// address, `unix:PATH[?mode=OCTAL]`, `fd:0`, `systemd` or `systemd:NAME`
/// (for systemd sockets prefer [`Server::run`], which adopts them before
/// any thread starts). The socket's listen backlog is the default
/// [`Limits::listen_backlog`]. Logs "HTTP server listening on ADDR" at info
/// level and tells systemd when it is ready and when it stops.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`](std::io::ErrorKind::InvalidInput) for an
/// address that cannot be read (the message names the accepted forms);
/// the error of opening it otherwise.
pub async fn serve<S, B>(addr: &str, app: S) -> std::io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let addr = gateway_core::server::parse_addr(addr)?;
    Server::new().serve_addr(&addr, app).await
}

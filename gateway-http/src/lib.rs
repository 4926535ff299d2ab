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
//! let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new("Hello, world!\n".to_string()))
//! });
//! gateway_http::serve("127.0.0.1:8000", app).await
//! # }
//! ```
//!
//! [`Server`] configures limits, the handler, HTTP/2 and shutdown; it serves
//! on any [`gateway_core::server::Listener`] (TCP or a Unix socket).
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
//! - Per request the server allocates the environ (one buffer holds all the
//!   values copied from the request), the handler's future and a one-chunk
//!   exchange between the handler and the response body; there is no
//!   channel, and on HTTP/1 no task per request. `INSTR=1 scripts/bench-http.sh`
//!   counts the instructions this costs against a bare hyper server.
//!
//! Limits and timeouts: see [`Server`].

mod body;
mod conn;
mod gateway;
mod io;
mod refuse;
mod server;
mod stream;

pub use server::{SERVER_SOFTWARE, Server};

use gateway_core::server::{BindOptions, Listener, Shutdown, signal};
use gateway_core::{AppBody, Application};

/// Serves `app` on `addr` (`HOST:PORT` or `unix:PATH`) with the defaults,
/// until SIGTERM or SIGINT; in-flight requests then get the shutdown's
/// deadline to finish. The socket's listen backlog is the default
/// [`Limits::listen_backlog`](gateway_core::Limits::listen_backlog).
pub async fn serve<S, B>(addr: &str, app: S) -> std::io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let backlog = gateway_core::Limits::default().get_listen_backlog();
    let listener =
        Listener::bind_with(addr, BindOptions::new().remove_stale(true).backlog(backlog)).await?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on(signal());
    Server::new().shutdown(shutdown).serve(listener, app).await
}

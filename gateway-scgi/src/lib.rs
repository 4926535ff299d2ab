//! An SCGI application server for tower and axum applications.
//!
//! SCGI (nascheme/scgi `doc/protocol.txt`) is the simple alternative to
//! FastCGI: the web server (nginx `scgi_pass`, Apache `mod_proxy_scgi`,
//! lighttpd `mod_scgi`) opens a connection per request, sends the CGI
//! environment as a netstring of `name NUL value NUL` pairs followed by the
//! body, reads a CGI-style response, and the application server closes the
//! connection.
//!
//! ## Getting started
//!
//! ```no_run
//! # async fn doc() -> std::io::Result<()> {
//! let app = tower::service_fn(|_req: http::Request<gateway_scgi::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new("Hello, world!\n".to_string()))
//! });
//! gateway_scgi::serve("127.0.0.1:4000", app).await
//! # }
//! ```
//!
//! and in nginx: `location / { include scgi_params; scgi_pass 127.0.0.1:4000; }`
//! (complete configurations for nginx, Apache and lighttpd are in the
//! repository's `examples/webservers/scgi/`).
//!
//! [`Server`] configures the rest: the core [`Handler`] and its [`Limits`],
//! the grace period of the [`Shutdown`], strictness about the `SCGI`
//! marker, the runtime of [`Server::run`]. It listens wherever a
//! [`ListenAddr`] says: TCP, Unix sockets (`unix:PATH`), the listening
//! socket on file descriptor 0 (`fd:0`), sockets passed by systemd. The
//! FastCGI and HTTP servers of this workspace have the same shape, so
//! moving an application between protocols changes the crate name only:
//!
//! ```no_run
//! use gateway_scgi::{ListenAddr, Server};
//!
//! fn main() -> std::io::Result<()> {
//!     let app = tower::service_fn(|_req: http::Request<gateway_scgi::Body>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new("Hello\n".to_string()))
//!     });
//!     let addr: ListenAddr = "unix:/run/app.sock?mode=660"
//!         .parse()
//!         .map_err(std::io::Error::other)?;
//!     Server::new().max_connections(256).run(&addr, app)
//! }
//! ```
//!
//! [`Connections`] is a server with its application, serving connections
//! one by one, for accept loops of your own.
//!
//! ## How a connection is served
//!
//! One request per connection, as the protocol defines:
//!
//! 1. the netstring header is read within `head_read_timeout`, capped at
//!    `max_head_len`; its pairs become the environ, raw and in order;
//! 2. the application runs through [`gateway_core::Handler`], which builds
//!    the request, applies the error policy and writes the response in CGI
//!    form (`Status: 200 OK`, headers, body) — nginx, Apache and lighttpd
//!    all parse that form;
//! 3. the body is streamed to the application from the socket, exactly
//!    `CONTENT_LENGTH` bytes, each read within `body_read_timeout`; a body
//!    cut short is a body error for the application, never a short body;
//! 4. the server ends its side and reads what the web server still sends
//!    (a body the application did not read) for up to two seconds before it
//!    closes, so the web server never sees a reset that could destroy the
//!    response.
//!
//! A malformed header is answered `Status: 400 Bad Request` and the
//! connection closed; a truncated header, a timeout or a read error close
//! it silently (all logged at debug level). A response that fails after its
//! head resets the connection, so the web server passes the failure on
//! (it drops the client connection) instead of ending the body normally.
//!
//! ## Limits and defaults
//!
//! | limit ([`gateway_core::Limits`]) | default | effect |
//! |---|---|---|
//! | `max_head_len` | 64 KiB | a longer header block is answered 400 |
//! | `head_read_timeout` | 30 s | the whole header; then the connection closes |
//! | `body_read_timeout` | 60 s | each body read; then the body fails |
//! | `write_timeout` | 60 s | each response write |
//! | `max_connections` | 1024 | past it, a new connection is answered 503 at once |
//! | `listen_backlog` | 1024 | the backlog of an address the server binds itself |
//! | `max_body_len` | none | a larger `CONTENT_LENGTH` is answered 413 |
//! | `app_timeout` | none | a slower application is cancelled and answered 503 |
//!
//! ## Protocol layer
//!
//! - [`proto`]: the sans-I/O request-header parser ([`proto::HeaderParser`])
//!   with its limits and strictness ([`proto::Config`]);
//! - [`codec`]: a `tokio_util` decoder yielding the header, then the body up
//!   to `CONTENT_LENGTH`, then the end of the request.
//!
//! ```
//! use bytes::BytesMut;
//! use gateway_scgi::proto::{Config, HeaderParser, Marker};
//!
//! let mut parser = HeaderParser::new(&Config::new());
//! let mut buf = BytesMut::from(
//!     &b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00\
//!        REQUEST_URI\x00/deepthought\x00,What is the answer to life?"[..],
//! );
//! let header = parser.parse(&mut buf)?.ok_or("incomplete header")?;
//! assert_eq!(header.content_length(), 27);
//! assert_eq!(header.marker(), Marker::Present);
//! assert_eq!(header.get(b"REQUEST_URI"), Some(&b"/deepthought"[..]));
//! assert_eq!(&buf[..], b"What is the answer to life?");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
mod connection;
mod error;
mod gateway;
pub mod proto;
mod server;

pub use error::Error;
pub use gateway_core::server::{ListenAddr, Listener, ServerOptions, Shutdown};
pub use gateway_core::{
    Body, BoxError, ErrorStream, Handler, HandlerBuilder, Limits, Metrics, PathView,
};
pub use server::{Connections, Server, serve};

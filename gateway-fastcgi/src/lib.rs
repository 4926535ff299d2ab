//! FastCGI 1.0 application server for tower and axum applications.
//!
//! A web server (nginx, Apache httpd, lighttpd, IIS, or libfcgi's
//! `cgi-fcgi`) forwards requests to the application over FastCGI; this crate
//! speaks the application side of the protocol so that any
//! `tower::Service` over `http` types, an axum `Router` included, can answer
//! them with the handler semantics of `gateway-core`.
//!
//! # Serving
//!
//! The one-liner, on the caller's runtime until SIGINT or SIGTERM:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let app = tower::service_fn(|_req: http::Request<gateway_fastcgi::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
//! });
//! gateway_fastcgi::serve("127.0.0.1:9000", app).await
//! # }
//! ```
//!
//! [`Server`] holds the settings (the [`Handler`] with its [`Limits`],
//! multiplexing, the request cap, where the error stream goes, how a failed
//! response ends, the web server allow-list, the shutdown and its grace
//! period, the runtime's threads) and no application: [`Server::run`] is a
//! whole `main` (its own runtime, systemd socket activation and readiness,
//! a graceful stop on SIGINT and SIGTERM), [`Server::serve`] serves a
//! [`Listener`] on the caller's runtime, and [`Server::connections`] gives
//! the [`Connections`] that serve accepted connections one by one, for an
//! accept loop of your own. The SCGI and HTTP servers of this workspace
//! have the same shape.
//!
//! ```no_run
//! use gateway_fastcgi::{ListenAddr, Limits, Server};
//!
//! let app = tower::service_fn(|_req: http::Request<gateway_fastcgi::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
//! });
//! let mut limits = Limits::default();
//! limits.max_body_len(Some(10 << 20));
//! let addr: ListenAddr = "unix:/run/app.sock?mode=660".parse().expect("a listen address");
//! Server::new().limits(limits).multiplex(true).run(&addr, app)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Each request runs [`Handler::run`] once its parameters have arrived; its
//! body streams from `FCGI_STDIN` with bounded buffering.
//! `FCGI_ABORT_REQUEST` and a closed connection cancel the application.
//!
//! One dispatcher serves every connection. While a request is the only one
//! in flight on its connection (always so without multiplexing, the
//! default, and what most web servers do), its handler runs inside the
//! connection's task, next to the reads of the connection, with no task of
//! its own; its records go into the connection's output buffer, so a small
//! response and the end of the request leave in one write. With
//! [`Server::multiplex`], when a second request arrives while the first
//! runs, both go to tasks of their own so that neither waits for the other
//! (in parallel with [`Server::work_stealing`]); their
//! records go through the same buffer, which the connection's task alone
//! writes. [`Server::dispatch`] chooses another [`Dispatch`] strategy.
//!
//! A response that fails after its head was sent ends with what was
//! produced, then `FCGI_END_REQUEST` with appStatus 1 (spec §5.5); the web
//! servers pass that on as a normal end, so
//! [`Server::abort_with_reset`] offers resetting the connection instead,
//! which they show the client as a truncated response.
//!
//! # The protocol layer
//!
//! In [`proto`], free of I/O:
//!
//! - records: the spec's constants, the header, a decoder that accepts input
//!   split anywhere and skips padding, and encoders that write each record
//!   (header, content, padding) contiguously, splitting large output;
//! - name-value pairs with 1- and 4-byte lengths, decoded across record
//!   boundaries, with caps on their size and number;
//! - request assembly: a per-connection state machine that checks the order
//!   of records, tracks the active requests, answers management queries,
//!   admits or refuses requests, keeps the connection's deadlines (with the
//!   time passed in: [`proto::Connection::poll_timeout`],
//!   [`proto::Connection::handle_timeout`]), and reports
//!   [`proto::Event`]s;
//! - the output encoder for one request's response;
//! - a [`tokio_util::codec`] adapter, [`codec::RecordCodec`].
//!
//! # Defaults and limits
//!
//! [`proto::Config`] on its own defaults to what libfcgi reports to
//! `FCGI_GET_VALUES` (one connection, one request, no multiplexing); the
//! [`Server`] fills it from its own configuration. It caps one request's
//! parameters at 1 MiB and 4096 pairs. A record is at most
//! [`proto::MAX_RECORD_LEN`] bytes, so the decoder never buffers more than
//! that. Any protocol violation is reported as a [`proto::ProtocolError`]
//! and means the connection must be closed.

pub mod codec;
mod dispatch;
mod error;
mod gateway;
mod input;
pub mod proto;
mod refuse;
mod server;
mod strategy;
mod transport;

pub use error::Error;
pub use gateway_core::server::{ListenAddr, Listener, ServerOptions, Shutdown};
pub use gateway_core::{
    Body, BoxError, ErrorStream, Handler, HandlerBuilder, Limits, Metrics, PathView,
};
pub use input::FilterData;
pub use server::{Connections, Server, parse_web_server_addrs, serve};
pub use strategy::Dispatch;

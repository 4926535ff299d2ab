//! # gateway-core
//!
//! The protocol-agnostic heart of the gateway workspace: it runs any web
//! application — an axum `Router`, any [`tower::Service`] over [`http`]
//! types — over any backend, with the semantics of Python's
//! `wsgiref.handlers`. It has no sockets: the protocol crates
//! (`gateway-cgi`, `gateway-fastcgi`, `gateway-scgi`, `gateway-http`)
//! implement [`Gateway`] and call [`Handler::run`].
//!
//! What the core owns, for every backend alike:
//! - the request view: the CGI meta-variables as an [`Environ`] of raw bytes,
//!   and the [`http::Request`] built from it by one documented rule
//!   ([`request::build_request`]), with a [`RequestContext`] (the environ,
//!   [`GatewayInfo`] and the request's [`ErrorStream`]) in its extensions;
//! - the response pipeline: head checks, the lazy head (nothing is written
//!   until the first non-empty body chunk or the end of the body),
//!   Content-Length rules (set when the body size is exactly known, none on
//!   1xx/204, none invented on 304, no body bytes for HEAD, never more than
//!   declared), write coalescing with a flush whenever the body would block;
//! - the error policy: the error page while nothing has been sent, an
//!   aborted response after ([`Outcome::is_aborted`]), panics caught, a
//!   client that went away treated as no error, repeated identical failures
//!   summarised so that a failing route cannot flood the log (see
//!   [`Handler`]);
//! - file bodies ([`FileBody`]) and the backend's sendfile hook, and
//!   [`offload::OffloadLayer`], which hands whole files to the web server
//!   (`X-Accel-Redirect`, `X-Sendfile`);
//! - a `tracing` span per request, and (feature `tracing-layer`) a layer
//!   that sends what the application logs to the web server's error log
//!   ([`logging`]); the slow-request log ([`Limits::slow_request`]);
//! - server metrics and the status page ([`Metrics`]), as JSON and
//!   OpenMetrics text, served by a `tower::Service`;
//! - the head encoders ([`head`]) and the shared [`Limits`].
//!
//! ## Getting started
//!
//! Application authors use a protocol crate (`gateway_cgi::run(app)`).
//! Gateway authors implement [`Gateway`] — the I/O half of wsgiref's
//! `BaseHandler` — and get the rest:
//!
//! ```
//! use gateway_core::{Environ, ErrorStream, Handler, StreamGateway};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new("http".to_string()))
//! });
//! let mut env = Environ::new();
//! env.setup_testing_defaults();
//! let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), env);
//! Handler::new().run(&mut gw, app).await;
//! assert_eq!(gw.writer(), b"Status: 200 OK\r\nContent-Length: 4\r\n\r\nhttp");
//! # });
//! ```
//!
//! ## Limits and defaults
//!
//! See [`Limits`]. The handler itself applies `max_body_len` (a larger
//! declared body is answered 413 without calling the application) and
//! `max_response_head_len` (a larger head is a 500).

mod app;
mod body;
mod environ;
mod environ_builder;
mod error;
mod file;
mod gateway;
mod handler;
pub mod head;
pub mod imperative;
mod info;
mod limits;
pub mod logging;
pub mod metrics;
pub mod offload;
mod outcome;
mod pipeline;
mod repeats;
pub mod request;
#[cfg(feature = "server")]
pub mod server;
mod slow;
pub mod validate;

pub use app::{AppBody, Application};
pub use body::Body;
pub use environ::{BodyLength, Environ, EnvironSource, InvalidContentLength, NameFilter};
pub use environ_builder::{EnvironBuilder, RepeatedName};
pub use error::{BoxError, Error, is_disconnect};
pub use file::{FileBody, FileRegion};
pub use gateway::{Gateway, RequestFacts, ResponseHead, StreamGateway};
pub use handler::{DEFAULT_ERROR_BODY, DEFAULT_REPEAT_SUMMARY, Handler, HandlerBuilder, PathView};
pub use head::{HeadFormat, ReasonPhrase};
pub use info::{Captured, ErrorSink, ErrorStream, GatewayInfo, Protocol, RequestContext};
pub use limits::Limits;
pub use logging::RequestId;
pub use metrics::{Failure, Metrics};
pub use outcome::Outcome;
pub use pipeline::{
    HOP_BY_HOP, X_ACCEL_BUFFERING, is_hop_by_hop, is_proper_switch, wants_unbuffered,
};

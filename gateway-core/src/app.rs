//! The bounds a server puts on the application it serves, named once.

use bytes::Buf;
use http::{Request, Response};
use tower::Service;

use crate::body::Body;
use crate::error::BoxError;

/// An application a socket server can run on many tasks: a `tower::Service`
/// from `Request<Body>` to `Response<B>` that is cheap to clone and can
/// cross threads, whose futures can too. Every such service is one (an axum
/// `Router`, a `service_fn`), with no impl to write.
pub trait Application<B>:
    Service<Request<Body>, Response = Response<B>, Future: Send, Error: Into<BoxError> + Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> Application<B> for S where
    S: Service<Request<Body>, Response = Response<B>, Future: Send, Error: Into<BoxError> + Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body such an application returns: any `http_body::Body` that
/// can cross threads, with errors the handler can report.
pub trait AppBody:
    http_body::Body<Data: Buf + Send, Error: Into<BoxError> + Send> + Send + 'static
{
}

impl<B> AppBody for B where
    B: http_body::Body<Data: Buf + Send, Error: Into<BoxError> + Send> + Send + 'static
{
}

//! The imperative style: `start_response(status, headers)` then `write(bytes)`,
//! for code ported from WSGI or CGI, as an adapter over the service model.
//!
//! ```
//! use gateway_core::imperative::{self, Responder};
//! use gateway_core::{Body, BoxError};
//!
//! async fn app(_req: http::Request<Body>, r: Responder) -> Result<(), BoxError> {
//!     r.start_response("200 OK", &[("Content-Type", "text/plain")])?;
//!     r.write("Hello, ").await?;
//!     r.write("world!\n").await?;
//!     Ok(())
//! }
//!
//! let service = imperative::service(app);
//! # let _ = service;
//! ```
//!
//! The head goes out with the first non-empty `write` (or when the function
//! returns), so an error before that still becomes the error page (PEP 3333);
//! an error after it aborts the response. `write` applies backpressure: it
//! waits while 64 KiB are queued and not yet taken by the gateway.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};

use crate::body::Body;
use crate::error::BoxError;
use crate::head::ReasonPhrase;
use crate::pipeline::is_hop_by_hop;

/// How much `write` queues before it waits for the gateway.
const QUEUE_MAX: usize = 64 * 1024;

/// An error from [`Responder::start_response`] or [`Responder::write`], with
/// wsgiref's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadError(&'static str);

impl HeadError {
    /// The message.
    pub fn message(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for HeadError {}

#[derive(Default)]
struct Shared {
    head: Option<(StatusCode, Option<ReasonPhrase>, HeaderMap)>,
    head_sent: bool,
    queue: VecDeque<Bytes>,
    queued: usize,
    writer: Option<Waker>,
}

/// The `start_response` and `write` of one request.
#[derive(Clone)]
pub struct Responder {
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Responder")
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parses a WSGI status string such as `"404 Not Found"`.
pub fn parse_status(status: &str) -> Result<(StatusCode, Option<ReasonPhrase>), HeadError> {
    let b = status.as_bytes();
    if b.len() < 4 {
        return Err(HeadError("Status must be at least 4 characters"));
    }
    if !b[..3].iter().all(u8::is_ascii_digit) {
        return Err(HeadError("Status message must begin w/3-digit code"));
    }
    if b[3] != b' ' {
        return Err(HeadError("Status message must have a space after code"));
    }
    if b.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(HeadError(
            "Control characters are not allowed in the status",
        ));
    }
    let code = StatusCode::from_bytes(&b[..3]).map_err(|_| HeadError("Invalid status code"))?;
    let reason = &status[4..];
    let custom = (code.canonical_reason() != Some(reason))
        .then(|| ReasonPhrase(Bytes::copy_from_slice(reason.as_bytes())));
    Ok((code, custom))
}

fn parse_headers(headers: &[(&str, &str)]) -> Result<HeaderMap, HeadError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if is_hop_by_hop(name) {
            return Err(HeadError("Hop-by-hop headers not allowed"));
        }
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HeadError("Invalid header name"))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| HeadError("Control characters are not allowed in header values"))?;
        map.append(n, v);
    }
    Ok(map)
}

impl Responder {
    /// Sets the status and headers. A second call is an error ("Headers
    /// already set!"); use [`replace_response`](Self::replace_response)
    /// to change them after an error, as `exc_info` does.
    pub fn start_response(&self, status: &str, headers: &[(&str, &str)]) -> Result<(), HeadError> {
        let (code, reason) = parse_status(status)?;
        let map = parse_headers(headers)?;
        let mut s = lock(&self.shared);
        if s.head.is_some() || s.head_sent {
            return Err(HeadError("Headers already set!"));
        }
        s.head = Some((code, reason, map));
        Ok(())
    }

    /// Replaces the status and headers, which works only while nothing has
    /// been sent (wsgiref's `exc_info`); after that it fails with "Headers
    /// already sent" and the caller should return its error to abort.
    pub fn replace_response(
        &self,
        status: &str,
        headers: &[(&str, &str)],
    ) -> Result<(), HeadError> {
        let (code, reason) = parse_status(status)?;
        let map = parse_headers(headers)?;
        let mut s = lock(&self.shared);
        if s.head_sent || !s.queue.is_empty() {
            return Err(HeadError("Headers already sent"));
        }
        s.head = Some((code, reason, map));
        Ok(())
    }

    /// Queues body bytes; waits while 64 KiB are queued. Writing before
    /// `start_response` is an error.
    pub async fn write(&self, data: impl Into<Bytes>) -> Result<(), HeadError> {
        let data = data.into();
        let mut data = Some(data);
        poll_fn(|cx| {
            let mut s = lock(&self.shared);
            if s.head.is_none() && !s.head_sent {
                return Poll::Ready(Err(HeadError("write() before start_response()")));
            }
            if s.queued >= QUEUE_MAX {
                s.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if let Some(d) = data.take()
                && !d.is_empty()
            {
                s.queued += d.len();
                s.queue.push_back(d);
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

type AppFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A `tower::Service` made from an imperative function; see [`service`].
#[derive(Clone)]
pub struct Imperative<F> {
    f: F,
}

impl<F> fmt::Debug for Imperative<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Imperative")
    }
}

/// Makes a service of `f(request, responder)`.
pub fn service<F, Fut>(f: F) -> Imperative<F>
where
    F: Fn(Request<Body>, Responder) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    Imperative { f }
}

impl<F, Fut> tower::Service<Request<Body>> for Imperative<F>
where
    F: Fn(Request<Body>, Responder) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    type Response = Response<ImperativeBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ImperativeBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let responder = Responder {
            shared: shared.clone(),
        };
        let mut fut: AppFuture = Box::pin((self.f)(req, responder));
        Box::pin(async move {
            let mut result = None;
            poll_fn(|cx| {
                if result.is_none()
                    && let Poll::Ready(r) = fut.as_mut().poll(cx)
                {
                    result = Some(r);
                }
                let s = lock(&shared);
                let ready = result.is_some() || (s.head.is_some() && !s.queue.is_empty());
                if ready {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            let mut s = lock(&shared);
            let finished = result.is_some();
            let error = match result {
                Some(Err(e)) if s.queue.is_empty() => return Err(e),
                Some(Err(e)) => Some(e),
                _ => None,
            };
            let Some((status, reason, headers)) = s.head.take() else {
                return Err(
                    HeadError("the application returned without calling start_response()").into(),
                );
            };
            s.head_sent = true;
            drop(s);
            let mut res = Response::new(ImperativeBody {
                app: if finished { None } else { Some(fut) },
                error,
                shared,
            });
            *res.status_mut() = status;
            *res.headers_mut() = headers;
            if let Some(r) = reason {
                res.extensions_mut().insert(r);
            }
            Ok(res)
        })
    }
}

/// The body of an [`Imperative`] response: what the function writes. Polling
/// it drives the function.
pub struct ImperativeBody {
    app: Option<AppFuture>,
    error: Option<BoxError>,
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for ImperativeBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ImperativeBody")
    }
}

impl ImperativeBody {
    fn pop(&self) -> Option<Bytes> {
        let mut s = lock(&self.shared);
        let chunk = s.queue.pop_front()?;
        s.queued -= chunk.len();
        if let Some(w) = s.writer.take() {
            w.wake();
        }
        Some(chunk)
    }
}

impl http_body::Body for ImperativeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.pop() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(app) = &mut self.app {
            match app.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => self.app = None,
                Poll::Ready(Err(e)) => {
                    self.app = None;
                    self.error = Some(e);
                }
                Poll::Pending => {}
            }
            if let Some(chunk) = self.pop() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.app.is_some() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.error.take().map(Err))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wsgiref's status messages.
    #[test]
    fn c19_status_checks() {
        assert_eq!(
            parse_status("200").unwrap_err().message(),
            "Status must be at least 4 characters"
        );
        assert_eq!(
            parse_status("20X OK").unwrap_err().message(),
            "Status message must begin w/3-digit code"
        );
        assert_eq!(
            parse_status("200OK").unwrap_err().message(),
            "Status message must have a space after code"
        );
        assert!(parse_status("200 O\nK").is_err());
        let (code, reason) = parse_status("200 OK").unwrap();
        assert_eq!((code, reason), (StatusCode::OK, None));
        let (_, reason) = parse_status("200 Okay").unwrap();
        assert_eq!(reason, Some(ReasonPhrase(Bytes::from_static(b"Okay"))));
    }

    /// control characters and hop-by-hop headers are refused.
    #[test]
    fn c18_c30_header_checks() {
        assert!(parse_headers(&[("X-Ok", "a\tb")]).is_ok());
        assert!(parse_headers(&[("X-Bad", "a\rb")]).is_err());
        assert!(parse_headers(&[("X-Bad", "a\x7fb")]).is_err());
        assert!(parse_headers(&[("X\x01Bad", "v")]).is_err());
        assert_eq!(
            parse_headers(&[("Connection", "close")])
                .unwrap_err()
                .message(),
            "Hop-by-hop headers not allowed"
        );
    }
}

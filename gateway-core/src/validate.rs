//! A lint layer for applications and gateways (wsgiref's
//! `validate`): wrap an application in [`ValidateLayer`] on any backend
//! and every rule broken becomes an error that names the rule.
//!
//! The request the gateway built is checked before the application runs:
//!
//! | rule | what |
//! |---|---|
//! | [`rule::ENVIRON`] | the request carries a [`RequestContext`](crate::RequestContext) whose [`Environ`](crate::Environ) has `REQUEST_METHOD`, `SERVER_NAME` and `SERVER_PORT` |
//! | [`rule::SCRIPT_NAME`] | `SCRIPT_NAME` is empty or starts with `/`, and is not `/` itself |
//! | [`rule::PATH_INFO`] | `PATH_INFO` is empty or starts with `/` |
//! | [`rule::REQUEST_HEADERS`] | at most one `Content-Type` and one `Content-Length` in the request (wsgiref forbids `HTTP_CONTENT_TYPE`/`HTTP_CONTENT_LENGTH`; web servers such as nginx do send them, so the check is on the request the core built from them) |
//!
//! and the application's response:
//!
//! | rule | what |
//! |---|---|
//! | [`rule::STATUS`] | a three-digit status of at least 100, a reason phrase without control characters |
//! | [`rule::HEADER_NAME`] | names match `^[a-zA-Z][a-zA-Z0-9\-_]*$` and do not end in `-` or `_` |
//! | [`rule::HEADER_VALUE`] | values hold no control characters |
//! | [`rule::HOP_BY_HOP`] | no hop-by-hop header ([`crate::is_hop_by_hop`]), except `Connection` and `Upgrade` on a 101 that switches protocols properly ([`crate::is_proper_switch`]) |
//! | [`rule::STATUS_HEADER`] | no `Status` header |
//! | [`rule::CONTENT_TYPE`] | `Content-Type` present, except on 1xx, 204 and 304, where it is forbidden (1xx: allowed) |
//! | [`rule::NO_BODY`] | no body bytes for `HEAD`, 1xx, 204 and 304 |
//! | [`rule::CONTENT_LENGTH`] | a valid `Content-Length` equal to the body bytes actually produced |
//!
//! A violation before the body is an error from the service: the core
//! sends its error page (500) and logs the message, the way wsgiref's
//! `AssertionError` ends in `error_output`. A violation found in the body
//! (a length mismatch, a body that should not be there) is a body error:
//! after the head, the response is aborted.
//!
//! Like wsgiref's wrapper (which hides `len()`), the validated body does
//! not tell its size, so the core does not add a `Content-Length` itself:
//! the application's own one is what gets checked.
//!
//! ```
//! use gateway_core::validate::ValidateLayer;
//! use tower::Layer;
//!
//! let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! });
//! let checked = ValidateLayer::new().layer(app);
//! # let _ = checked;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::BoxError;
use crate::head::ReasonPhrase;
use crate::pipeline::is_hop_by_hop;

/// The names of the rules, as they appear in [`Violation`] messages.
pub mod rule {
    /// The request carries a `RequestContext` whose environ has the required
    /// variables.
    pub const ENVIRON: &str = "environ";
    /// `SCRIPT_NAME` is empty or `/`-prefixed, and not `/`.
    pub const SCRIPT_NAME: &str = "script-name";
    /// `PATH_INFO` is empty or `/`-prefixed.
    pub const PATH_INFO: &str = "path-info";
    /// No duplicate `Content-Type`/`Content-Length` in the request.
    pub const REQUEST_HEADERS: &str = "request-headers";
    /// A valid status and reason phrase.
    pub const STATUS: &str = "status";
    /// Header name syntax.
    pub const HEADER_NAME: &str = "header-name";
    /// No control characters in header values.
    pub const HEADER_VALUE: &str = "header-value";
    /// No hop-by-hop headers.
    pub const HOP_BY_HOP: &str = "hop-by-hop";
    /// No `Status` header.
    pub const STATUS_HEADER: &str = "status-header";
    /// `Content-Type` required or forbidden by status.
    pub const CONTENT_TYPE: &str = "content-type";
    /// No body where the response cannot have one.
    pub const NO_BODY: &str = "no-body";
    /// `Content-Length` equals the bytes sent.
    pub const CONTENT_LENGTH: &str = "content-length";
}

/// A broken rule: the error the validator returns (or its body yields).
#[derive(Debug, Clone)]
pub struct Violation {
    rule: &'static str,
    detail: String,
}

impl Violation {
    fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
        }
    }

    /// The rule's name (one of the [`rule`] constants).
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "validator: {}: {}", self.rule, self.detail)
    }
}

impl std::error::Error for Violation {}

/// A [`tower::Layer`] that wraps a service in a [`Validator`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateLayer {
    _priv: (),
}

impl ValidateLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validator<S>;

    fn layer(&self, inner: S) -> Validator<S> {
        Validator { inner }
    }
}

/// An application wrapped in the checks listed in the [module docs](self).
#[derive(Debug, Clone)]
pub struct Validator<S> {
    inner: S,
}

impl<S> Validator<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<Body>> for Validator<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<Checked<B>>;
    type Error = BoxError;
    type Future = ValidateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let is_head = req.method() == Method::HEAD;
        match check_request(&req) {
            Err(v) => ValidateFuture {
                inner: None,
                early: Some(v),
                is_head,
            },
            Ok(()) => ValidateFuture {
                inner: Some(self.inner.call(req)),
                early: None,
                is_head,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The [`Validator`]'s response future.
    #[derive(Debug)]
    pub struct ValidateFuture<F> {
        #[pin]
        inner: Option<F>,
        early: Option<Violation>,
        is_head: bool,
    }
}

impl<F, B, E> Future for ValidateFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: http_body::Body,
{
    type Output = Result<Response<Checked<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(v) = this.early.take() {
            return Poll::Ready(Err(v.into()));
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err("validator: polled after completion".into()));
        };
        let res = ready!(inner.poll(cx)).map_err(Into::into)?;
        let (parts, body) = res.into_parts();
        let no_body = *this.is_head || !may_have_body(parts.status);
        let declared = check_response(&parts)?;
        let body = Checked {
            inner: body,
            declared,
            sent: 0,
            no_body,
            failed: false,
        };
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

fn may_have_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

fn check_request(req: &Request<Body>) -> Result<(), Violation> {
    let Some(env) = req
        .extensions()
        .get::<crate::RequestContext>()
        .map(crate::RequestContext::environ)
    else {
        return Err(Violation::new(
            rule::ENVIRON,
            "the request has no RequestContext",
        ));
    };
    for name in ["REQUEST_METHOD", "SERVER_NAME", "SERVER_PORT"] {
        if env.get(name).is_none() {
            return Err(Violation::new(
                rule::ENVIRON,
                format!("{name} missing from the environ"),
            ));
        }
    }
    let sn = env.script_name();
    if !(sn.is_empty() || sn.starts_with(b"/")) || sn == b"/" {
        return Err(Violation::new(
            rule::SCRIPT_NAME,
            format!(
                "SCRIPT_NAME {:?} must be empty or start with / (and not be / alone)",
                String::from_utf8_lossy(sn)
            ),
        ));
    }
    let pi = env.path_info();
    if !(pi.is_empty() || pi.starts_with(b"/")) {
        return Err(Violation::new(
            rule::PATH_INFO,
            format!(
                "PATH_INFO {:?} must be empty or start with /",
                String::from_utf8_lossy(pi)
            ),
        ));
    }
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
        if req.headers().get_all(&name).iter().count() > 1 {
            return Err(Violation::new(
                rule::REQUEST_HEADERS,
                format!("the request has more than one {name}"),
            ));
        }
    }
    Ok(())
}

/// Checks the head; returns the declared Content-Length.
fn check_response(parts: &http::response::Parts) -> Result<Option<u64>, Violation> {
    let status = parts.status;
    if status.as_u16() < 100 {
        return Err(Violation::new(
            rule::STATUS,
            format!("status {status} below 100"),
        ));
    }
    if let Some(r) = parts.extensions.get::<ReasonPhrase>()
        && r.0.iter().any(|&b| b < 0x20 || b == 0x7f)
    {
        return Err(Violation::new(
            rule::STATUS,
            "control character in the reason phrase",
        ));
    }
    check_headers(
        &parts.headers,
        crate::is_proper_switch(status, &parts.headers),
    )?;
    let has_type = parts.headers.contains_key(header::CONTENT_TYPE);
    if (status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED) && has_type {
        return Err(Violation::new(
            rule::CONTENT_TYPE,
            format!("Content-Type given on a {status} response"),
        ));
    }
    if !has_type && !status.is_informational() && may_have_body(status) {
        return Err(Violation::new(
            rule::CONTENT_TYPE,
            format!("no Content-Type on a {status} response"),
        ));
    }
    let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
    let declared = match (lengths.next(), lengths.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(Violation::new(
                rule::CONTENT_LENGTH,
                "more than one Content-Length",
            ));
        }
        (Some(v), None) => match crate::environ::parse_decimal(v.as_bytes()) {
            Some(n) => Some(n),
            None => {
                return Err(Violation::new(
                    rule::CONTENT_LENGTH,
                    format!("Content-Length {v:?} is not a decimal number"),
                ));
            }
        },
    };
    Ok(declared)
}

/// `switch`: a proper 101, which may carry `Connection` and `Upgrade`.
fn check_headers(headers: &HeaderMap, switch: bool) -> Result<(), Violation> {
    for (name, value) in headers {
        let n = name.as_str();
        let bytes = n.as_bytes();
        let syntax_ok = bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !n.ends_with(['-', '_']);
        if !syntax_ok {
            return Err(Violation::new(
                rule::HEADER_NAME,
                format!("bad header name {n:?}"),
            ));
        }
        if n == "status" {
            return Err(Violation::new(
                rule::STATUS_HEADER,
                "the Status header is not allowed (use the response status)",
            ));
        }
        if is_hop_by_hop(n) && !(switch && (n == "connection" || n == "upgrade")) {
            return Err(Violation::new(
                rule::HOP_BY_HOP,
                format!("hop-by-hop header {n:?} is not allowed"),
            ));
        }
        if value.as_bytes().iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(Violation::new(
                rule::HEADER_VALUE,
                format!("control character in the value of {n:?}"),
            ));
        }
    }
    Ok(())
}

pin_project_lite::pin_project! {
    /// A response body that checks its length against `Content-Length` and
    /// that it is empty where the response may not have one.
    #[derive(Debug)]
    pub struct Checked<B> {
        #[pin]
        inner: B,
        declared: Option<u64>,
        sent: u64,
        no_body: bool,
        failed: bool,
    }
}

impl<B> http_body::Body for Checked<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let fail = |failed: &mut bool, v: Violation| {
            *failed = true;
            Poll::Ready(Some(Err(BoxError::from(v))))
        };
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.remaining() as u64;
                    if n > 0 && *this.no_body {
                        return fail(
                            this.failed,
                            Violation::new(
                                rule::NO_BODY,
                                "a body on a response that may not have one (HEAD, 1xx, 204, 304)",
                            ),
                        );
                    }
                    *this.sent += n;
                    if let Some(d) = *this.declared
                        && *this.sent > d
                    {
                        return fail(
                            this.failed,
                            Violation::new(
                                rule::CONTENT_LENGTH,
                                format!("body longer than its Content-Length {d}"),
                            ),
                        );
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => {
                if let Some(d) = *this.declared
                    && *this.sent != d
                    && !*this.no_body
                {
                    return fail(
                        this.failed,
                        Violation::new(
                            rule::CONTENT_LENGTH,
                            format!("body of {} bytes, Content-Length says {d}", *this.sent),
                        ),
                    );
                }
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Hidden, as wsgiref's wrapper hides len() (C42).
        SizeHint::default()
    }
}

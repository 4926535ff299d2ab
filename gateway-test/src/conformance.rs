//! The conformance application: the one app every interop suite runs, over
//! every protocol, behind every web server.
//!
//! It finds its route at the first path segment that names one, so it
//! answers under any mount prefix and however the web server splits
//! `SCRIPT_NAME` and `PATH_INFO`:
//!
//! | route | answer |
//! |---|---|
//! | `GET /hello` | 200 `text/plain` `Hello, world!\n` |
//! | `ANY /echo` | 200, the request body back (read whole first), same Content-Type |
//! | `ANY /environ` | 200 `application/json`: `environ`, `method`, `uri`, `headers`, `body_len` |
//! | `GET /status/CODE` | that status, a short text body unless the status forbids one |
//! | `GET /bytes?n=N` | N bytes `x`, Content-Length set |
//! | `GET /stream?chunks=N&size=S&delay_ms=D[&accel=V]` | N chunks of S bytes `x`, no Content-Length; with `accel`, `X-Accel-Buffering: V` |
//! | `GET /redirect?to=URL` | 302 with Location |
//! | `GET /file?name=NAME` | a file from the fixture directory, as a file body |
//! | `GET /error/before` | the application fails before any body (error page) |
//! | `GET /error/after[?length=N]` | one chunk `partial`, then a body error (aborted); with `length`, a declared `Content-Length: N` |
//! | `GET /panic` | the handler panics (error page) |
//! | `GET /sleep?ms=N` | waits, then `done` |
//! | `GET /headers?NAME=VALUE&...` | 200 with those response headers |
//! | `GET /offload?name=NAME` | a file from the fixture directory through the app's offload layer ([`Conformance::with_offload`]), or as a file body without one |
//! | `GET /log?msg=TEXT[&level=LEVEL]` | logs TEXT with `tracing` (target `conformance`, level `warn` unless `error`, `info` or `debug`), answers 200 `request ID` with the request's id ([`GatewayInfo::request_id`](gateway_core::GatewayInfo::request_id)) |
//! | `GET /offload/stats` | 200 `application/json`: `configured`, `offloaded` (responses handed to the web server), `body_bytes` (body bytes the `/offload` responses carried) |
//! | `GET /_gateway/status` | with [`Conformance::with_metrics`]: the server's status page (JSON) |
//! | `GET /_gateway/metrics` | with [`Conformance::with_metrics`]: the server's metrics (OpenMetrics text) |
//!
//! In `/environ`, every byte string is decoded as ISO-8859-1, so no byte is
//! lost in the JSON.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::{Body, BoxError, FileBody};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde_json::{Map, Value, json};

mod offload;

/// The body type of every conformance response.
pub type ConfBody = UnsyncBoxBody<Bytes, BoxError>;

/// The route names, in the order they are matched.
pub const ROUTES: [&str; 14] = [
    "hello", "echo", "environ", "status", "bytes", "stream", "redirect", "file", "error", "panic",
    "sleep", "headers", "offload", "log",
];

/// The conformance application, a `tower::Service`.
#[derive(Debug, Clone)]
pub struct Conformance {
    files: Arc<PathBuf>,
    offload: Arc<offload::OffloadRoute>,
    metrics: Option<gateway_core::Metrics>,
}

impl Conformance {
    /// The app, serving `/file` from `files`.
    pub fn new(files: impl Into<PathBuf>) -> Self {
        Self {
            files: Arc::new(files.into()),
            offload: Arc::default(),
            metrics: None,
        }
    }

    /// Answers `/_gateway/status` (JSON) and `/_gateway/metrics`
    /// (OpenMetrics text), under any mount prefix, with `metrics`.
    pub fn with_metrics(mut self, metrics: &gateway_core::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Serves `/offload` through `layer`.
    pub fn with_offload(mut self, layer: gateway_core::offload::OffloadLayer) -> Self {
        self.offload = Arc::new(offload::OffloadRoute::new(Some(layer)));
        self
    }
}

impl tower::Service<Request<Body>> for Conformance {
    type Response = Response<ConfBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ConfBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if let Some(metrics) = &self.metrics {
            let path = req.uri().path().trim_end_matches('/');
            let service = if path.ends_with("/_gateway/status") {
                Some(metrics.status_service())
            } else if path.ends_with("/_gateway/metrics") {
                Some(metrics.metrics_service())
            } else {
                None
            };
            if let Some(service) = service {
                let res = service
                    .respond(&req)
                    .map(|b| b.map_err(|e: Infallible| match e {}).boxed_unsync());
                return Box::pin(std::future::ready(Ok(res)));
            }
        }
        let files = self.files.clone();
        let offload = self.offload.clone();
        Box::pin(async move { route(req, &files, &offload).await })
    }
}

fn full(body: impl Into<Bytes>) -> ConfBody {
    Full::new(body.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ConfBody> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

/// Splits `a=1&b=x%20y` into decoded pairs (`+` is a space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<T: std::str::FromStr>(pairs: &[(String, String)], name: &str) -> Option<T> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// Decodes bytes as ISO-8859-1: each byte one char, so nothing is lost.
pub fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

async fn route(
    req: Request<Body>,
    files: &std::path::Path,
    offload: &Arc<offload::OffloadRoute>,
) -> Result<Response<ConfBody>, BoxError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(at) = segments.iter().position(|s| ROUTES.contains(s)) else {
        return Ok(text(StatusCode::NOT_FOUND, "no such route\n"));
    };
    let name = segments[at];
    let rest = &segments[at + 1..];
    let pairs = query_pairs(req.uri().query().unwrap_or(""));
    match name {
        "hello" => Ok(text(StatusCode::OK, "Hello, world!\n")),
        "echo" => {
            // The whole body is read before answering: a CGI program that
            // writes while the web server is still writing the body to it
            // can deadlock once both pipes are full (Apache writes the
            // whole body first).
            let ct = req.headers().get(header::CONTENT_TYPE).cloned();
            let body = req.into_body().collect().await?.to_bytes();
            let mut res = Response::new(full(body));
            if let Some(ct) = ct {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            Ok(res)
        }
        "environ" => environ(req).await,
        "status" => {
            let code = rest
                .first()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok());
            let Some(code) = code else {
                return Ok(text(StatusCode::BAD_REQUEST, "bad status code\n"));
            };
            if code.is_informational()
                || code == StatusCode::NO_CONTENT
                || code == StatusCode::NOT_MODIFIED
            {
                let mut res = Response::new(full(Bytes::new()));
                *res.status_mut() = code;
                return Ok(res);
            }
            Ok(text(code, format!("status {}\n", code.as_u16())))
        }
        "bytes" => {
            let n: u64 = param(&pairs, "n").unwrap_or(0);
            let mut res = Response::new(
                Repeat {
                    left: n,
                    chunk: 64 * 1024,
                }
                .boxed_unsync(),
            );
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok(res)
        }
        "stream" => {
            let chunks: u64 = param(&pairs, "chunks").unwrap_or(1);
            let size: usize = param(&pairs, "size").unwrap_or(1);
            let delay: u64 = param(&pairs, "delay_ms").unwrap_or(0);
            let body = Chunks {
                left: chunks,
                chunk: Bytes::from(vec![b'x'; size]),
                delay: Duration::from_millis(delay),
                sleep: None,
                first: true,
            };
            let mut res = Response::new(body.boxed_unsync());
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Some(v) = param::<String>(&pairs, "accel") {
                res.headers_mut()
                    .insert("x-accel-buffering", HeaderValue::try_from(v)?);
            }
            Ok(res)
        }
        "redirect" => {
            let to: String = param(&pairs, "to").unwrap_or_else(|| "/".to_owned());
            let mut res = text(StatusCode::FOUND, "redirecting\n");
            res.headers_mut()
                .insert(header::LOCATION, HeaderValue::try_from(to)?);
            Ok(res)
        }
        "file" => {
            let name: String = param(&pairs, "name").unwrap_or_default();
            if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.')
            {
                return Ok(text(StatusCode::BAD_REQUEST, "bad file name\n"));
            }
            let file = match FileBody::open(files.join(&name)) {
                Ok(f) => f,
                Err(_) => return Ok(text(StatusCode::NOT_FOUND, "no such file\n")),
            };
            let ct = if name.ends_with(".txt") {
                "text/plain"
            } else {
                "application/octet-stream"
            };
            let mut res = file
                .into_response()
                .map(|b| b.map_err(BoxError::from).boxed_unsync());
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            Ok(res)
        }
        "error" => match rest.first().copied() {
            Some("after") => {
                let body = ErrorAfter { sent: false };
                let mut res = Response::new(body.boxed_unsync());
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                if let Some(n) = param::<u64>(&pairs, "length") {
                    res.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                }
                Ok(res)
            }
            _ => Err("deliberate failure before the body (conformance /error/before)".into()),
        },
        "panic" => panic!("deliberate panic (conformance /panic)"),
        "sleep" => {
            let ms: u64 = param(&pairs, "ms").unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(text(StatusCode::OK, "done"))
        }
        "headers" => {
            let mut res = text(StatusCode::OK, "headers set\n");
            for (k, v) in &pairs {
                let name = HeaderName::try_from(k.as_str())?;
                let value = HeaderValue::try_from(v.as_str())?;
                res.headers_mut().append(name, value);
            }
            Ok(res)
        }
        "log" => {
            let msg: String = param(&pairs, "msg").unwrap_or_default();
            let level: String = param(&pairs, "level").unwrap_or_default();
            match level.as_str() {
                "error" => tracing::error!(target: "conformance", "{msg}"),
                "info" => tracing::info!(target: "conformance", "{msg}"),
                "debug" => tracing::debug!(target: "conformance", "{msg}"),
                _ => tracing::warn!(target: "conformance", "{msg}"),
            }
            let id = req
                .extensions()
                .get::<gateway_core::RequestContext>()
                .map_or(0, |cx| cx.info().request_id().get());
            Ok(text(StatusCode::OK, format!("request {id}\n")))
        }
        "offload" => {
            let name = param(&pairs, "name");
            offload::offload(req, files, offload, rest, name).await
        }
        _ => Ok(text(StatusCode::NOT_FOUND, "no such route\n")),
    }
}

async fn environ(req: Request<Body>) -> Result<Response<ConfBody>, BoxError> {
    let (parts, body) = req.into_parts();
    let mut env = Map::new();
    if let Some(e) = (parts.extensions.get::<gateway_core::RequestContext>()).map(|cx| cx.environ())
    {
        for (n, v) in e.iter() {
            env.insert(latin1(n), Value::String(latin1(v)));
        }
    }
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(n, v)| json!([n.as_str(), latin1(v.as_bytes())]))
        .collect();
    let mut body_len: u64 = 0;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            body_len += data.len() as u64;
        }
    }
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let doc = json!({
        "environ": env,
        "method": parts.method.as_str(),
        "uri": uri,
        "headers": headers,
        "body_len": body_len,
    });
    let mut res = Response::new(full(serde_json::to_vec(&doc)?));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

/// `left` bytes of `x`, with an exact size hint.
struct Repeat {
    left: u64,
    chunk: usize,
}

static XS: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&XS[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// `left` chunks with a pause before each but the first; no size hint.
struct Chunks {
    left: u64,
    chunk: Bytes,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    first: bool,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if !self.first && !self.delay.is_zero() {
            let delay = self.delay;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        self.first = false;
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

/// `partial`, then an error.
struct ErrorAfter {
    sent: bool,
}

impl http_body::Body for ErrorAfter {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))));
        }
        Poll::Ready(Some(Err(
            "deliberate failure after the first chunk (conformance /error/after)".into(),
        )))
    }
}

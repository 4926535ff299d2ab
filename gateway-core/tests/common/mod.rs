//! Shared helpers for the gateway-core integration tests: runners over
//! `StreamGateway`, a recording gateway, scripted bodies, odd writers and a
//! small pattern matcher for `Date` lines.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use gateway_core::{
    Body, BoxError, Environ, ErrorStream, FileRegion, Gateway, Handler, Outcome, StreamGateway,
};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWrite;
use tower::Service;

/// The C10 error page, byte for byte.
pub(crate) const ERROR_PAGE: &[u8] = b"Status: 500 Internal Server Error\r\n\
Content-Type: text/plain\r\n\
Content-Length: 59\r\n\
\r\n\
A server error occurred.  Please contact the administrator.";

/// An environ with wsgiref's testing defaults.
pub(crate) fn testing_env() -> Environ {
    let mut env = Environ::new();
    env.setup_testing_defaults();
    env
}

/// An environ with `pairs` and then the testing defaults.
pub(crate) fn env_with(pairs: &[(&'static str, &'static str)]) -> Environ {
    let mut env: Environ = pairs.iter().copied().collect();
    env.setup_testing_defaults();
    env
}

/// What one request through a `StreamGateway` produced.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) out: Vec<u8>,
    pub(crate) errors: String,
    pub(crate) outcome: Outcome,
}

impl Run {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

/// Runs `app` once over `StreamGateway::cgi` (or `::origin`) with an empty
/// request body reader.
pub(crate) async fn run<S, B>(handler: &Handler, env: Environ, origin: bool, app: S) -> Run
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Data: bytes::Buf,
    B::Error: Into<BoxError>,
{
    run_with_input(handler, env, origin, &b""[..], app).await
}

/// Runs `app` once with `input` as the request body stream.
pub(crate) async fn run_with_input<S, B>(
    handler: &Handler,
    env: Environ,
    origin: bool,
    input: &'static [u8],
    app: S,
) -> Run
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Data: bytes::Buf,
    B::Error: Into<BoxError>,
{
    let (errors, captured) = ErrorStream::capture();
    let mut gw = if origin {
        StreamGateway::origin(input, Vec::new(), errors, env)
    } else {
        StreamGateway::cgi(input, Vec::new(), errors, env)
    };
    let outcome = handler.run(&mut gw, app).await;
    Run {
        out: gw.into_writer(),
        errors: captured.text(),
        outcome,
    }
}

/// CGI mode with the default handler and testing defaults.
pub(crate) async fn run_cgi<S, B>(app: S) -> Run
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Data: bytes::Buf,
    B::Error: Into<BoxError>,
{
    run(&Handler::new(), testing_env(), false, app).await
}

/// An app that always answers with the response `make` builds.
pub(crate) fn respond<B, F>(
    make: F,
) -> impl Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone
where
    F: Fn() -> Response<B> + Clone,
{
    tower::service_fn(move |_req: Request<Body>| {
        let res = make();
        async move { Ok::<_, Infallible>(res) }
    })
}

/// A response with `body` and `headers` (in order, appended).
pub(crate) fn response<B>(body: B, headers: &[(&'static str, &'static str)]) -> Response<B> {
    let mut res = Response::new(body);
    *res.headers_mut() = header_map(headers);
    res
}

/// A header map with `headers` appended in order.
pub(crate) fn header_map(headers: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(*n, HeaderValue::from_static(v));
    }
    map
}

/// One step of a [`Scripted`] body.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A data frame.
    Data(Bytes),
    /// `Poll::Pending` once (the waker is woken at once).
    Pending,
    /// An error frame.
    Error(&'static str),
    /// A panic while polling.
    Panic(&'static str),
}

pub(crate) fn data(b: &'static [u8]) -> Step {
    Step::Data(Bytes::from_static(b))
}

/// A response body that plays a script, reports an exact size hint only
/// when told to, and raises a flag when dropped.
#[derive(Debug)]
pub(crate) struct Scripted {
    steps: VecDeque<Step>,
    exact: Option<u64>,
    dropped: Arc<AtomicBool>,
}

impl Scripted {
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            exact: None,
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Reports `SizeHint::with_exact(n)`.
    pub(crate) fn exact(mut self, n: u64) -> Self {
        self.exact = Some(n);
        self
    }

    /// A flag that turns true when the body is dropped.
    pub(crate) fn drop_flag(&self) -> DropFlag {
        DropFlag(self.dropped.clone())
    }
}

impl Clone for Scripted {
    /// A clone shares the drop flag (so an app can hand out copies).
    fn clone(&self) -> Self {
        Self {
            steps: self.steps.clone(),
            exact: self.exact,
            dropped: self.dropped.clone(),
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl http_body::Body for Scripted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.steps.pop_front() {
            None => Poll::Ready(None),
            Some(Step::Data(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Some(Step::Pending) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Error(msg)) => Poll::Ready(Some(Err(io::Error::other(msg).into()))),
            Some(Step::Panic(msg)) => panic!("{msg}"),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Whether a [`Scripted`] body has been dropped.
#[derive(Debug, Clone)]
pub(crate) struct DropFlag(Arc<AtomicBool>);

impl DropFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A writer that takes at most `max` bytes per call (C15).
#[derive(Debug, Default)]
pub(crate) struct ShortWriter {
    pub(crate) out: Vec<u8>,
    pub(crate) max: usize,
    pub(crate) calls: usize,
}

impl AsyncWrite for ShortWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.max);
        self.out.extend_from_slice(&buf[..n]);
        self.calls += 1;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A writer whose first `ok_writes` write calls succeed and every later
/// one fails with `kind` (C16, C17).
#[derive(Debug)]
pub(crate) struct FailingWriter {
    pub(crate) out: Vec<u8>,
    pub(crate) ok_writes: usize,
    pub(crate) kind: io::ErrorKind,
}

impl FailingWriter {
    pub(crate) fn new(kind: io::ErrorKind, ok_writes: usize) -> Self {
        Self {
            out: Vec::new(),
            ok_writes,
            kind,
        }
    }
}

impl AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ok_writes == 0 {
            return Poll::Ready(Err(io::Error::new(self.kind, "test writer failure")));
        }
        self.ok_writes -= 1;
        self.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a [`Recorder`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Write(Vec<u8>),
    Flush,
    /// The sendfile hook was offered a region (offset, len) and, when it
    /// accepted, sent these bytes.
    Sendfile(u64, u64, Vec<u8>),
}

/// A gateway that records every `write`, `flush` and `sendfile` call. Its
/// sendfile hook is offered file bodies of at least `MIN` bytes; `u64::MAX`
/// (the default) offers none.
#[derive(Debug)]
pub(crate) struct Recorder<const MIN: u64 = { u64::MAX }> {
    pub(crate) env: Environ,
    pub(crate) events: Vec<Event>,
    pub(crate) errors: ErrorStream,
    /// What `sendfile` answers; `None` keeps the trait's default.
    pub(crate) sendfile: Option<bool>,
    /// The request body `stdin` hands out (empty when `None`).
    pub(crate) body: Option<Body>,
}

impl Recorder {
    pub(crate) fn new(env: Environ) -> Self {
        Self::with_sendfile_min(env)
    }
}

impl<const MIN: u64> Recorder<MIN> {
    /// A recorder whose sendfile hook is offered files of `MIN` bytes or
    /// more.
    pub(crate) fn with_sendfile_min(env: Environ) -> Self {
        Self {
            env,
            events: Vec::new(),
            errors: ErrorStream::null(),
            sendfile: None,
            body: None,
        }
    }

    /// Every byte written or sent, in order.
    pub(crate) fn output(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.events {
            match e {
                Event::Write(b) | Event::Sendfile(_, _, b) => out.extend_from_slice(b),
                Event::Flush => {}
            }
        }
        out
    }

    /// The write calls only.
    pub(crate) fn writes(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Write(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }
}

impl<const MIN: u64> Gateway for Recorder<MIN> {
    const SENDFILE_MIN: Option<u64> = if MIN == u64::MAX { None } else { Some(MIN) };

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.events.push(Event::Write(data.to_vec()));
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.events.push(Event::Flush);
        Ok(())
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        self.body.take().unwrap_or_default()
    }

    fn stderr(&self) -> ErrorStream {
        self.errors.clone()
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        environ.extend_from(&self.env);
    }

    async fn sendfile(&mut self, file: &FileRegion) -> io::Result<bool> {
        match self.sendfile {
            None => Ok(false),
            Some(false) => {
                self.events
                    .push(Event::Sendfile(file.offset(), file.len(), Vec::new()));
                Ok(false)
            }
            Some(true) => {
                let mut sent = Vec::new();
                file.copy_to(&mut sent)?;
                self.events
                    .push(Event::Sendfile(file.offset(), file.len(), sent));
                Ok(true)
            }
        }
    }
}

/// A temporary file holding `contents`, removed on drop.
#[derive(Debug)]
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
}

impl TempFile {
    pub(crate) fn new(tag: &str, contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "gateway-core-it-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, contents).expect("write temp file");
        Self { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Matches `text` against a tiny pattern language: `\w` one word character
/// (letter, digit, `_`), `\d` one digit, `[...]` one of the listed bytes,
/// anything else itself. The whole text must match.
pub(crate) fn matches_pattern(pattern: &str, text: &[u8]) -> bool {
    let p = pattern.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < p.len() {
        let Some(&c) = text.get(j) else {
            return false;
        };
        let ok = match p[i] {
            b'\\' if p.get(i + 1) == Some(&b'w') => {
                i += 2;
                c.is_ascii_alphanumeric() || c == b'_'
            }
            b'\\' if p.get(i + 1) == Some(&b'd') => {
                i += 2;
                c.is_ascii_digit()
            }
            b'[' => {
                let Some(end) = p[i..].iter().position(|&b| b == b']') else {
                    return false;
                };
                let set = &p[i + 1..i + end];
                i += end + 1;
                set.contains(&c)
            }
            lit => {
                i += 1;
                lit == c
            }
        };
        if !ok {
            return false;
        }
        j += 1;
    }
    j == text.len()
}

/// C12's `Date` line pattern (without the CRLF).
pub(crate) const DATE_LINE: &str = r"Date: \w\w\w, [ 0123]\d \w\w\w \d\d\d\d \d\d:\d\d:\d\d GMT";

//! The response pipeline: head checks, Content-Length rules, the lazy head,
//! write coalescing, file bodies, and how failures end a response.

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::response::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version, header};
use http_body::Frame;

use crate::body::BodyFault;
use crate::error::{BoxError, Error, Kind, is_disconnect};
use crate::file::FileRegion;
use crate::gateway::{Gateway, ResponseHead};
use crate::head::{HeadFormat, ReasonPhrase};
use crate::info::ErrorStream;
use crate::outcome::{Outcome, OutcomeKind};
use crate::repeats::{More, Repeats, Span, Verdict, in_app};

/// Chunks up to this size are copied into the coalescing buffer; larger ones
/// are written as they are.
const COPY_MAX: usize = 16 * 1024;
/// The coalescing buffer is written out once it holds this much.
const BUF_MAX: usize = 64 * 1024;

/// The hop-by-hop header names wsgiref refuses from applications:
/// note `trailers`, the plural, as wsgiref lists it; `trailer` is not one.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is a hop-by-hop header, in any case.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether a response with these headers asks the web server in front to
/// pass its body on unbuffered: it is streamed (its head goes out before
/// its end, without a `Content-Length`), or it is a stream of server-sent
/// events (`text/event-stream`), which is only useful unbuffered.
///
/// The pipeline then adds `X-Accel-Buffering: no` (see
/// [`HandlerBuilder::accel_buffering_hint`](crate::HandlerBuilder::accel_buffering_hint)),
/// unless the application gave that header itself.
pub fn wants_unbuffered(headers: &HeaderMap, streamed: bool) -> bool {
    // The application's own header is looked for last: most responses are
    // neither streamed nor event streams, and need no third lookup.
    ((streamed && !headers.contains_key(header::CONTENT_LENGTH)) || is_event_stream(headers))
        && !headers.contains_key(X_ACCEL_BUFFERING)
}

/// The header nginx reads to turn its response buffering off for one
/// response (for FastCGI, SCGI, uwsgi and proxied responses alike).
pub const X_ACCEL_BUFFERING: &str = "x-accel-buffering";

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_event_stream_type(v.as_bytes()))
}

/// Whether a `Content-Type` value is `text/event-stream` (parameters
/// aside).
fn is_event_stream_type(v: &[u8]) -> bool {
    const EVENT_STREAM: &[u8] = b"text/event-stream";
    if v.len() < EVENT_STREAM.len() {
        return false;
    }
    let essence = v.split(|&b| b == b';').next().unwrap_or(v);
    essence.trim_ascii().eq_ignore_ascii_case(EVENT_STREAM)
}

/// Whether a 101 response switches protocols properly: `Connection` names
/// `upgrade` and `Upgrade` names the protocol. Only then do those two
/// headers belong in the response.
pub fn is_proper_switch(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .any(|v| !v.as_bytes().trim_ascii().is_empty())
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// The per-request context the pipeline needs.
pub(crate) struct RequestCtx<'h> {
    pub(crate) head_format: HeadFormat,
    pub(crate) request_version: Version,
    pub(crate) is_head: bool,
    pub(crate) max_response_head_len: usize,
    pub(crate) errors: ErrorStream,
    pub(crate) traceback_limit: usize,
    /// Where the request body records a client fault, if it can fail.
    pub(crate) body_fault: Option<BodyFault>,
    /// The handler's failure summariser.
    pub(crate) repeats: &'h Repeats,
    /// Add `X-Accel-Buffering: no` to streamed responses.
    pub(crate) accel_hint: bool,
    /// The backend can switch protocols ([`Gateway::supports_upgrade`]).
    pub(crate) upgrades: bool,
}

impl RequestCtx<'_> {
    /// The kind of a failure the application (or its body) reported: the
    /// request body's client fault when the body reported one (the
    /// application most likely failed because of it), else an application
    /// error.
    pub(crate) fn app_failure(&self, source: impl Into<BoxError>) -> Error {
        let kind = self
            .body_fault
            .as_ref()
            .and_then(BodyFault::kind)
            .unwrap_or(Kind::App);
        Error::with(kind, source)
    }
}

pub(crate) enum Sent {
    /// The response went out (fully or not): the request is over.
    Done(Outcome),
    /// Nothing reached the client: the caller may still send the error page.
    NothingSent(Error),
}

enum Fail {
    BeforeHead(Error),
    Write(io::Error),
}

struct Writer<'g, G: Gateway> {
    gw: &'g mut G,
    buf: BytesMut,
    /// A first chunk kept as it is while nothing else is buffered, so a
    /// body of one chunk (after a head the backend took in structured form)
    /// is handed on without a copy.
    pending: Option<Bytes>,
    head: Option<Parts>,
    status: StatusCode,
    bytes_sent: u64,
    remaining: Option<u64>,
    no_body_status: bool,
    /// What the head's headers say, as `check_head` found them (kept up
    /// to date as the pipeline adds a `Content-Length`).
    facts: HeadFacts,
    /// The `Content-Length` the pipeline added, for a backend that takes it
    /// apart from the headers ([`Gateway::LENGTH_APART`]).
    length_apart: Option<u64>,
}

impl<G: Gateway> Drop for Writer<'_, G> {
    fn drop(&mut self) {
        // The buffer's memory is kept for the thread's next response: a
        // backend that copies what it writes (`Gateway::write_buf`) leaves
        // it here, empty, after every write. (One that takes the head whole
        // takes no spare either.)
        let capacity = self.buf.capacity();
        if !G::TAKES_HEAD && capacity > 0 && capacity <= SPARE_MAX {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            // (No thread-local during the thread's exit: then it is freed.)
            let _ = SPARE.try_with(|spare| spare.set(Some(buf)));
        }
    }
}

/// The most memory a response buffer kept for the thread's next response
/// may hold.
const SPARE_MAX: usize = 16 * 1024;

thread_local! {
    /// The buffer a finished response left, for the thread's next one.
    static SPARE: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// A response buffer: the one the thread's last response left, or a new
/// one (which allocates only once written to).
fn spare_buf() -> BytesMut {
    SPARE
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// What the pipeline reads of a response head, found in the pass that
/// checks it rather than by a lookup each.
#[derive(Debug, Default, Clone, Copy)]
struct HeadFacts {
    /// The head has a `Content-Length`.
    has_length: bool,
    /// Its first `Content-Length` is not a decimal number.
    bad_length: bool,
    /// Its first `Content-Length`, when it is a decimal number.
    length: Option<u64>,
    /// Its (first) `Content-Type` is `text/event-stream`.
    event_stream: bool,
    /// The application set `X-Accel-Buffering` itself.
    accel_set: bool,
}

impl HeadFacts {
    /// The rule of [`wants_unbuffered`] over the facts.
    fn wants_unbuffered(&self, streamed: bool) -> bool {
        ((streamed && !self.has_length) || self.event_stream) && !self.accel_set
    }
}

/// Sends a response through the gateway.
///
/// An `async` block rather than an `async fn`: the block's future uses the
/// response where it holds it, where an `async fn` would copy it to a local
/// of its own first.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` copies its arguments once more"
)]
pub(crate) fn send<G, B>(
    gw: &mut G,
    res: Response<B>,
    ctx: &RequestCtx<'_>,
) -> impl Future<Output = Sent>
where
    G: Gateway,
    B: http_body::Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    async move {
        let (mut parts, body) = res.into_parts();
        let switch = ctx.upgrades && is_proper_switch(parts.status, &parts.headers);
        let mut facts = match check_head(&mut parts, switch) {
            Ok(facts) => facts,
            Err(e) => return Sent::NothingSent(e),
        };
        let status = parts.status;
        let no_body_status = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if (status.is_informational() || status == StatusCode::NO_CONTENT)
            && parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            tracing::debug!(%status, "dropping Content-Length on a response that has no body");
            remove_in_order(&mut parts.headers, |n| n == header::CONTENT_LENGTH);
            facts.has_length = false;
            facts.bad_length = false;
            facts.length = None;
        }
        if facts.bad_length {
            return Sent::NothingSent(Error::new(Kind::InvalidResponse(
                "invalid Content-Length in the response",
            )));
        }
        let declared = facts.length;
        let skip_body = ctx.is_head || no_body_status;
        let mut remaining = declared;
        let mut length_apart = None;
        if declared.is_none() && !no_body_status {
            // C26: a body whose size is known exactly gets a Content-Length. A
            // HEAD response whose body is empty says nothing about the size.
            if let Some(n) = body.size_hint().exact()
                && !(ctx.is_head && n == 0)
            {
                if G::LENGTH_APART {
                    length_apart = Some(n);
                } else {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, length_value(n));
                }
                facts.has_length = true;
                remaining = Some(n);
            }
        }
        let file = parts.extensions.remove::<FileRegion>();
        let mut w = Writer {
            gw,
            // A backend that takes the head whole seldom buffers anything.
            buf: if G::TAKES_HEAD {
                BytesMut::new()
            } else {
                spare_buf()
            },
            pending: None,
            head: Some(parts),
            status,
            bytes_sent: 0,
            remaining: if skip_body { None } else { remaining },
            no_body_status: skip_body,
            facts,
            length_apart,
        };

        if skip_body {
            drop(body);
            return w.end(ctx).await;
        }
        if let Some(region) = file.filter(|r| G::SENDFILE_MIN.is_some_and(|min| r.len() >= min)) {
            return match w.send_file(&region, ctx).await {
                Ok(true) => w.end(ctx).await,
                Ok(false) => w.stream(body, ctx).await,
                Err(f) => w.fail(f, ctx).await,
            };
        }
        w.stream(body, ctx).await
    }
}

impl<G: Gateway> Writer<'_, G> {
    async fn stream<B>(&mut self, body: B, ctx: &RequestCtx<'_>) -> Sent
    where
        B: http_body::Body,
        B::Data: Buf,
        B::Error: Into<BoxError>,
    {
        let mut body = pin!(body);
        let mark = ctx.repeats.panic_mark();
        loop {
            // Polled here, without a future per poll: first as it is now
            // (a body that has its bytes ready is not waited for).
            let first = poll_body(body.as_mut(), mark, &mut Context::from_waker(Waker::noop()));
            let mut next = match first {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    // The body would block: what we have must reach the
                    // client now (server-sent events, long polls), then wait.
                    if let Err(e) = self.push(true).await {
                        return self.fail(Fail::Write(e), ctx).await;
                    }
                    poll_fn(|cx| poll_body(body.as_mut(), mark, cx)).await
                }
            };
            let frame = match next.take_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return self.end(ctx).await,
                Err(failure) => {
                    let err = match failure {
                        BodyFailure::Error(e) => ctx.app_failure(e),
                        BodyFailure::Panic(msg) => Error::with(Kind::Panic, msg),
                    };
                    return self.body_failed(err, ctx).await;
                }
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers: no CGI-family protocol can carry them
            };
            let chunk = data.copy_to_bytes(data.remaining());
            if chunk.is_empty() {
                continue;
            }
            match self.data(chunk, ctx) {
                Ok((more, None)) => {
                    if !more {
                        // The declared length is reached: stop reading the
                        // body.
                        return self.end(ctx).await;
                    }
                }
                Ok((more, Some(large))) => {
                    if let Err(e) = self.write_large(large).await {
                        return self.fail(Fail::Write(e), ctx).await;
                    }
                    if !more {
                        return self.end(ctx).await;
                    }
                }
                Err(f) => return self.fail(f, ctx).await,
            }
        }
    }

    /// Takes one non-empty chunk. Returns false when the declared length is
    /// reached and more would be too much, and the chunk when it is too
    /// large to buffer: the caller writes it (see `write_large`).
    fn data(
        &mut self,
        mut chunk: Bytes,
        ctx: &RequestCtx<'_>,
    ) -> Result<(bool, Option<Bytes>), Fail> {
        self.commit_head(ctx, true)?;
        let mut more = true;
        if let Some(r) = &mut self.remaining {
            let n = chunk.len() as u64;
            if n > *r {
                const TOO_LONG: &str = "response body longer than its Content-Length; truncated";
                if report_repeats(ctx, "too long", &TOO_LONG) {
                    tracing::error!(extra = n - *r, "{TOO_LONG}");
                    ctx.errors
                        .write(format!("gateway: {TOO_LONG}\n").as_bytes());
                }
                chunk.truncate(*r as usize);
                more = false;
            }
            *r -= chunk.len() as u64;
            if *r == 0 {
                // Anything after this would be too much; don't ask for it.
                more = false;
            }
        }
        self.bytes_sent += chunk.len() as u64;
        if chunk.len() <= COPY_MAX && self.buf.is_empty() && self.pending.is_none() {
            self.pending = Some(chunk);
        } else if chunk.len() <= COPY_MAX && self.buffered() + chunk.len() <= BUF_MAX {
            if let Some(p) = self.pending.take() {
                self.buf.extend_from_slice(&p);
            }
            self.buf.extend_from_slice(&chunk);
        } else {
            return Ok((more, Some(chunk)));
        }
        Ok((more, None))
    }

    /// Writes what is buffered, then a chunk too large to buffer as it is.
    async fn write_large(&mut self, chunk: Bytes) -> io::Result<()> {
        self.push(false).await?;
        self.gw.write(chunk).await
    }

    /// The bytes waiting to be written.
    fn buffered(&self) -> usize {
        self.buf.len() + self.pending.as_ref().map_or(0, Bytes::len)
    }

    /// Encodes the head into the buffer, once. `streamed`: the head goes
    /// out before the end of the body (with its first chunk).
    fn commit_head(&mut self, ctx: &RequestCtx<'_>, streamed: bool) -> Result<(), Fail> {
        let Some(mut parts) = self.head.take() else {
            return Ok(());
        };
        if ctx.accel_hint && !self.no_body_status && self.facts.wants_unbuffered(streamed) {
            parts.headers.insert(
                HeaderName::from_static(X_ACCEL_BUFFERING),
                HeaderValue::from_static("no"),
            );
        }
        if G::TAKES_HEAD {
            // Handed over whole: nothing is written into the buffer.
            self.gw.take_head(parts, self.length_apart);
            return Ok(());
        }
        let reason = parts.extensions.get::<ReasonPhrase>().map(|r| &r.0[..]);
        let mut head = ResponseHead {
            status: parts.status,
            reason,
            headers: &mut parts.headers,
            request_version: ctx.request_version,
            content_length: self.length_apart,
        };
        let before = self.buf.len();
        self.gw
            .write_head(&mut head, &ctx.head_format, &mut self.buf);
        if self.buf.len() - before > ctx.max_response_head_len {
            self.buf.truncate(before);
            return Err(Fail::BeforeHead(Error::new(Kind::InvalidResponse(
                "response head larger than the configured limit",
            ))));
        }
        // Written: the map can hold the next request's headers.
        crate::request::keep_spare_headers(parts.headers);
        Ok(())
    }

    /// Writes what is waiting, and flushes when asked.
    async fn push(&mut self, flush: bool) -> io::Result<()> {
        match self.take_pending() {
            Some(chunk) => self.gw.write(chunk).await?,
            None if self.buf.is_empty() => {}
            None => {
                let written = self.gw.write_buf(&mut self.buf).await;
                // A backend that copies leaves the bytes there.
                self.buf.clear();
                written?
            }
        }
        if flush {
            self.gw.flush().await?;
        }
        Ok(())
    }

    /// The chunk kept as it is, when nothing else waits to be written; else
    /// `None`, with the chunk (if any) moved into the buffer after what the
    /// buffer holds.
    fn take_pending(&mut self) -> Option<Bytes> {
        let chunk = self.pending.take()?;
        if self.buf.is_empty() {
            return Some(chunk);
        }
        self.buf.extend_from_slice(&chunk);
        None
    }

    async fn send_file(&mut self, region: &FileRegion, ctx: &RequestCtx<'_>) -> Result<bool, Fail> {
        self.commit_head(ctx, false)?;
        self.push(false).await.map_err(Fail::Write)?;
        if self.gw.sendfile(region).await.map_err(Fail::Write)? {
            self.bytes_sent += region.len();
            self.remaining = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// The body ended (or is not sent at all).
    async fn end(&mut self, ctx: &RequestCtx<'_>) -> Sent {
        if let Some(parts) = &mut self.head
            && !self.no_body_status
            && !self.facts.has_length
        {
            // C9/C27: nothing was written and nothing declared: say so.
            if G::LENGTH_APART {
                self.length_apart = Some(0);
            } else {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
            self.facts.has_length = true;
        }
        if let Err(f) = self.commit_head(ctx, false) {
            return self.fail(f, ctx).await;
        }
        let short = matches!(self.remaining, Some(r) if r > 0);
        // What `push(true)` does, without a future of its own.
        let written = match self.take_pending() {
            Some(chunk) => self.gw.write(chunk).await,
            None if self.buf.is_empty() => Ok(()),
            None => {
                let written = self.gw.write_buf(&mut self.buf).await;
                self.buf.clear();
                written
            }
        };
        if let Err(e) = written {
            return self.fail(Fail::Write(e), ctx).await;
        }
        if let Err(e) = self.gw.flush().await {
            return self.fail(Fail::Write(e), ctx).await;
        }
        if short {
            // C40/H10: fewer bytes than declared; the backend must make the
            // client see it (close, appStatus, exit status).
            let err = Error::new(Kind::ShortBody);
            log_failure(&err, ctx);
            return self.done(OutcomeKind::Aborted);
        }
        self.done(OutcomeKind::Complete)
    }

    /// The body failed: before the head, the caller sends the error page;
    /// after it, what was produced goes out and the response is aborted.
    async fn body_failed(&mut self, err: Error, ctx: &RequestCtx<'_>) -> Sent {
        if self.head.is_some() {
            return Sent::NothingSent(err);
        }
        log_failure(&err, ctx);
        if let Err(e) = self.push(true).await {
            return self.fail(Fail::Write(e), ctx).await;
        }
        self.done(OutcomeKind::Aborted)
    }

    async fn fail(&mut self, f: Fail, ctx: &RequestCtx<'_>) -> Sent {
        match f {
            Fail::BeforeHead(e) if self.head.is_some() || self.bytes_sent == 0 => {
                Sent::NothingSent(e)
            }
            Fail::BeforeHead(e) => {
                log_failure(&e, ctx);
                self.done(OutcomeKind::Aborted)
            }
            Fail::Write(e) if is_disconnect(&e) => {
                // C16/C37: the client went away; not an error.
                tracing::debug!(error = %e, "client disconnected");
                self.done(OutcomeKind::Disconnected)
            }
            Fail::Write(e) => {
                // C17: log it; nothing more can be sent.
                let what = format!("writing the response failed: {e}");
                if report_repeats(ctx, "write", &what) {
                    tracing::error!(error = %e, "writing the response failed");
                    ctx.errors.write(format!("gateway: {what}\n").as_bytes());
                }
                self.done(OutcomeKind::Failed)
            }
        }
    }

    fn done(&self, kind: OutcomeKind) -> Sent {
        Sent::Done(Outcome {
            status: if self.head.is_none() {
                Some(self.status)
            } else {
                None
            },
            bytes_sent: self.bytes_sent,
            kind,
        })
    }
}

/// A response body's poll, as the pipeline reads it: a frame, the end, or
/// a failure (an error, or a panic caught while the body was polled).
struct NextFrame<D, E>(Result<Option<Result<Frame<D>, E>>, Panic>);

/// A caught panic's payload.
type Panic = Box<dyn std::any::Any + Send>;

/// Why a response body failed.
enum BodyFailure<E> {
    Error(E),
    Panic(String),
}

impl<D, E> NextFrame<D, E> {
    fn take_frame(&mut self) -> Result<Option<Frame<D>>, BodyFailure<E>> {
        match std::mem::replace(&mut self.0, Ok(None)) {
            Ok(Some(Ok(frame))) => Ok(Some(frame)),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(BodyFailure::Error(e)),
            Err(panic) => Err(BodyFailure::Panic(panic_message(&*panic))),
        }
    }
}

/// Polls a response body once, marked as the application's, with a panic
/// caught.
fn poll_body<B: http_body::Body>(
    body: Pin<&mut B>,
    mark: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<NextFrame<B::Data, B::Error>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| in_app(mark, || body.poll_frame(cx)))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(next)) => Poll::Ready(NextFrame(Ok(next))),
        Err(panic) => Poll::Ready(NextFrame(Err(panic))),
    }
}

/// Checks the head an application produced: control
/// characters are an error; hop-by-hop fields and `Status` are removed and
/// logged (the validator layer makes them errors instead). `switch`: a
/// proper 101 the backend can carry out, which keeps `Connection` and
/// `Upgrade`. Returns what the rest of the pipeline reads of the head,
/// found in the same pass.
fn check_head(parts: &mut Parts, switch: bool) -> Result<HeadFacts, Error> {
    if let Some(r) = parts.extensions.get::<ReasonPhrase>()
        && has_bad_value_byte(&r.0)
    {
        return Err(Error::new(Kind::InvalidResponse(
            "control character in the reason phrase",
        )));
    }
    let mut strip = false;
    let mut facts = HeadFacts::default();
    let mut seen_type = false;
    for (name, value) in &parts.headers {
        if has_bad_value_byte(value.as_bytes()) {
            return Err(Error::new(Kind::InvalidResponse(
                "control character in a response header value",
            )));
        }
        if name == header::CONTENT_LENGTH {
            if !facts.has_length {
                facts.has_length = true;
                facts.length = crate::environ::parse_decimal(value.as_bytes());
                facts.bad_length = facts.length.is_none();
            }
        } else if name == header::CONTENT_TYPE {
            if !seen_type {
                seen_type = true;
                facts.event_stream = is_event_stream_type(value.as_bytes());
            }
        } else if name.as_str() == X_ACCEL_BUFFERING {
            facts.accel_set = true;
        } else if is_stripped(name, switch) {
            tracing::warn!(header = %name, "removing a hop-by-hop or Status header from the response");
            strip = true;
        }
    }
    if strip {
        remove_in_order(&mut parts.headers, |n| is_stripped(n, switch));
    }
    Ok(facts)
}

fn is_stripped(name: &HeaderName, switch: bool) -> bool {
    // A `HeaderName` is lowercase: the standard names compare as their
    // constants, the others (`keep-alive`, `trailers`, `status`) as text.
    if name == header::CONNECTION || name == header::UPGRADE {
        return !switch;
    }
    name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || matches!(name.as_str(), "keep-alive" | "trailers" | "status")
}

/// Removes the headers `drop` selects, keeping the others in their order
/// (`HeaderMap::remove` moves the last entry into the hole).
fn remove_in_order(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    let old = std::mem::take(headers);
    headers.reserve(old.len());
    let mut current: Option<HeaderName> = None;
    for (name, value) in old {
        if let Some(n) = name {
            current = Some(n);
        }
        if let Some(n) = &current
            && !drop(n)
        {
            headers.append(n.clone(), value);
        }
    }
}

/// The decimal forms of 0 to 9999, one after the other.
static SMALL_NUMBERS: [u8; 38_890] = small_numbers();

const fn small_numbers() -> [u8; 38_890] {
    let mut out = [0u8; 38_890];
    let mut at = 0;
    let mut n: usize = 0;
    while n < 10_000 {
        let width = number_width(n);
        let mut i = width;
        let mut v = n;
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        at += width;
        n += 1;
    }
    out
}

const fn number_width(n: usize) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else if n < 1000 {
        3
    } else {
        4
    }
}

/// A `Content-Length` value; the common small ones without an allocation.
pub(crate) fn length_value(n: u64) -> HeaderValue {
    let Some(small) = usize::try_from(n).ok().filter(|&n| n < 10_000) else {
        return HeaderValue::from(n);
    };
    let start = match small {
        0..10 => small,
        10..100 => 10 + (small - 10) * 2,
        100..1000 => 190 + (small - 100) * 3,
        _ => 2890 + (small - 1000) * 4,
    };
    SMALL_NUMBERS
        .get(start..start + number_width(small))
        .and_then(|d| HeaderValue::from_maybe_shared(Bytes::from_static(d)).ok())
        .unwrap_or_else(|| HeaderValue::from(n))
}

/// Whether `v` holds a byte a header value may not hold: every byte is
/// looked at, without stopping at the first bad one, which lets the
/// compiler check many at once (values are short, and almost always good).
fn has_bad_value_byte(v: &[u8]) -> bool {
    v.iter().fold(false, |bad, &b| bad | is_bad_value_byte(b))
}

/// header values may not hold 0x00–0x08, 0x0A–0x1F or 0x7F (HTAB is
/// allowed).
fn is_bad_value_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Logs an application failure once: `tracing` at error level and the
/// request's error stream, with at most `traceback_limit` causes; repeats
/// are summarised (see [`report_repeats`]).
pub(crate) fn log_failure(err: &Error, ctx: &RequestCtx<'_>) {
    use std::error::Error as _;
    if err.is_client_fault() {
        // The client's (or the web server's) doing, not the application's:
        // nothing for the error log.
        tracing::debug!(error = %err, "request failed: client fault");
        return;
    }
    if !report_repeats(ctx, "failure", err) {
        return;
    }
    tracing::error!(error = %err, "request failed");
    let mut msg = format!("gateway: {err}\n");
    // The first source is already in the message; list the ones below it.
    let mut cause = err.source().and_then(|s| s.source());
    let mut n = 0;
    while let Some(c) = cause {
        if n >= ctx.traceback_limit {
            msg.push_str("  ...\n");
            break;
        }
        msg.push_str(&format!("  caused by: {c}\n"));
        cause = c.source();
        n += 1;
    }
    ctx.errors.write(msg.as_bytes());
}

/// Applies the handler's repeat policy to a failure that `what` describes
/// (failures are identical when `tag` and the text are): writes the count
/// lines it calls for, to `tracing` and the error stream, and returns
/// whether the caller logs the failure itself in full.
fn report_repeats(ctx: &RequestCtx<'_>, tag: &str, what: &dyn fmt::Display) -> bool {
    const ASSORTED: &str = "too many distinct failures to count apart";
    let (verdict, dropped) = ctx.repeats.check(tag, what);
    for d in dropped {
        let more = More {
            count: d.count,
            assorted: d.label.is_none(),
        };
        let label: &dyn fmt::Display = match &d.label {
            Some(label) => label,
            None => &ASSORTED,
        };
        log_count(ctx, more, d.over, label);
    }
    match verdict {
        Verdict::Full => true,
        Verdict::Quiet => false,
        Verdict::Summary {
            count,
            over,
            assorted,
        } => {
            let more = More { count, assorted };
            if assorted {
                log_count(
                    ctx,
                    more,
                    over,
                    &format_args!("{ASSORTED}; the latest: {what}"),
                );
            } else {
                log_count(ctx, more, over, what);
            }
            false
        }
    }
}

/// Writes one count line: `gateway: 12 more identical failures in the last
/// 10 s: application panicked: boom`.
fn log_count(ctx: &RequestCtx<'_>, more: More, over: Duration, what: &dyn fmt::Display) {
    let line = format!("{more} in the last {}: {what}", Span(over));
    tracing::error!(count = more.count, "{line}");
    ctx.errors.write(format!("gateway: {line}\n").as_bytes());
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast check of the names the pipeline removes agrees with the
    /// list of hop-by-hop names, for standard and other names alike.
    #[test]
    fn stripped_names_are_the_hop_by_hop_ones_and_status() {
        let names = HOP_BY_HOP.iter().chain(&[
            "status",
            "trailer",
            "content-type",
            "x-keep-alive",
            "host",
            "server",
        ]);
        for n in names {
            let name = HeaderName::from_bytes(n.to_ascii_uppercase().as_bytes()).unwrap();
            let listed = is_hop_by_hop(n) || *n == "status";
            assert_eq!(is_stripped(&name, false), listed, "{n}");
            let kept = *n == "connection" || *n == "upgrade";
            assert_eq!(is_stripped(&name, true), listed && !kept, "{n} on a switch");
        }
    }

    /// The whole-value check finds a bad byte wherever it is.
    #[test]
    fn bad_value_bytes_are_found_anywhere() {
        for b in 0..=255u8 {
            let bad = (b < 0x20 && b != b'\t') || b == 0x7f;
            for v in [
                vec![b],
                vec![b'a', b],
                vec![b, b'a', b'b'],
                [&b"text/plain; charset=utf-8 and more "[..], &[b]].concat(),
            ] {
                let want = v.iter().any(|&x| (x < 0x20 && x != b'\t') || x == 0x7f);
                assert_eq!(has_bad_value_byte(&v), want, "{v:?}");
            }
            assert_eq!(has_bad_value_byte(&[b'x', b'y', b]), bad, "{b}");
        }
    }

    #[test]
    fn length_values_match_the_decimal_form() {
        for n in (0..12_000).chain([u64::MAX]) {
            assert_eq!(length_value(n).to_str().unwrap(), n.to_string(), "{n}");
        }
    }
}

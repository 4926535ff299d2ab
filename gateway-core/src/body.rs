//! The request body type every backend hands to the application.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncRead;

use crate::error::{BoxError, Error, Kind};

/// The body of a request, as the application receives it.
///
/// An [`http_body::Body`] of [`Bytes`] whose errors are [`BoxError`]s: a
/// backend failure, or a body that ended before `CONTENT_LENGTH` bytes
/// (`gateway_core::Error::is_incomplete_body`). Its size hint is
/// exact when the length is known, so extractors can preallocate.
pub struct Body {
    inner: Inner,
    fault: Option<BodyFault>,
}

/// Where a request body records the first client fault it reported (a body
/// cut short, too large, too slow, malformed), so the handler can tell an
/// application error caused by the body from one of the application's own.
/// With metrics, the body also counts the bytes it yields there.
#[derive(Clone, Default)]
pub(crate) struct BodyFault(Arc<FaultSlot>);

#[derive(Default)]
struct FaultSlot {
    code: AtomicU8,
    counted: Option<crate::Metrics>,
}

impl BodyFault {
    fn record(&self, err: &BoxError) {
        let Some(e) = err.downcast_ref::<Error>() else {
            return;
        };
        let code = match e.kind {
            Kind::IncompleteBody => 1,
            Kind::BodyTooLarge => 2,
            Kind::BodyTimeout => 3,
            Kind::MalformedBody => 4,
            Kind::Disconnected => 5,
            Kind::LengthRequired => 6,
            _ => return,
        };
        let _ = self
            .0
            .code
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The fault recorded, if any.
    pub(crate) fn kind(&self) -> Option<Kind> {
        Some(match self.0.code.load(Ordering::Relaxed) {
            1 => Kind::IncompleteBody,
            2 => Kind::BodyTooLarge,
            3 => Kind::BodyTimeout,
            4 => Kind::MalformedBody,
            5 => Kind::Disconnected,
            6 => Kind::LengthRequired,
            _ => return None,
        })
    }
}

enum Inner {
    Empty,
    Full(Option<Bytes>),
    Boxed(Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>>),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self {
            inner: Inner::Empty,
            fault: None,
        }
    }

    /// A body of one buffer.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Self::empty();
        }
        Self {
            inner: Inner::Full(Some(bytes)),
            fault: None,
        }
    }

    /// Wraps any body of `Bytes`.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        Self {
            inner: Inner::Boxed(Box::pin(body.map_err(Into::into))),
            fault: None,
        }
    }

    /// A body that fails with `err` when first read: for a backend that
    /// knows at once the body cannot be had (the handler answers a client
    /// fault such as [`Error::length_required`] with its status if the
    /// application passes the error on).
    pub fn failing(err: Error) -> Self {
        Self::new(Failing(Some(err)))
    }

    /// A body read from `reader`: exactly `length` bytes when the length is
    /// known (fewer is an incomplete-body error, and no byte past it is
    /// read, RFC 3875 §4.2), or everything up to end of file when it is not.
    pub fn from_reader<R>(reader: R, length: Option<u64>) -> Self
    where
        R: AsyncRead + Send + 'static,
    {
        if length == Some(0) {
            return Self::empty();
        }
        Self::new(ReaderBody {
            reader: Box::pin(reader),
            remaining: length,
            buf: BytesMut::new(),
            done: false,
        })
    }
}

impl Body {
    /// Caps the body at `max` bytes: a body that turns out longer fails with
    /// a body-too-large error (answered 413 while nothing was sent). For
    /// bodies of unknown length; a known length is checked before the
    /// application is called.
    pub(crate) fn cap(self, max: u64) -> Body {
        match self.inner {
            Inner::Boxed(inner) => Body {
                inner: Inner::Boxed(Box::pin(Capped { inner, left: max })),
                fault: self.fault,
            },
            _ => self,
        }
    }

    /// Makes the body record its first client fault in a slot the handler
    /// reads; `None` for a body that cannot fail (empty, one buffer). With
    /// `metrics`, the bytes it yields are counted there (those of a body of
    /// one buffer at once).
    pub(crate) fn watch_faults(&mut self, metrics: Option<&crate::Metrics>) -> Option<BodyFault> {
        match &self.inner {
            Inner::Boxed(_) => {}
            Inner::Full(b) => {
                if let (Some(m), Some(b)) = (metrics, b) {
                    m.body_read(b.len() as u64);
                }
                return None;
            }
            Inner::Empty => return None,
        }
        let slot = BodyFault(Arc::new(FaultSlot {
            code: AtomicU8::new(0),
            counted: metrics.cloned(),
        }));
        self.fault = Some(slot.clone());
        Some(slot)
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Empty => "empty",
            Inner::Full(_) => "full",
            Inner::Boxed(_) => "streaming",
        };
        f.debug_tuple("Body").field(&kind).finish()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self::full(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Self::full(b)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self::full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::full(s)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Boxed(b) => {
                let r = b.as_mut().poll_frame(cx);
                if let (Poll::Ready(Some(polled)), Some(fault)) = (&r, &self.fault) {
                    match polled {
                        Err(e) => fault.record(e),
                        Ok(frame) => {
                            if let (Some(m), Some(data)) = (&fault.0.counted, frame.data_ref()) {
                                m.body_read(data.len() as u64);
                            }
                        }
                    }
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Full(b) => b.is_none(),
            Inner::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Boxed(b) => b.size_hint(),
        }
    }
}

/// A body whose only frame is an error.
struct Failing(Option<Error>);

impl http_body::Body for Failing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(|e| Err(e.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

/// A body that fails once it has yielded more than a limit.
struct Capped {
    inner: Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>>,
    left: u64,
}

impl http_body::Body for Capped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(self.inner.as_mut().poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
        {
            match self.left.checked_sub(d.len() as u64) {
                Some(left) => self.left = left,
                None => return Poll::Ready(Some(Err(Error::body_too_large().into()))),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How much a reader-backed body asks for per read.
const READ_CHUNK: usize = 64 * 1024;

struct ReaderBody {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    remaining: Option<u64>,
    buf: BytesMut,
    done: bool,
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let want = match this.remaining {
            Some(0) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(READ_CHUNK),
            None => READ_CHUNK,
        };
        this.buf.reserve(want);
        let res = ready!(tokio_util::io::poll_read_buf(
            this.reader.as_mut(),
            cx,
            &mut (&mut this.buf).limit(want)
        ));
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                this.done = true;
                return Poll::Ready(Some(Err(read_error(e))));
            }
        };
        if n == 0 {
            this.done = true;
            // Without a length, end of file is the end; with one, it is a
            // body cut short (B5).
            return Poll::Ready(
                this.remaining
                    .map(|_| Err(Error::new(Kind::IncompleteBody).into())),
            );
        }
        let chunk = this.buf.split().freeze();
        if let Some(r) = &mut this.remaining {
            *r -= n as u64;
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A failed read of a request body, as the error the handler classifies: a
/// read that timed out is a body timeout, a peer that went away is a body
/// cut short; anything else stays an I/O error.
fn read_error(e: std::io::Error) -> BoxError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut => Error::body_timeout().into(),
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            Error::incomplete_body(e).into()
        }
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn reader_body_reads_exactly_content_length() {
        let data: &[u8] = b"hello world, and more after";
        let body = Body::from_reader(data, Some(11));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(11));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"hello world");
    }

    /// EOF before CONTENT_LENGTH is a body error, not a short body.
    #[tokio::test]
    async fn reader_body_short_is_an_error() {
        let data: &[u8] = b"short";
        let err = Body::from_reader(data, Some(10))
            .collect()
            .await
            .unwrap_err();
        let err = err.downcast::<Error>().unwrap();
        assert!(err.is_incomplete_body());
    }

    /// A reader that times out is a body timeout; one whose peer went away
    /// is a body cut short: both client faults.
    #[tokio::test]
    async fn reader_errors_are_classified() {
        struct Failing(std::io::ErrorKind);
        impl AsyncRead for Failing {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                Poll::Ready(Err(self.0.into()))
            }
        }
        let err = Body::from_reader(Failing(std::io::ErrorKind::TimedOut), Some(10))
            .collect()
            .await
            .unwrap_err()
            .downcast::<Error>()
            .unwrap();
        assert!(err.is_body_timeout() && err.is_client_fault());
        assert_eq!(err.client_status(), Some(http::StatusCode::REQUEST_TIMEOUT));
        let err = Body::from_reader(Failing(std::io::ErrorKind::ConnectionReset), None)
            .collect()
            .await
            .unwrap_err()
            .downcast::<Error>()
            .unwrap();
        assert!(err.is_incomplete_body() && err.is_client_fault());
        let err = Body::from_reader(Failing(std::io::ErrorKind::PermissionDenied), None)
            .collect()
            .await
            .unwrap_err();
        assert!(err.downcast_ref::<Error>().is_none());
    }

    #[tokio::test]
    async fn reader_body_without_length_reads_to_eof() {
        let data: &[u8] = b"all of it";
        let got = Body::from_reader(data, None).collect().await.unwrap();
        assert_eq!(&got.to_bytes()[..], b"all of it");
    }
}

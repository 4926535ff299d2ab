//! The request body as the application reads it: hyper's body with a
//! per-read timeout and a size limit, its failures told apart as the core
//! tells them (too slow, too large, malformed, cut short).

use std::error::Error as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::server::Stall;
use gateway_core::{BoxError, Error};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// hyper's request body, where every frame must arrive within `timeout` of
/// asking for it (`Limits::body_read_timeout`) and the data may not exceed
/// `Limits::max_body_len`.
///
/// Its errors are the core's own [`Error`] values, boxed as they are, so
/// the handler recognises a client fault: a body that stopped arriving
/// ([`Error::body_timeout`], answered 408), grew too large
/// ([`Error::body_too_large`], 413), was malformed on the wire
/// ([`Error::malformed_body`], 400) or cut short
/// ([`Error::incomplete_body`], 400), and logs none of them as an
/// application error.
pub(crate) struct RequestBody {
    inner: Incoming,
    stall: Stall,
    /// How many more data bytes are allowed, if there is a limit.
    left: Option<u64>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration, limit: Option<u64>) -> Self {
        Self {
            inner,
            stall: Stall::new(timeout),
            left: limit,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        if this.stall.expired(poll.is_ready(), cx) {
            return Poll::Ready(Some(Err(Error::body_timeout().into())));
        }
        match poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(left), Some(data)) = (&mut this.left, frame.data_ref()) {
                    match left.checked_sub(data.len() as u64) {
                        Some(rest) => *left = rest,
                        None => return Poll::Ready(Some(Err(Error::body_too_large().into()))),
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(client_fault(e).into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a failure to read the request body means: the body was malformed
/// on the wire, or (anything else: the client closed, reset or went away)
/// it was cut short.
fn client_fault(e: hyper::Error) -> Error {
    if is_malformed(&e) {
        Error::malformed_body(e)
    } else {
        Error::incomplete_body(e)
    }
}

/// Whether hyper failed the body because of what the client sent: HTTP/1
/// reports a bad chunk size or chunk framing as an I/O error of kind
/// `InvalidInput` or `InvalidData`; HTTP/2 reports a protocol error it
/// found itself (a body longer than its Content-Length, a bad frame). A
/// stream the client reset or a connection it closed are not.
fn is_malformed(e: &hyper::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return is_bad_data(io);
        }
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            return match h2.get_io() {
                Some(io) => is_bad_data(io),
                None => h2.is_library(),
            };
        }
        cause = c.source();
    }
    false
}

fn is_bad_data(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
    )
}

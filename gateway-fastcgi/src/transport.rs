//! A connection's transport and output buffer, shared by its dispatcher
//! (which alone reads and writes the transport) and its requests (which
//! append whole records to the buffer, from the connection's task or from
//! tasks of their own).
//!
//! Nothing here waits on a lock: the lock is held for the span of one
//! append or one `poll_*` call. A request's records are appended whole, so
//! records of different requests never interleave mid-record. The
//! dispatcher writes the buffer out when it is not empty; a request that
//! finds more than [`HIGH_WATER`] bytes buffered waits until the web server
//! has taken enough of them, so its reading pace bounds memory.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

/// Output buffered past this many bytes makes a writing request wait until
/// it is written.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// The room the output buffer is given when the first records go in.
const OUT_START: usize = 1024;

/// The side of a connection's transport that its requests see: the output
/// buffer.
pub(crate) trait Sink: Send + Sync {
    /// Lets `encode` append whole records to the output buffer. Returns
    /// false (and appends nothing) when the connection has failed or closed.
    fn append(&self, encode: &mut dyn FnMut(&mut BytesMut)) -> bool;

    /// Bytes appended and not yet written.
    fn buffered(&self) -> usize;

    /// Ready once at most [`HIGH_WATER`] bytes are buffered; an error once
    /// the connection has failed.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Wakes the dispatcher if output waits to be written: what a request
    /// running outside the connection's task calls after it ran.
    fn wake_writer(&self);
}

/// Reads what `io` has into `buf`, which holds no allocation (a connection
/// waiting for its next request holds none): through a buffer on the
/// stack, so that `buf` is allocated only once bytes arrived, and only as
/// large as they need. `Ok(0)` at end of input.
pub(crate) fn poll_read_unbuffered<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); 8 * 1024];
    let mut read = tokio::io::ReadBuf::uninit(&mut stack);
    std::task::ready!(Pin::new(io).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    if n > 0 {
        // Sized to what arrived (a request head, usually whole), at least
        // 1 KiB; a larger read later makes it grow.
        buf.reserve(n.max(1024));
        buf.extend_from_slice(read.filled());
    }
    Poll::Ready(Ok(n))
}

/// The transport and its output buffer.
#[derive(Debug)]
pub(crate) struct Transport<T> {
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    /// `None` once the dispatcher has taken the transport back to close it.
    io: Option<T>,
    out: BytesMut,
    failed: bool,
    /// The dispatcher, waiting for output.
    writer: Option<Waker>,
    /// Requests waiting for room in the buffer.
    waiting: Vec<Waker>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "FastCGI connection closed")
}

impl<T> Inner<T> {
    /// The wakers of requests waiting for room, when there is room (or
    /// the connection failed).
    fn room_made(&mut self) -> Vec<Waker> {
        if !self.waiting.is_empty() && (self.failed || self.out.len() <= HIGH_WATER) {
            std::mem::take(&mut self.waiting)
        } else {
            Vec::new()
        }
    }
}

impl<T> Transport<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    pub(crate) fn new(io: T) -> Self {
        Transport {
            inner: Mutex::new(Inner {
                io: Some(io),
                out: BytesMut::new(),
                failed: false,
                writer: None,
                waiting: Vec::new(),
            }),
        }
    }

    /// Reads what the transport has into `buf`; `Ok(0)` at end of input
    /// (or once the transport was taken).
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let Ok(mut inner) = self.inner.lock() else {
            return Poll::Ready(Err(gone()));
        };
        match inner.io.as_mut() {
            Some(io) if buf.capacity() == 0 => poll_read_unbuffered(io, cx, buf),
            Some(io) => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(8 * 1024);
                }
                tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
            }
            None => Poll::Ready(Ok(0)),
        }
    }

    /// Appends bytes already encoded as records.
    pub(crate) fn push(&self, bytes: &[u8]) -> bool {
        self.append(&mut |out| out.extend_from_slice(bytes))
    }

    /// Writes the buffer out until it is empty, then flushes the transport.
    pub(crate) fn poll_write_out(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_progress(cx, false)
            .map_or(Poll::Ready(Ok(())), |(polled, _)| polled)
    }

    /// As [`poll_write_out`](Self::poll_write_out), and whether the
    /// transport took any bytes. `wait_for_output`: with nothing buffered
    /// (and the connection not failed), `None`, and the next append from
    /// outside the connection's task wakes `cx`.
    pub(crate) fn poll_write_progress(
        &self,
        cx: &mut Context<'_>,
        wait_for_output: bool,
    ) -> Option<(Poll<io::Result<()>>, bool)> {
        let Ok(mut guard) = self.inner.lock() else {
            return Some((Poll::Ready(Err(gone())), false));
        };
        let inner = &mut *guard;
        if wait_for_output && !inner.failed && inner.out.is_empty() {
            match &inner.writer {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.writer = Some(cx.waker().clone()),
            }
            return None;
        }
        let before = inner.out.len();
        let result = Self::write_locked(inner, cx);
        let progressed = inner.out.len() < before;
        let wake = inner.room_made();
        drop(guard);
        for w in wake {
            w.wake();
        }
        Some((result, progressed))
    }

    fn write_locked(inner: &mut Inner<T>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if inner.failed {
            return Poll::Ready(Err(gone()));
        }
        let Some(io) = inner.io.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let mut io = Pin::new(io);
        while !inner.out.is_empty() {
            match io.as_mut().poll_write(cx, &inner.out) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    inner.failed = true;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => inner.out.advance(n.min(inner.out.len())),
                Poll::Ready(Err(e)) => {
                    inner.failed = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        inner.out.clear();
        match io.poll_flush(cx) {
            Poll::Ready(Err(e)) => {
                inner.failed = true;
                Poll::Ready(Err(e))
            }
            other => other,
        }
    }

    /// Takes the transport back (what was not written is dropped), so that
    /// closing it does not depend on who else still holds this value (an
    /// error stream kept by the application, for one). Requests waiting
    /// for room see the connection failed.
    pub(crate) fn take(&self) -> Option<T> {
        let mut inner = self.inner.lock().ok()?;
        inner.failed = true;
        inner.out = BytesMut::new();
        let wake = inner.room_made();
        let io = inner.io.take();
        drop(inner);
        for w in wake {
            w.wake();
        }
        io
    }
}

impl<T> Sink for Transport<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    fn append(&self, encode: &mut dyn FnMut(&mut BytesMut)) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        if inner.failed {
            return false;
        }
        if inner.out.capacity() == 0 {
            // Room for a small response whole (head, body, end records)
            // at once, rather than growing record by record.
            inner.out.reserve(OUT_START);
        }
        encode(&mut inner.out);
        true
    }

    fn buffered(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.out.len())
    }

    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Ok(mut inner) = self.inner.lock() else {
            return Poll::Ready(Err(gone()));
        };
        if inner.failed {
            return Poll::Ready(Err(gone()));
        }
        if inner.out.len() <= HIGH_WATER {
            return Poll::Ready(Ok(()));
        }
        if !inner.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            inner.waiting.push(cx.waker().clone());
        }
        let writer = inner.writer.take();
        drop(inner);
        // The dispatcher writes while it is polled; it may be parked.
        if let Some(w) = writer {
            w.wake();
        }
        Poll::Pending
    }

    fn wake_writer(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.out.is_empty() && !inner.failed {
            return;
        }
        let writer = inner.writer.take();
        drop(inner);
        if let Some(w) = writer {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A read without a buffer allocates none while nothing arrives, and
    /// keeps every byte once some do.
    #[tokio::test]
    async fn a_waiting_read_holds_no_buffer() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let transport = Transport::new(ours);
        let mut buf = BytesMut::new();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(transport.poll_read(&mut cx, &mut buf).is_pending());
        assert_eq!(buf.capacity(), 0);
        peer.write_all(b"record").await.unwrap();
        let n = std::future::poll_fn(|cx| transport.poll_read(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!((n, &buf[..]), (6, &b"record"[..]));
        assert!(buf.capacity() >= 1024, "room for what follows");
    }
}

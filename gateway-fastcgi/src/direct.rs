//! A connection's transport shared by its driver and the one request it is
//! serving, for connections that carry one request at a time.
//!
//! Both run inside the connection's task, so nothing here waits on a lock:
//! the lock is taken only for the span of one `poll_*` call. Output is
//! appended to a buffer as whole records and written when the request's
//! future would block, when it ends, or when the buffer passes
//! [`HIGH_WATER`] (then the request waits until it is written), so a small
//! response and its end records leave in one write.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

/// Output buffered past this many bytes makes the writer wait until it is
/// written (the web server's reading pace bounds memory).
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// Where a request's records go on a connection without a writer task.
pub(crate) trait Sink: Send + Sync {
    /// Lets `encode` append whole records to the output buffer. Returns
    /// false (and appends nothing) when the connection has failed or closed.
    fn append(&self, encode: &mut dyn FnMut(&mut BytesMut)) -> bool;

    /// Bytes appended and not yet written.
    fn buffered(&self) -> usize;

    /// Writes the buffer out until it is empty, then flushes the transport.
    fn poll_write_out(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// The transport and its output buffer.
#[derive(Debug)]
pub(crate) struct Shared<T> {
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    /// `None` once the driver has taken the transport back to close it.
    io: Option<T>,
    out: BytesMut,
    failed: bool,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "FastCGI connection closed")
}

impl<T> Shared<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    pub(crate) fn new(io: T) -> Self {
        Shared {
            inner: Mutex::new(Inner {
                io: Some(io),
                out: BytesMut::new(),
                failed: false,
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

    /// Takes the transport back (what was not written is dropped), so that
    /// closing it does not depend on who else still holds this value (an
    /// error stream kept by the application, for one).
    pub(crate) fn take(&self) -> Option<T> {
        let mut inner = self.inner.lock().ok()?;
        inner.failed = true;
        inner.out = BytesMut::new();
        inner.io.take()
    }
}

impl<T> Sink for Shared<T>
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
        encode(&mut inner.out);
        true
    }

    fn buffered(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.out.len())
    }

    fn poll_write_out(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Ok(mut guard) = self.inner.lock() else {
            return Poll::Ready(Err(gone()));
        };
        let inner = &mut *guard;
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
}

//! The connection's transport with a write timeout and a bound on the wait
//! for the first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_core::server::Stall;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A transport whose writes fail with `TimedOut` once the peer has taken
/// nothing for `write_timeout` (`Limits::write_timeout`): a client that
/// stops reading cannot hold the connection and its application forever.
/// Writes that complete at once cost no clock read and no timer.
///
/// Until the first byte arrives, reads fail the same way after
/// `head_read_timeout`: hyper's own header read timeout only starts once
/// it has seen enough bytes to tell HTTP/1 from HTTP/2, so a client that
/// connects and sends nothing would otherwise be left to the idle watch.
/// After the first byte a read costs one check more than the bare stream.
pub(crate) struct TimedIo<T> {
    inner: T,
    stall: Stall,
    /// The wait for the first byte; `None` once it came.
    first_read: Option<Stall>,
}

impl<T> TimedIo<T> {
    pub(crate) fn new(inner: T, head_read_timeout: Duration, write_timeout: Duration) -> Self {
        Self {
            inner,
            stall: Stall::new(write_timeout),
            first_read: Some(Stall::new(head_read_timeout)),
        }
    }
}

/// Passes a write-side poll through, timing how long it stays pending.
fn timed<T: Unpin, R>(
    this: &mut TimedIo<T>,
    cx: &mut Context<'_>,
    op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
) -> Poll<io::Result<R>> {
    let poll = op(Pin::new(&mut this.inner), cx);
    if this.stall.expired(poll.is_ready(), cx) {
        tracing::debug!("writing to the client timed out; closing the connection");
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "writing to the client timed out",
        )));
    }
    poll
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(first) = &mut this.first_read else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if poll.is_ready() {
            if buf.filled().len() > before {
                this.first_read = None;
            }
            return poll;
        }
        if first.expired(false, cx) {
            tracing::debug!("no request within the head read timeout; closing the connection");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the head read timeout",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        timed(self.get_mut(), cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        timed(self.get_mut(), cx, |io, cx| {
            io.poll_write_vectored(cx, bufs)
        })
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        timed(self.get_mut(), cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        timed(self.get_mut(), cx, |io, cx| io.poll_shutdown(cx))
    }
}

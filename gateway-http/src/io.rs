//! The connection's transport with a write timeout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_core::server::Stall;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A transport whose writes fail with `TimedOut` once the peer has taken
/// nothing for `timeout` (`Limits::write_timeout`): a client that stops
/// reading cannot hold the connection and its application forever. Writes
/// that complete at once cost no clock read and no timer.
pub(crate) struct WriteTimeout<T> {
    inner: T,
    stall: Stall,
}

impl<T> WriteTimeout<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            stall: Stall::new(timeout),
        }
    }
}

/// Passes a write-side poll through, timing how long it stays pending.
fn timed<T: Unpin, R>(
    this: &mut WriteTimeout<T>,
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

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
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

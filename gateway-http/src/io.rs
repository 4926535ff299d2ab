//! The connection's transport with a write timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A transport whose writes fail with `TimedOut` once the peer has taken
/// nothing for `timeout` (`Limits::write_timeout`): a client that stops
/// reading cannot hold the connection and its application forever. Writes
/// that complete at once cost no clock read and no timer.
pub(crate) struct WriteTimeout<T> {
    inner: T,
    /// Made the first time a write has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    waiting: bool,
}

impl<T> WriteTimeout<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: None,
            timeout,
            waiting: false,
        }
    }
}

/// Passes a write-side poll through, timing how long it stays pending.
fn timed<T: Unpin, R>(
    this: &mut WriteTimeout<T>,
    cx: &mut Context<'_>,
    op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
) -> Poll<io::Result<R>> {
    if let Poll::Ready(r) = op(Pin::new(&mut this.inner), cx) {
        this.waiting = false;
        return Poll::Ready(r);
    }
    if !this.waiting {
        let deadline = Instant::now() + this.timeout;
        match &mut this.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        this.waiting = true;
    }
    if let Some(sleep) = &mut this.sleep
        && sleep.as_mut().poll(cx).is_ready()
    {
        this.waiting = false;
        tracing::debug!("writing to the client timed out; closing the connection");
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "writing to the client timed out",
        )));
    }
    Poll::Pending
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

//! A transport with a write timeout and a bound on the wait for the first
//! byte, for servers whose protocol library does its own I/O.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stall::Stall;

/// A transport whose writes fail with [`io::ErrorKind::TimedOut`] once the
/// peer has taken nothing for `write_timeout`
/// ([`Limits::write_timeout`](crate::Limits::write_timeout)): a peer that
/// stops reading cannot hold a connection, and the application writing to
/// it, for ever. Flushes and the shutdown of the write side are bounded the
/// same way. Writes that complete at once cost no clock read and no timer.
///
/// With [`first_byte_timeout`](TimedIo::first_byte_timeout), reads fail the
/// same way until the first byte arrives, once they have waited that long: a
/// peer that connects and sends nothing is let go. After the first byte a
/// read costs one check more than the bare transport's. Reads are otherwise
/// not timed: the protocol bounds them (a head read timeout, a body read
/// timeout, an idle close).
///
/// For a server whose protocol library reads and writes the connection
/// itself (hyper, for one), where a timeout cannot be put around each write.
///
/// ```
/// # async fn demo() -> std::io::Result<()> {
/// use std::time::Duration;
/// use gateway_core::server::TimedIo;
/// use tokio::io::AsyncWriteExt;
///
/// // A peer that reads nothing: the pipe's 16 bytes fill, then the write
/// // waits, and fails after 50 ms.
/// let (ours, _peer) = tokio::io::duplex(16);
/// let mut io = TimedIo::new(ours, Duration::from_millis(50));
/// let err = io.write_all(&[0; 64]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
/// #     .block_on(demo()).unwrap();
/// ```
#[derive(Debug)]
pub struct TimedIo<T> {
    inner: T,
    write: Stall,
    /// The wait for the first byte; `None` once it came (or when unbounded).
    first_read: Option<Stall>,
}

impl<T> TimedIo<T> {
    /// `inner` with writes bounded by `write_timeout`; reads untimed.
    pub fn new(inner: T, write_timeout: Duration) -> Self {
        Self {
            inner,
            write: Stall::new(write_timeout),
            first_read: None,
        }
    }

    /// Bounds the wait for the first byte read: a read still waiting for it
    /// after `timeout` fails with [`io::ErrorKind::TimedOut`].
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_read = Some(Stall::new(timeout));
        self
    }

    /// The transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The transport, to change (reading or writing through it is not
    /// timed).
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The transport back.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// Passes a write-side poll through, timing how long it stays pending.
fn timed<T: Unpin, R>(
    this: &mut TimedIo<T>,
    cx: &mut Context<'_>,
    op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
) -> Poll<io::Result<R>> {
    let poll = op(Pin::new(&mut this.inner), cx);
    if this.write.expired(poll.is_ready(), cx) {
        tracing::debug!("writing to the peer timed out");
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "writing to the peer timed out",
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
            tracing::debug!("no byte from the peer within the first byte timeout");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no byte from the peer within the first byte timeout",
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_write_the_peer_does_not_take_times_out() {
        let (ours, mut peer) = tokio::io::duplex(8);
        let mut io = TimedIo::new(ours, SHORT);
        // Room for it: no timer involved.
        io.write_all(b"12345678").await.unwrap();
        let err = io.write_all(b"9").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let mut got = [0u8; 8];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"12345678");
    }

    #[tokio::test]
    async fn a_slow_peer_that_keeps_reading_is_not_timed_out() {
        let (ours, mut peer) = tokio::io::duplex(4);
        let mut io = TimedIo::new(ours, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = [0u8; 4];
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match peer.read(&mut buf).await {
                    Ok(0) | Err(_) => return all,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        });
        io.write_all(&[7u8; 40]).await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), vec![7u8; 40]);
    }

    #[tokio::test]
    async fn the_first_byte_is_due_within_its_timeout() {
        let (ours, _peer) = tokio::io::duplex(64);
        let mut io = TimedIo::new(ours, SHORT).first_byte_timeout(SHORT);
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn after_the_first_byte_reads_wait_as_long_as_they_need() {
        let (ours, mut peer) = tokio::io::duplex(64);
        let mut io = TimedIo::new(ours, SHORT).first_byte_timeout(SHORT);
        peer.write_all(b"a").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        let later = tokio::spawn(async move {
            tokio::time::sleep(SHORT * 3).await;
            peer.write_all(b"b").await.unwrap();
            peer
        });
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        assert_eq!(buf[0], b'b');
        drop(later.await.unwrap());
        // Without the bound, the first read waits too.
        let (ours, mut peer) = tokio::io::duplex(64);
        let mut io = TimedIo::new(ours, SHORT);
        let later = tokio::spawn(async move {
            tokio::time::sleep(SHORT * 3).await;
            peer.write_all(b"c").await.unwrap();
            peer
        });
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        drop(later.await.unwrap());
    }
}

//! Read and write timeouts on any stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stall::Stall;

/// A reader, writer or both whose operations fail with
/// [`TimedOut`](io::ErrorKind::TimedOut) once they have waited longer than
/// their timeout: a peer that stops sending (mid-body) or stops reading
/// (mid-response) cannot hold a connection and its application forever.
///
/// Each read and each write is timed on its own, from the moment it has to
/// wait ([`Stall`]), so a slow but steady transfer never times out, and an
/// operation that completes at once costs no clock read and no timer.
///
/// A request body read through it reports a timeout the handler recognises:
/// [`Body::from_reader`](crate::Body::from_reader) turns `TimedOut` into a
/// body timeout (a client fault, 408 while nothing was sent).
///
/// ```
/// use std::time::Duration;
/// use gateway_core::Body;
/// use gateway_core::server::Timed;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// // A body of five bytes whose sender went quiet after two.
/// let (mut web_server, socket) = tokio::io::duplex(64);
/// tokio::io::AsyncWriteExt::write_all(&mut web_server, b"ab").await.unwrap();
/// let reader = Timed::reads(socket, Duration::from_millis(50));
/// let body = Body::from_reader(reader, Some(5));
/// let err = http_body_util::BodyExt::collect(body).await.unwrap_err();
/// let err = err.downcast::<gateway_core::Error>().unwrap();
/// assert!(err.is_body_timeout());
/// # });
/// ```
#[derive(Debug)]
pub struct Timed<T> {
    inner: T,
    read: Option<Stall>,
    write: Option<Stall>,
    /// The wait for the first byte; `None` once it came (or when unbounded).
    first_read: Option<Stall>,
}

impl<T> Timed<T> {
    /// `inner` with reads limited to `read_timeout` and writes (and
    /// flushes and shutdown) to `write_timeout`.
    pub fn new(inner: T, read_timeout: Duration, write_timeout: Duration) -> Self {
        Self {
            inner,
            read: Some(Stall::new(read_timeout)),
            write: Some(Stall::new(write_timeout)),
            first_read: None,
        }
    }

    /// `inner` with only its reads timed
    /// ([`Limits::body_read_timeout`](crate::Limits::body_read_timeout) for
    /// a request body).
    pub fn reads(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            read: Some(Stall::new(timeout)),
            write: None,
            first_read: None,
        }
    }

    /// `inner` with only its writes timed
    /// ([`Limits::write_timeout`](crate::Limits::write_timeout) for a
    /// response).
    pub fn writes(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            read: None,
            write: Some(Stall::new(timeout)),
            first_read: None,
        }
    }

    /// Also bounds the wait for the first byte read: a read still waiting
    /// for it after `timeout` fails with `TimedOut`, so a peer that
    /// connects and sends nothing is let go. For a server whose protocol
    /// library reads the connection itself (hyper, whose own header timeout
    /// starts only once it has seen some bytes); after the first byte an
    /// untimed read costs one check more than the bare stream's.
    pub fn first_byte(mut self, timeout: Duration) -> Self {
        self.first_read = Some(Stall::new(timeout));
        self
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream inside, to use without the timeouts.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Gives back the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// Fails a poll that has been pending longer than `stall` allows.
fn limit<R>(
    stall: Option<&mut Stall>,
    what: &str,
    poll: Poll<io::Result<R>>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    let Some(stall) = stall else {
        return poll;
    };
    if stall.expired(poll.is_ready(), cx) {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} waited longer than {:?}", stall.timeout()),
        )));
    }
    poll
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(first) = &mut this.first_read {
            if poll.is_ready() {
                if buf.filled().len() > before {
                    this.first_read = None;
                }
            } else if first.expired(false, cx) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no byte from the peer within the first byte timeout",
                )));
            }
        }
        limit(this.read.as_mut(), "a read", poll, cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        limit(this.write.as_mut(), "a write", poll, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        limit(this.write.as_mut(), "a write", poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        limit(this.write.as_mut(), "a flush", poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        limit(this.write.as_mut(), "a shutdown", poll, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_peer_fails_the_read() {
        let (_peer, ours) = tokio::io::duplex(16);
        let mut reader = Timed::reads(ours, Duration::from_millis(50));
        let err = reader.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// The first byte is awaited for a bounded time; after it, reads are
    /// not timed.
    #[tokio::test]
    async fn the_first_byte_is_bounded_then_reads_are_free() {
        let (_peer, ours) = tokio::io::duplex(16);
        let mut io =
            Timed::writes(ours, Duration::from_secs(60)).first_byte(Duration::from_millis(50));
        let err = io.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut peer, ours) = tokio::io::duplex(16);
        let mut io =
            Timed::writes(ours, Duration::from_secs(60)).first_byte(Duration::from_millis(50));
        peer.write_all(b"a").await.unwrap();
        assert_eq!(io.read_u8().await.unwrap(), b'a');
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            peer.write_all(b"b").await.unwrap();
            peer
        });
        assert_eq!(io.read_u8().await.unwrap(), b'b');
        let _ = late.await;
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_fails_the_write() {
        let (_peer, ours) = tokio::io::duplex(4);
        let mut writer = Timed::writes(ours, Duration::from_millis(50));
        let err = writer.write_all(b"more than four").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn steady_traffic_never_times_out() {
        let (mut peer, ours) = tokio::io::duplex(16);
        let limit = Duration::from_millis(300);
        let mut reader = Timed::new(ours, limit, limit);
        let sender = tokio::spawn(async move {
            for b in 0..10u8 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                peer.write_all(&[b]).await.unwrap();
            }
        });
        let mut got = [0u8; 10];
        reader.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn untimed_directions_wait_as_long_as_it_takes() {
        let (mut peer, ours) = tokio::io::duplex(16);
        let mut writer_only = Timed::writes(ours, Duration::from_millis(20));
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            peer.write_all(b"x").await.unwrap();
            peer
        });
        assert_eq!(writer_only.read_u8().await.unwrap(), b'x');
        drop(sender.await.unwrap());
    }
}

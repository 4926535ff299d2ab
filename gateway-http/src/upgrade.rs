//! Connections that switch protocols (HTTP/1.1 `Upgrade`, such as
//! WebSocket): once hyper hands the connection over to the application, it
//! still counts against the server's connection cap, and it is closed when
//! the server stops and the grace period is over.
//!
//! hyper's connection future ends when the connection is upgraded; the
//! stream lives on inside the application's `Upgraded`. So the stream is
//! [`Tethered`]: dropping it tells the connection's task, which waits for
//! that (holding the connection's slot), and the task can shut the socket
//! down when the server stops. To do that it needs a descriptor of its
//! own: a stream whose request asks to switch protocols takes one (a
//! duplicate of the socket's) at its next write, which is the 101 going
//! out. Connections that never ask pay one atomic load per write.
//!
//! HTTP/2 streams can switch protocols too (an extended CONNECT, RFC 8441):
//! hyper hands such a stream to the application and keeps serving the
//! connection. The connection's stream counts the HTTP/2 streams open on it
//! ([`StreamCounter`]), so that the connection's idle watch leaves a
//! connection alone while a stream it handed over may still be open.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::Bytes;
use gateway_core::server::{Stall, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::h2streams::StreamCounter;

/// What a connection's task shares with its stream.
#[derive(Debug, Default)]
pub(crate) struct Tether {
    /// A request on the connection asked to switch protocols: take a
    /// handle on the socket at the next write.
    armed: AtomicBool,
    /// A second descriptor of the socket, to shut it down while the stream
    /// belongs to the application.
    handle: Mutex<Option<Handle>>,
    /// The stream was dropped.
    released: AtomicBool,
    notify: Notify,
    /// An HTTP/2 stream on the connection was an extended CONNECT.
    tunnels: AtomicBool,
    /// HTTP/2 streams open on the connection, as its stream counted them.
    open_streams: AtomicUsize,
    /// Reads that brought bytes (HTTP/1: whether the connection is quiet).
    reads: AtomicU64,
    /// The last write or flush had to wait: hyper may hold bytes it has
    /// not written yet.
    write_blocked: AtomicBool,
    /// The connection is being parked: hyper's shutdown of the stream is
    /// skipped, the stream lives on.
    parking: AtomicBool,
}

#[derive(Debug)]
enum Handle {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Tether {
    fn handle(&self) -> MutexGuard<'_, Option<Handle>> {
        self.handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request asked to switch protocols.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }

    /// An HTTP/2 stream on the connection asked for an extended CONNECT:
    /// from now on, open streams keep the connection from being idle.
    pub(crate) fn tunnel(&self) {
        self.tunnels.store(true, Ordering::Relaxed);
    }

    /// Whether a stream the connection handed over (an extended CONNECT)
    /// may still be open: one was asked for, and streams are open.
    pub(crate) fn tunnel_open(&self) -> bool {
        self.tunnels.load(Ordering::Relaxed) && self.open_streams.load(Ordering::Relaxed) > 0
    }

    /// How many reads have brought bytes so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Whether the last write or flush had to wait.
    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::Relaxed)
    }

    /// From now on (`true`) or no longer, a shutdown of the stream is
    /// skipped: the connection is parked, not closed.
    pub(crate) fn parking(&self, yes: bool) {
        self.parking.store(yes, Ordering::Relaxed);
    }

    /// Whether the stream has been dropped.
    pub(crate) fn released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Completes once the stream has been dropped.
    pub(crate) async fn wait_released(&self) {
        loop {
            let notified = self.notify.notified();
            if self.released() {
                return;
            }
            notified.await;
        }
    }

    /// Shuts the socket down (both ways), if the stream took a handle on it
    /// and is still alive: the peer sees the connection end, and the
    /// application's reads end and its writes fail.
    pub(crate) fn cut(&self) {
        if let Some(handle) = self.handle().take() {
            let _ = match &handle {
                Handle::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
                Handle::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            };
        }
    }
}

/// Cuts the tether when dropped: the connection's task ended (or was
/// aborted once the shutdown deadline passed) while the application may
/// still hold the stream.
#[derive(Debug)]
pub(crate) struct CutOnDrop(pub(crate) Arc<Tether>);

impl Drop for CutOnDrop {
    fn drop(&mut self) {
        self.0.cut();
    }
}

/// A connection's stream, tethered to its task, with the bytes read from
/// it already to read again first, and its timeouts: each write (flush,
/// shutdown) fails with `TimedOut` once it has waited longer than the
/// write timeout (a client that takes nothing written to it is gone), and
/// so does the wait for the first byte of a new connection. One layer over
/// the socket rather than three: hyper reads and writes through it on every
/// request.
#[derive(Debug)]
pub(crate) struct Tethered {
    inner: Stream,
    /// Read from the stream already (to tell HTTP/2 from HTTP/1, or by the
    /// hyper connection before the connection was parked): read again
    /// before the rest.
    replay: Bytes,
    write: Stall,
    /// The last write, flush or shutdown had to wait: `write` is timing
    /// it. Until one does, a write that is ready at once leaves `write`
    /// alone.
    write_waiting: bool,
    /// The wait for the first byte; `None` once it came (or unbounded).
    first_read: Option<Stall>,
    tether: Release,
    streams: StreamCounter,
}

/// The stream's end of the tether: dropping it (with the stream, or when
/// the stream is taken back) tells the task.
#[derive(Debug)]
struct Release(Arc<Tether>);

impl std::ops::Deref for Release {
    type Target = Tether;

    fn deref(&self) -> &Tether {
        &self.0
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        // The application is done with the connection: close it as it
        // asked (our duplicate would keep the socket open).
        drop(self.0.handle().take());
        self.0.released.store(true, Ordering::Release);
        self.0.notify.notify_one();
    }
}

impl Tethered {
    /// `inner`, with `replay` to be read first, writes limited to
    /// `write_timeout` and, when given, the first byte due within
    /// `first_byte`.
    pub(crate) fn new(
        inner: Stream,
        replay: Bytes,
        write_timeout: Duration,
        first_byte: Option<Duration>,
    ) -> (Self, Arc<Tether>) {
        let tether = Arc::new(Tether::default());
        (
            Self {
                inner,
                replay,
                write: Stall::new(write_timeout),
                write_waiting: false,
                first_read: first_byte.map(Stall::new),
                tether: Release(tether.clone()),
                streams: StreamCounter::default(),
            },
            tether,
        )
    }

    /// Takes the stream back (a connection being parked): the tether is
    /// released, and a handle taken on the socket is dropped, so cutting
    /// the tether no longer touches the socket.
    pub(crate) fn into_stream(self) -> Stream {
        self.inner.replay(self.replay)
    }

    /// Fails a write, flush or shutdown that has waited longer than the
    /// write timeout, and notes whether it had to wait.
    #[inline(always)]
    fn limit_write<R>(
        &mut self,
        what: &str,
        poll: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        let pending = poll.is_pending();
        if !pending && !self.write_waiting {
            // The usual case: ready at once, as the one before.
            return poll;
        }
        if self.waited_too_long(pending, cx) {
            return Poll::Ready(Err(self.write_timed_out(what)));
        }
        poll
    }

    /// The rest of `limit_write`, once a write had to wait: whether this
    /// one has now waited longer than the write timeout.
    #[inline(never)]
    fn waited_too_long(&mut self, pending: bool, cx: &mut Context<'_>) -> bool {
        self.write_waiting = pending;
        self.blocked(pending);
        self.write.expired(!pending, cx)
    }

    #[cold]
    fn write_timed_out(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} waited longer than {:?}", self.write.timeout()),
        )
    }

    /// Publishes the count of open HTTP/2 streams after it may have changed.
    fn counted(&self) {
        self.tether
            .open_streams
            .store(self.streams.open(), Ordering::Relaxed);
    }

    /// Notes whether the last write or flush had to wait.
    fn blocked(&self, pending: bool) {
        self.tether.write_blocked.store(pending, Ordering::Relaxed);
    }

    /// Takes the handle a switch of protocols needs, once asked to.
    fn take_handle(&self) {
        if self.tether.armed.load(Ordering::Relaxed) {
            self.tether.armed.store(false, Ordering::Relaxed);
            let mut slot = self.tether.handle();
            if slot.is_none() {
                *slot = handle_of(&self.inner);
            }
        }
    }
}

/// A duplicate descriptor of the socket below `stream`.
fn handle_of(stream: &Stream) -> Option<Handle> {
    match stream {
        Stream::Tcp(s) => s
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(|fd| Handle::Tcp(fd.into())),
        Stream::Unix(s) => s
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(|fd| Handle::Unix(fd.into())),
        Stream::Replay(r) => handle_of(r.stream()),
        _ => None,
    }
}

impl AsyncRead for Tethered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let poll = if this.replay.is_empty() {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            if this.replay.is_empty() {
                // Let go of the bytes' buffer: the stream may live on.
                this.replay = Bytes::new();
            }
            Poll::Ready(Ok(()))
        };
        let got = matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        if let Some(first) = &mut this.first_read {
            if got {
                this.first_read = None;
            } else if poll.is_pending() && first.expired(false, cx) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no byte from the peer within the first byte timeout",
                )));
            }
        }
        if got {
            // Only this stream writes the count: no read-modify-write.
            let reads = &this.tether.reads;
            reads.store(reads.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            if !this.streams.is_off() {
                this.streams.read(&buf.filled()[before..]);
                this.counted();
            }
        }
        poll
    }
}

impl AsyncWrite for Tethered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.take_handle();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll
            && !this.streams.is_off()
        {
            this.streams.wrote(&buf[..n.min(buf.len())]);
            this.counted();
        }
        this.limit_write("a write", poll, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.take_handle();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll
            && !this.streams.is_off()
        {
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(b.len());
                this.streams.wrote(&b[..take]);
                left -= take;
            }
            this.counted();
        }
        this.limit_write("a write", poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.limit_write("a flush", poll, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.tether.parking.load(Ordering::Relaxed) {
            // Parked, not closed: the stream goes on without hyper.
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.limit_write("a shutdown", poll, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn cut_ends_the_peer_and_the_holder() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut s, tether) = Tethered::new(
            Stream::Tcp(server),
            Bytes::new(),
            Duration::from_secs(5),
            None,
        );
        // Not armed: no handle, a cut does nothing.
        s.write_all(b"a").await.unwrap();
        tether.cut();
        s.write_all(b"b").await.unwrap();
        let mut two = [0; 2];
        client.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        // Armed: the next write takes a handle, and a cut ends both sides.
        tether.arm();
        s.write_all(b"c").await.unwrap();
        tether.cut();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"c");
        let mut buf = [0; 1];
        assert_eq!(s.read(&mut buf).await.unwrap(), 0);
        assert!(!tether.released());
        drop(s);
        assert!(tether.released());
        tether.wait_released().await;
    }
}

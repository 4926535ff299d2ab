//! Listeners and accepted streams: TCP, Unix sockets, and the socket on fd 0.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// The listen backlog used when none is set: the kernel caps it at
/// `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// How a listening socket is created.
#[derive(Debug, Clone)]
pub struct BindOptions {
    mode: Option<u32>,
    remove_stale: bool,
    backlog: u32,
    reuse_port: bool,
}

impl Default for BindOptions {
    fn default() -> Self {
        Self {
            mode: None,
            remove_stale: false,
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
        }
    }
}

impl BindOptions {
    /// The defaults: a backlog of [`DEFAULT_BACKLOG`]; for a Unix socket the
    /// process umask decides the mode and an existing file at the path is an
    /// error.
    pub fn new() -> Self {
        Self::default()
    }

    /// The listen backlog: how many connections the kernel holds that the
    /// server has not accepted yet (capped by `net.core.somaxconn`). The
    /// server accepts at once and answers connections past its cap with a
    /// busy reply, so this only needs to absorb bursts.
    pub fn backlog(&mut self, backlog: u32) -> &mut Self {
        self.backlog = backlog;
        self
    }

    /// Whether a TCP socket is bound with `SO_REUSEPORT` (default: no), so
    /// that several processes can listen on the same address and port at
    /// once, each with its own socket, and the kernel spreads new
    /// connections among them. Every socket of the group must set it (and
    /// belong to the same user). A rolling restart then starts the new
    /// process on the port before the old one stops. Ignored for Unix
    /// sockets.
    pub fn reuse_port(&mut self, yes: bool) -> &mut Self {
        self.reuse_port = yes;
        self
    }

    /// Sets the socket file's permission bits (e.g. `0o660`, so that only
    /// the web server's group can connect).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = Some(mode);
        self
    }

    /// Removes a stale socket file left at the path by an earlier run
    /// (only if it is a socket).
    pub fn remove_stale(&mut self, yes: bool) -> &mut Self {
        self.remove_stale = yes;
        self
    }
}

/// A listening socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix domain socket, with the path it was bound to (removed on drop
    /// when we created it).
    Unix(UnixListener, Option<PathBuf>),
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(l) => f.debug_tuple("Tcp").field(&l.local_addr().ok()).finish(),
            Listener::Unix(_, p) => f.debug_tuple("Unix").field(p).finish(),
        }
    }
}

impl Listener {
    /// Binds `addr`: `HOST:PORT` for TCP, `unix:PATH` for a Unix socket
    /// (stale socket files are removed), with the default backlog.
    pub async fn bind(addr: &str) -> io::Result<Self> {
        Self::bind_with(addr, BindOptions::new().remove_stale(true)).await
    }

    /// Binds `addr` (as [`bind`](Listener::bind)) with `opts`.
    pub async fn bind_with(addr: &str, opts: &BindOptions) -> io::Result<Self> {
        match addr.strip_prefix("unix:") {
            Some(path) => Self::bind_unix(path, opts),
            None => Self::bind_host(addr, opts).await,
        }
    }

    /// Binds the first address `host` (anything `tokio::net::lookup_host`
    /// takes: `127.0.0.1:9000`, `("localhost", 9000)`) resolves to that
    /// binds.
    pub(crate) async fn bind_host(
        host: impl tokio::net::ToSocketAddrs,
        opts: &BindOptions,
    ) -> io::Result<Self> {
        let mut last = None;
        for a in tokio::net::lookup_host(host).await? {
            match Self::bind_tcp(a, opts) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to listen on")))
    }

    /// Binds a TCP socket at `addr` (with `SO_REUSEADDR`, as servers do,
    /// and `SO_REUSEPORT` when `opts` say so). Must be called inside a
    /// tokio runtime.
    pub fn bind_tcp(addr: SocketAddr, opts: &BindOptions) -> io::Result<Self> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if opts.reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        Ok(Listener::Tcp(socket.listen(opts.backlog)?))
    }

    /// Binds a Unix socket at `path`. Must be called inside a tokio runtime.
    pub fn bind_unix(path: impl AsRef<Path>, opts: &BindOptions) -> io::Result<Self> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let path = path.as_ref();
        if opts.remove_stale
            && let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.file_type().is_socket()
        {
            std::fs::remove_file(path)?;
        }
        let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
        sock.bind(&socket2::SockAddr::unix(path)?)?;
        sock.listen(i32::try_from(opts.backlog).unwrap_or(i32::MAX))?;
        sock.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(
            std::os::fd::OwnedFd::from(sock),
        ))?;
        if let Some(mode) = opts.mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(Listener::Unix(listener, Some(path.to_path_buf())))
    }

    /// The listening socket on file descriptor 0, if there is one (FastCGI's
    /// `FCGI_LISTENSOCK_FILENO`: lighttpd's `bin-path` and `spawn-fcgi` start
    /// the application with it). `Ok(None)` when fd 0 is not
    /// a listening socket (a terminal, a pipe, /dev/null). Must be called
    /// inside a tokio runtime.
    pub fn from_stdin() -> io::Result<Option<Self>> {
        use std::os::fd::AsFd;
        let Ok(fd) = io::stdin().as_fd().try_clone_to_owned() else {
            return Ok(None);
        };
        let sock = socket2::Socket::from(fd);
        // Not a socket, or not listening: leave it alone.
        if !matches!(sock.is_listener(), Ok(true)) {
            return Ok(None);
        }
        sock.set_nonblocking(true)?;
        let is_unix = sock.local_addr()?.is_unix();
        let fd = std::os::fd::OwnedFd::from(sock);
        if is_unix {
            let std = std::os::unix::net::UnixListener::from(fd);
            Ok(Some(Listener::Unix(UnixListener::from_std(std)?, None)))
        } else {
            let std = std::net::TcpListener::from(fd);
            Ok(Some(Listener::Tcp(TcpListener::from_std(std)?)))
        }
    }

    /// The local address, as text (`127.0.0.1:9000`, `unix:/run/app.sock`).
    pub fn local_addr_string(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".to_owned(), |a| a.to_string()),
            Listener::Unix(l, p) => match (p, l.local_addr()) {
                (Some(p), _) => format!("unix:{}", p.display()),
                (None, Ok(a)) => a.as_pathname().map_or_else(
                    || "unix:(unnamed)".to_owned(),
                    |p| format!("unix:{}", p.display()),
                ),
                (None, Err(_)) => "unix:?".to_owned(),
            },
        }
    }

    /// The TCP address, if this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Accepts one connection: the stream and, for TCP, the peer's address.
    ///
    /// One task at a time waits on a listener (as an accept loop does):
    /// the wait keeps only the waker of the last task that polled it, so a
    /// second task waiting on the same listener at once would take the
    /// first one's place.
    pub async fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        // Polled through the listener's own waker slot (`poll_accept`), not
        // a readiness future queued on the socket and taken off again each
        // time the accept loop waits.
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = std::future::poll_fn(|cx| l.poll_accept(cx)).await?;
                // A whole small response in one segment, no Nagle delay
                // (flup loses 44 ms a request to Nagle + delayed ACK).
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Some(peer)))
            }
            Listener::Unix(l, _) => {
                let (s, _) = std::future::poll_fn(|cx| l.poll_accept(cx)).await?;
                Ok((Stream::Unix(s), None))
            }
        }
    }
}

impl Listener {
    /// Accepts a connection already waiting in the backlog, without waiting
    /// for one: `Ok(None)` when none is. It asks the kernel directly, so it
    /// also finds connections that arrived since the runtime last looked
    /// (which [`accept`](Listener::accept) would only see on a later turn).
    pub fn accept_waiting(&self) -> io::Result<Option<(Stream, Option<SocketAddr>)>> {
        let sock = match self {
            Listener::Tcp(l) => socket2::SockRef::from(l),
            Listener::Unix(l, _) => socket2::SockRef::from(l),
        };
        let (accepted, peer) = match sock.accept() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        accepted.set_nonblocking(true)?;
        match self {
            Listener::Tcp(_) => {
                let _ = accepted.set_tcp_nodelay(true);
                let s = TcpStream::from_std(std::net::TcpStream::from(accepted))?;
                Ok(Some((Stream::Tcp(s), peer.as_socket())))
            }
            Listener::Unix(..) => {
                let s = UnixStream::from_std(std::os::unix::net::UnixStream::from(accepted))?;
                Ok(Some((Stream::Unix(s), None)))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An accepted connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix domain socket.
    Unix(UnixStream),
    /// A stream some of whose first bytes were read already (to tell its
    /// protocol) and are read again before the rest.
    Replay(Box<Replay>),
    /// One end of an in-memory pipe ([`tokio::io::duplex`]): a connection
    /// served without a socket, such as one a test or a fuzzer drives. It
    /// has no addresses, and [`Stream::try_read`] cannot look into it.
    Duplex(DuplexStream),
}

/// A stream with bytes to read again first: see [`Stream::replay`].
#[derive(Debug)]
pub struct Replay {
    pending: bytes::Bytes,
    stream: Stream,
}

impl Replay {
    /// The bytes not read again yet.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The stream below.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }
}

impl Stream {
    /// The local address, for TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Unix(_) | Stream::Duplex(_) => None,
            Stream::Replay(r) => r.stream.local_addr(),
        }
    }

    /// The peer's address, for TCP.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr().ok(),
            Stream::Unix(_) | Stream::Duplex(_) => None,
            Stream::Replay(r) => r.stream.peer_addr(),
        }
    }

    /// This stream, with `bytes` (read from it already) to be read again
    /// before what follows. Empty `bytes` leave it as it is; a stream whose
    /// replayed bytes were all read again takes the new ones in their place,
    /// so replaying again and again does not pile up layers.
    pub fn replay(self, bytes: bytes::Bytes) -> Stream {
        if bytes.is_empty() {
            return self;
        }
        match self {
            Stream::Replay(mut r) if r.pending.is_empty() => {
                r.pending = bytes;
                Stream::Replay(r)
            }
            stream => Stream::Replay(Box::new(Replay {
                pending: bytes,
                stream,
            })),
        }
    }

    /// The TCP stream below, if this is TCP.
    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(_) | Stream::Duplex(_) => None,
            Stream::Replay(r) => r.stream.as_tcp(),
        }
    }

    /// Waits until there is something to read: bytes, the end of the
    /// input or an error (at once for bytes still to be replayed). It reads
    /// nothing (it peeks) and holds no buffer, so a connection waiting on it
    /// costs no more than its socket.
    pub async fn readable(&self) -> io::Result<()> {
        let mut s = self;
        while let Stream::Replay(r) = s {
            if !r.pending.is_empty() {
                return Ok(());
            }
            s = &r.stream;
        }
        // The runtime takes a new socket as readable until a read finds
        // nothing: peek until one finds something.
        loop {
            let peeked = match s {
                Stream::Tcp(t) => {
                    t.readable().await?;
                    t.try_io(tokio::io::Interest::READABLE, || peek(t))
                }
                Stream::Unix(u) => {
                    u.readable().await?;
                    u.try_io(tokio::io::Interest::READABLE, || peek(u))
                }
                Stream::Replay(_) => return Ok(()),
                // An in-memory pipe cannot be watched through a shared
                // reference: taken as readable, the read that follows waits.
                Stream::Duplex(_) => return Ok(()),
            };
            match peeked {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Bytes, the end, or an error a read will report.
                _ => return Ok(()),
            }
        }
    }

    /// Reads what is ready without waiting (`WouldBlock` when nothing is;
    /// always `WouldBlock` for an in-memory pipe, which cannot be read
    /// through a shared reference).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
            Stream::Replay(r) if !r.pending.is_empty() => {
                let n = r.pending.len().min(buf.len());
                buf[..n].copy_from_slice(&r.pending[..n]);
                // Only a probe: the bytes stay pending.
                Ok(n)
            }
            Stream::Replay(r) => r.stream.try_read(buf),
            Stream::Duplex(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Peeks at one byte of a non-blocking socket: its count (0 at the end of
/// the input), or `WouldBlock`.
fn peek(sock: &impl std::os::fd::AsFd) -> io::Result<usize> {
    let mut one = [std::mem::MaybeUninit::<u8>::uninit()];
    socket2::SockRef::from(sock).peek(&mut one)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Duplex(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Replay(r) => {
                if r.pending.is_empty() {
                    return Pin::new(&mut r.stream).poll_read(cx, buf);
                }
                let n = r.pending.len().min(buf.remaining());
                buf.put_slice(&r.pending.split_to(n));
                if r.pending.is_empty() {
                    // Let go of the bytes' buffer: the stream may live on
                    // for long.
                    r.pending = bytes::Bytes::new();
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Duplex(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Replay(r) => Pin::new(&mut r.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Duplex(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Replay(r) => Pin::new(&mut r.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Duplex(s) => Pin::new(s).poll_flush(cx),
            Stream::Replay(r) => Pin::new(&mut r.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Duplex(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Replay(r) => Pin::new(&mut r.stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Replaying onto a stream whose replayed bytes were all read reuses
    /// its layer; the bytes come in order either way.
    #[tokio::test]
    async fn a_spent_replay_takes_the_next_bytes() {
        let (ours, mut peer) = tokio::io::duplex(64);
        let mut s = Stream::Duplex(ours).replay(bytes::Bytes::from_static(b"ab"));
        peer.write_all(b"cd").await.unwrap();
        let mut four = [0u8; 4];
        s.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"abcd");
        let mut s = s.replay(bytes::Bytes::from_static(b"ef"));
        match &s {
            Stream::Replay(r) => assert!(matches!(r.stream(), Stream::Duplex(_))),
            _ => panic!("not a replay"),
        }
        // Bytes not read yet stay in front of new ones.
        s = s.replay(bytes::Bytes::from_static(b"0"));
        peer.write_all(b"g").await.unwrap();
        let mut four = [0u8; 4];
        s.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"0efg");
    }
}

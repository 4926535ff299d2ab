//! The accept loop.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::Gated;
use tokio::time::Instant;

use super::listener::{Listener, Stream};
use super::release::{Bursts, MemoryRelease};
use super::shutdown::{Shutdown, Watch};

/// What [`serve`] hands each connection's function.
#[derive(Debug)]
#[non_exhaustive]
pub struct Connection {
    /// The stream.
    pub stream: Stream,
    /// The peer's address (TCP only).
    pub peer_addr: Option<SocketAddr>,
    /// The local address (TCP only).
    pub local_addr: Option<SocketAddr>,
    /// The server's shutdown: check it between requests, close when idle.
    pub shutdown: Watch,
    /// When the connection was accepted: the wait for its first bytes is
    /// timed from here (see [`wait_for_input`](Connection::wait_for_input)).
    pub accepted: Instant,
}

impl Connection {
    /// A connection accepted elsewhere (a socket pair in a test, a socket
    /// passed by another process), to hand to a server's
    /// `serve_connection`. The addresses are read from `stream` (TCP only);
    /// `shutdown` is the watch the connection closes on, such as
    /// [`Shutdown::watch`](super::Shutdown::watch). It counts as accepted
    /// now. Needs a tokio runtime with the time driver.
    pub fn new(stream: Stream, shutdown: Watch) -> Self {
        Connection {
            peer_addr: stream.peer_addr(),
            local_addr: stream.local_addr(),
            stream,
            shutdown,
            accepted: Instant::now(),
        }
    }

    /// Waits until the connection has something to read (bytes, or the
    /// end of its input), `timeout` has passed since it was
    /// [accepted](Connection::accepted), or its shutdown watch reports
    /// stopping, whichever comes first. It holds no buffer and no timer
    /// past its return.
    ///
    /// A server calls it before it builds a connection's state (buffers,
    /// parser, the request's future), and times the first bytes with
    /// [`first_bytes_left`](Connection::first_bytes_left): a connection
    /// that sends nothing then costs little more than its socket and its
    /// task, and however the wait ended, the server goes on as it would
    /// have without it (the bytes are there, its first-byte deadline has
    /// passed, or the watch reports stopping).
    pub async fn wait_for_input(&mut self, timeout: Duration) {
        let mut readable = std::pin::pin!(self.stream.readable());
        // Usually the peer wrote its first bytes with its connect and they
        // are there already: one look first, without registering a timer
        // or the shutdown watch.
        let first = std::future::poll_fn(|cx| Poll::Ready(readable.as_mut().poll(cx))).await;
        if first.is_ready() {
            return;
        }
        let deadline = self.accepted + timeout;
        tokio::select! {
            _ = readable => {}
            () = self.shutdown.stopping() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }

    /// What is left of a first-byte `timeout` counted from when the
    /// connection was [accepted](Connection::accepted) (zero once it has
    /// passed): the timeout a server gives the wait for the first bytes
    /// after [`wait_for_input`](Connection::wait_for_input).
    pub fn first_bytes_left(&self, timeout: Duration) -> Duration {
        (self.accepted + timeout).saturating_duration_since(Instant::now())
    }

    /// Tells the connection's protocol from its first bytes (see
    /// [`sniff_stream`](super::sniff_stream)), for at most `timeout`, and
    /// gives the connection back with those bytes still to be read. `None`
    /// when the peer closed or went silent before its protocol showed.
    pub async fn sniff(
        self,
        timeout: Duration,
    ) -> io::Result<(Option<super::Sniffed>, Connection)> {
        let Connection {
            stream,
            peer_addr,
            local_addr,
            shutdown,
            accepted,
        } = self;
        let (found, stream) = super::sniff_stream(stream, timeout).await?;
        Ok((
            found,
            Connection {
                stream,
                peer_addr,
                local_addr,
                shutdown,
                accepted,
            },
        ))
    }
}

/// How a server answers a connection it has no room for (the connection
/// cap is reached): a protocol's "busy" answer, written at once, so the
/// client is refused cleanly instead of waiting in the listen backlog.
///
/// The answer runs on its own task for at most [`Refusal::TIME_LIMIT`]; at
/// most [`Refusal::MAX_AT_ONCE`] run at once, and connections past that are
/// closed without an answer.
#[derive(Clone)]
pub struct Refusal {
    answer: Option<Arc<RefuseFn>>,
}

type RefuseFn = dyn Fn(Stream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("answers", &self.answer.is_some())
            .finish()
    }
}

impl Refusal {
    /// How long one refusal may take (reading enough of the request to
    /// answer it, writing the answer, the lingering close).
    pub const TIME_LIMIT: Duration = Duration::from_secs(2);
    /// The most refusals answered at once.
    pub const MAX_AT_ONCE: usize = 64;

    /// Refuses with `answer`, which gets the stream and writes the
    /// protocol's busy answer (HTTP 503, FastCGI `FCGI_OVERLOADED`, …).
    pub fn new<F, Fut>(answer: F) -> Self
    where
        F: Fn(Stream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            answer: Some(Arc::new(move |s| Box::pin(answer(s)))),
        }
    }

    /// Refuses by closing the connection at once, without an answer.
    pub fn close() -> Self {
        Self { answer: None }
    }
}

/// The cap on connections served at once, as [`serve`] takes it: a number
/// (a cap of its own), or a [`ConnectionCap`] shared by several accept
/// loops, so that a server serving one address on several threads, each
/// with an accept loop of its own, still serves at most that many
/// connections in all.
///
/// It also watches for the end of bursts of connections, for the whole
/// server, and runs the server's [`MemoryRelease`] after each.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
    bursts: Arc<Bursts>,
}

impl ConnectionCap {
    /// A cap of `max` connections (at least 1) for the accept loops given
    /// clones of it, with the default [`MemoryRelease`].
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            bursts: Arc::new(Bursts::new(MemoryRelease::default())),
        }
    }

    /// The same cap, running `release` once a burst of connections has
    /// ended (set it before cloning the cap: clones share the setting).
    #[must_use]
    pub fn release_memory_after_bursts(self, release: MemoryRelease) -> Self {
        Self {
            bursts: Arc::new(Bursts::new(release)),
            ..self
        }
    }

    /// Runs `refresh` on each thread serving connections once a burst of
    /// connections has ended, while the thread settles its heap (see
    /// [`MemoryRelease`]): for a library's per-thread state that the
    /// burst's traffic last wrote high in the thread's heap, such as the
    /// date an HTTP library keeps for its responses, to be written afresh
    /// there (it is then written low, and the block it frees goes back).
    /// The first one set on a cap (or any of its clones) is kept.
    pub fn on_burst_end(&self, refresh: fn()) {
        let _ = self.bursts.on_end.set(refresh);
    }

    /// Connections that may still start now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

impl From<usize> for ConnectionCap {
    fn from(max: usize) -> Self {
        Self::new(max)
    }
}

/// The most connections taken from the listen backlog once the shutdown
/// started (a backlog holds at most `net.core.somaxconn`).
const MAX_BACKLOG_TAKEN: usize = 65_536;

/// Accepts connections on `listener` and runs `conn` for each on its own
/// task, until `shutdown` is triggered; then takes the connections still
/// waiting in the listen backlog (the kernel would reset them when the
/// listener closes), closes the listener, waits for the running
/// connections up to the shutdown's deadline and aborts the rest.
///
/// Each connection watches the shutdown through
/// [`Shutdown::connection_watch`]: one accepted moments before the
/// shutdown started still gets the request its client was sending served.
///
/// At most `max_connections` run at once (a number, or a
/// [`ConnectionCap`] shared with other accept loops). Past that, each new connection is
/// accepted and handed to `refusal`, which answers it with the protocol's
/// "busy" reply and closes it: a client never waits in the kernel's listen
/// backlog for a slot. Accept errors never end the loop: running out of file
/// descriptors (`EMFILE`, `ENFILE`) or memory pauses it for a moment, and
/// per-connection failures (`ECONNABORTED`, …) are skipped.
pub async fn serve<F, Fut>(
    listener: Listener,
    max_connections: impl Into<ConnectionCap>,
    shutdown: Shutdown,
    refusal: Refusal,
    conn: F,
) -> io::Result<()>
where
    F: Fn(Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cap = max_connections.into();
    let permits = cap.permits.clone();
    let refusing = Arc::new(Semaphore::new(Refusal::MAX_AT_ONCE));
    let mut tasks = JoinSet::new();
    let mut stop = shutdown.watch();
    let starter = Starter {
        conn: &conn,
        shutdown: &shutdown,
        bursts: &cap.bursts,
        // A listener bound to one address accepts on that address only:
        // its connections' local address, without asking the kernel for
        // each (a wildcard listener's connections are asked).
        local: listener.tcp_addr().filter(|a| !a.ip().is_unspecified()),
    };
    // When to look whether a burst of connections has ended.
    let mut look: Option<Instant> = None;
    // Changes once a burst has ended: this thread's heap is then settled.
    let mut bursts_ended = cap.bursts.subscribe();
    // The two watches are waited on by one future that lives as long as
    // the loop, polled only when one of them woke it: not made, registered
    // and polled again for every connection accepted and every one that
    // ends. It completes once the shutdown starts.
    let bursts = &cap.bursts;
    let stopping = Gated::new(async {
        let settling = async {
            while bursts_ended.changed().await.is_ok() {
                bursts.settle();
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = stop.stopping() => {}
            () = settling => {}
        }
    });
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // A finished connection's task is freed at once, not at the next
            // accept: after a burst, what the connections held goes back to
            // the allocator whole, instead of a task here and there pinning
            // its pages.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                // Counted once the task is freed, not when its slot is
                // given back: what a release can hand back is then free.
                if let Some(at) = cap.bursts.ended() {
                    look = Some(at);
                }
                continue;
            }
            () = async {
                match look {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                look = cap.bursts.check();
                continue;
            }
            () = &mut stopping => break,
        };
        let (stream, peer_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if is_resource_exhaustion(&e) {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    tracing::debug!(error = %e, "accept failed");
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream, &refusal, &refusing);
            continue;
        };
        starter.start(&mut tasks, stream, peer_addr, permit);
    }
    // Connections the kernel completed but nobody accepted yet are reset
    // when the listener closes (with SO_REUSEPORT, the others in the group
    // do not get them): serve them too.
    for _ in 0..MAX_BACKLOG_TAKEN {
        let Ok(Some((stream, peer_addr))) = listener.accept_waiting() else {
            break;
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => starter.start(&mut tasks, stream, peer_addr, permit),
            Err(_) => refuse(stream, &refusal, &refusing),
        }
    }
    drop(listener);
    let deadline = tokio::time::sleep(shutdown.get_deadline());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(_) => { cap.bursts.ended(); }
                None => break,
            },
            _ = &mut deadline => {
                let left = tasks.len();
                tracing::warn!(left, "shutdown deadline passed; aborting connections");
                tasks.shutdown().await;
                cap.bursts.forget(left);
                break;
            }
        }
    }
    Ok(())
}

/// What the accept loop starts each accepted connection with.
struct Starter<'a, F> {
    conn: &'a F,
    shutdown: &'a Shutdown,
    bursts: &'a Bursts,
    /// The listener's address when it is one address (not a wildcard).
    local: Option<SocketAddr>,
}

impl<F, Fut> Starter<'_, F>
where
    F: Fn(Connection) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    /// Runs the connection function for an accepted connection on its own
    /// task, holding `permit` until it ends, and counts it as started.
    fn start(
        &self,
        tasks: &mut JoinSet<()>,
        stream: Stream,
        peer_addr: Option<SocketAddr>,
        permit: OwnedSemaphorePermit,
    ) {
        let local_addr = self.local.or_else(|| stream.local_addr());
        // Boxed where it is made, so the task machinery never copies it: a
        // server's connection future may hold the state of a whole request
        // (the servers here keep that in a box of its own, made once the
        // connection has sent something; see `Connection::wait_for_input`).
        let fut = Box::pin((self.conn)(Connection {
            stream,
            peer_addr,
            local_addr,
            shutdown: self.shutdown.connection_watch(),
            accepted: Instant::now(),
        }));
        tasks.spawn(async move {
            fut.await;
            drop(permit);
        });
        self.bursts.started();
    }
}

/// Answers a connection over the cap on its own task, bounded in time and
/// in number.
fn refuse(stream: Stream, refusal: &Refusal, refusing: &Arc<Semaphore>) {
    tracing::debug!("connection limit reached; refusing a connection");
    let (Some(answer), Ok(slot)) = (&refusal.answer, refusing.clone().try_acquire_owned()) else {
        return; // dropped: closed at once
    };
    let fut = answer(stream);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Refusal::TIME_LIMIT, fut).await;
        drop(slot);
    });
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105)) // ENFILE, EMFILE, ENOMEM, ENOBUFS
        || e.kind() == io::ErrorKind::OutOfMemory
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair(shutdown: &Shutdown) -> (tokio::net::TcpStream, Connection) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = l.accept().await.unwrap();
        (
            client,
            Connection::new(Stream::Tcp(server), shutdown.watch()),
        )
    }

    /// The local address a connection is given is its socket's own, from
    /// a listener on one address and from a wildcard one alike.
    #[tokio::test]
    async fn connections_get_their_local_address() {
        for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
            let listener = Listener::bind(bind).await.unwrap();
            let port = listener.tcp_addr().unwrap().port();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let shutdown = Shutdown::new();
            let server = tokio::spawn(serve(
                listener,
                4,
                shutdown.clone(),
                Refusal::close(),
                move |c: Connection| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send((c.local_addr, c.stream.local_addr()));
                    }
                },
            ));
            let client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (given, real) = rx.recv().await.unwrap();
            assert_eq!(given, real, "{bind}");
            assert_eq!(given, Some(client.peer_addr().unwrap()), "{bind}");
            shutdown.trigger();
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }

    /// Through the accept loop: connections opened together then closed
    /// make one release, once they have all closed; connections one after
    /// another (steady traffic) make none.
    #[tokio::test]
    async fn the_accept_loop_releases_memory_after_a_burst() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncReadExt;

        let dir = std::env::temp_dir().join(format!("gateway-burst-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = Listener::bind(&format!("unix:{}", path.display()))
            .await
            .unwrap();
        let releases = Arc::new(AtomicUsize::new(0));
        let counted = releases.clone();
        let release = MemoryRelease::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .min_burst(16);
        let cap = ConnectionCap::new(100).release_memory_after_bursts(release);
        let shutdown = Shutdown::new();
        // Each connection ends when its client closes.
        let server = tokio::spawn(serve(
            listener,
            cap.clone(),
            shutdown.clone(),
            Refusal::close(),
            |mut c: Connection| async move {
                let mut buf = [0u8; 16];
                while matches!(c.stream.read(&mut buf).await, Ok(n) if n > 0) {}
            },
        ));
        let connect = || tokio::net::UnixStream::connect(&path);
        // Steady traffic: one connection at a time, 40 times.
        for _ in 0..40 {
            drop(connect().await.unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A burst: 32 at once, then all closed.
        let mut held = Vec::new();
        for _ in 0..32 {
            held.push(connect().await.unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while cap.available() > 100 - 32 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            releases.load(Ordering::SeqCst),
            0,
            "released before the burst"
        );
        drop(held);
        while releases.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            releases.load(Ordering::SeqCst),
            1,
            "one release after the burst"
        );
        // Steady traffic again: no more releases.
        for _ in 0..40 {
            drop(connect().await.unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(MemoryRelease::QUIET * 2).await;
        assert_eq!(
            releases.load(Ordering::SeqCst),
            1,
            "released on steady traffic"
        );
        shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two accept loops sharing a cap (two threads of one server): a
    /// burst on one of them has both settle their thread's heap once,
    /// running the cap's `on_burst_end` each time, and the release runs
    /// once, after both have.
    #[tokio::test]
    async fn every_accept_loop_settles_its_heap_after_a_burst() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncReadExt;

        static REFRESHED: AtomicUsize = AtomicUsize::new(0);

        let dir = std::env::temp_dir().join(format!("gateway-settle-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let paths = [dir.join("a.sock"), dir.join("b.sock")];
        let releases = Arc::new(AtomicUsize::new(0));
        let counted = releases.clone();
        let release = MemoryRelease::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .min_burst(16);
        let cap = ConnectionCap::new(100).release_memory_after_bursts(release);
        cap.on_burst_end(|| {
            REFRESHED.fetch_add(1, Ordering::SeqCst);
        });
        let shutdown = Shutdown::new();
        let mut servers = Vec::new();
        for path in &paths {
            let _ = std::fs::remove_file(path);
            let listener = Listener::bind(&format!("unix:{}", path.display()))
                .await
                .unwrap();
            servers.push(tokio::spawn(serve(
                listener,
                cap.clone(),
                shutdown.clone(),
                Refusal::close(),
                |mut c: Connection| async move {
                    let mut buf = [0u8; 16];
                    while matches!(c.stream.read(&mut buf).await, Ok(n) if n > 0) {}
                },
            )));
        }
        let mut held = Vec::new();
        for _ in 0..32 {
            held.push(tokio::net::UnixStream::connect(&paths[0]).await.unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while cap.available() > 100 - 32 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cap.bursts.settled.load(Ordering::SeqCst), 0);
        drop(held);
        while releases.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(releases.load(Ordering::SeqCst), 1, "one release");
        assert_eq!(
            cap.bursts.settled.load(Ordering::SeqCst),
            2,
            "each accept loop settled its heap once"
        );
        assert_eq!(REFRESHED.load(Ordering::SeqCst), 2, "on_burst_end on each");
        shutdown.trigger();
        for s in servers {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The wait ends when bytes arrive, and not before.
    #[tokio::test]
    async fn the_wait_for_input_ends_with_the_first_bytes() {
        let shutdown = Shutdown::new();
        let (mut client, mut conn) = pair(&shutdown).await;
        let early = tokio::time::timeout(
            Duration::from_millis(100),
            conn.wait_for_input(Duration::from_secs(60)),
        )
        .await;
        assert!(early.is_err(), "the wait ended with nothing sent");
        client.write_all(b"G").await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            conn.wait_for_input(Duration::from_secs(60)),
        )
        .await
        .expect("the bytes ended the wait");
    }

    /// The end of the input ends the wait too (the server then sees it).
    #[tokio::test]
    async fn the_wait_for_input_ends_when_the_peer_closes() {
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        let mut conn = Connection::new(Stream::Unix(server), Shutdown::new().watch());
        drop(client);
        tokio::time::timeout(
            Duration::from_secs(10),
            conn.wait_for_input(Duration::from_secs(60)),
        )
        .await
        .expect("the close ended the wait");
    }

    /// The wait ends at the first-byte deadline counted from the accept,
    /// and what is left of it is then zero.
    #[tokio::test(start_paused = true)]
    async fn the_wait_for_input_ends_at_the_deadline() {
        let (_client, server) = tokio::net::UnixStream::pair().unwrap();
        let mut conn = Connection::new(Stream::Unix(server), Shutdown::new().watch());
        let timeout = Duration::from_secs(30);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(conn.first_bytes_left(timeout), Duration::from_secs(20));
        let start = Instant::now();
        conn.wait_for_input(timeout).await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert_eq!(conn.first_bytes_left(timeout), Duration::ZERO);
    }

    /// A shutdown ends the wait, once the new connection's grace is over.
    #[tokio::test(start_paused = true)]
    async fn the_wait_for_input_ends_with_the_shutdown() {
        let (_client, server) = tokio::net::UnixStream::pair().unwrap();
        let mut shutdown = Shutdown::new();
        shutdown.new_connection_grace(Duration::from_secs(1));
        let mut conn = Connection::new(Stream::Unix(server), shutdown.connection_watch());
        shutdown.trigger();
        let start = Instant::now();
        conn.wait_for_input(Duration::from_secs(30)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}

//! What every server's `run` does around serving: the runtime, the
//! listening socket, readiness, signals.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::task::Poll;

use super::addr::ListenAddr;
use super::listener::{BindOptions, Listener};
use super::release::{RUN_QUEUE, prepare_thread};
use super::shutdown::{Shutdown, signal};
use super::systemd;
use crate::Limits;

/// Half the CPUs this process may run on, at least one: the default
/// threads of a server that a web server on the same machine feeds (the
/// FastCGI and SCGI servers), which leaves the other half to the web
/// server; a thread per CPU would split the web server's connections
/// between threads that each run out of work and sleep more often.
pub fn half_the_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The runtime a server's `run` serves on: `Some(1)`, a current-thread
/// runtime (no hand-over between threads; often the fastest behind a web
/// server); `Some(n)`, `n` worker threads; `None` or `Some(0)`, tokio's
/// default (one per core).
///
/// A current-thread runtime takes at most 128 I/O events from the system
/// at a time, and 32 while it has tasks left to run (tokio's defaults:
/// 1024 both): each event can make a task ready, and the runtime's queue
/// of ready tasks keeps the largest size it ever had.
pub fn runtime(worker_threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(1) => {
            let mut b = tokio::runtime::Builder::new_current_thread();
            b.max_io_events_per_tick(RUN_QUEUE / 4)
                .max_io_events_per_busy_tick(BUSY_IO_EVENTS);
            b
        }
        Some(n) if n > 1 => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// The most I/O events a current-thread runtime takes while it has tasks
/// left to run: fewer than the tasks it runs between two looks (tokio's
/// `event_interval`, 61), so a busy runtime's queue does not grow.
const BUSY_IO_EVENTS: usize = 32;

/// Reads a listen address given as text, as the servers' one-line `serve`
/// functions take it: a bad one is an [`io::ErrorKind::InvalidInput`] error
/// whose message names the accepted forms.
pub fn parse_addr(addr: &str) -> io::Result<ListenAddr> {
    addr.parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Opens `addr` the way a server's `run` does: a socket bound here gets
/// the backlog of [`Limits::listen_backlog`] and, for TCP,
/// `SO_REUSEPORT` when [`Limits::reuse_port`] is on; an error names the
/// address.
pub async fn listen(addr: &ListenAddr, limits: &Limits) -> io::Result<Listener> {
    let mut opts = BindOptions::new();
    opts.backlog(limits.get_listen_backlog())
        .reuse_port(limits.get_reuse_port());
    addr.listen(&opts)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Runs `serving` until it ends, or until SIGTERM or SIGINT (which trigger
/// `shutdown`) or `shutdown` itself, then lets it finish. The signal
/// handlers are in place before `ready` is called, so a service manager
/// told the server is ready can stop it gracefully at once. Once stopping,
/// tells systemd (`STOPPING=1`).
pub async fn until_signal(
    serving: impl Future<Output = io::Result<()>>,
    shutdown: &Shutdown,
    ready: impl FnOnce(),
) -> io::Result<()> {
    let mut signal = pin!(signal());
    // The first poll installs the handlers.
    let mut signalled = poll_fn(|cx| Poll::Ready(signal.as_mut().poll(cx).is_ready())).await;
    ready();
    let mut serving = pin!(serving);
    let mut watch = shutdown.watch();
    if !signalled {
        tokio::select! {
            r = &mut serving => return r,
            () = &mut signal => signalled = true,
            () = watch.stopping() => {}
        }
    }
    if signalled {
        tracing::info!("stopping on a signal: finishing the requests in flight");
        shutdown.trigger();
    }
    systemd::notify_stopping("stopping");
    serving.await
}

/// Opens `addr` (a socket bound here gets the backlog of
/// [`Limits::listen_backlog`]) and serves it with `serve` until a signal or
/// `shutdown`: logs `PROTOCOL server listening on ADDR` at info level and
/// tells systemd `READY=1` with a status line once the signal handlers are
/// in place. `protocol` names the protocol in those lines (`FastCGI`).
pub async fn serve_until_signal<F, Fut>(
    protocol: &str,
    addr: &ListenAddr,
    limits: &Limits,
    shutdown: &Shutdown,
    serve: F,
) -> io::Result<()>
where
    F: FnOnce(Listener) -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    let listener = listen(addr, limits).await?;
    let at = listener.local_addr_string();
    until_signal(serve(listener), shutdown, || {
        tracing::info!("{protocol} server listening on {at}");
        systemd::notify_ready(&format!("serving {protocol} on {at}"));
    })
    .await
}

/// The whole `main` of a server: adopts the sockets systemd passed (first,
/// while no other thread runs: it edits the environment), builds the
/// [`runtime`], and runs [`serve_until_signal`] on it.
pub fn run<F, Fut>(
    protocol: &str,
    addr: &ListenAddr,
    limits: &Limits,
    worker_threads: Option<usize>,
    shutdown: &Shutdown,
    serve: F,
) -> io::Result<()>
where
    F: FnOnce(Listener) -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    systemd::adopt();
    // Boxed: the whole server's future lives on the heap, rather than
    // being copied from frame to frame down the runtime's `block_on` and
    // leaving the stack pages it touched resident.
    runtime(worker_threads)?.block_on(Box::pin(async {
        if worker_threads == Some(1) {
            prepare_thread().await;
        }
        serve_until_signal(protocol, addr, limits, shutdown, serve).await
    }))
}

/// A copy of a listening socket, not yet tied to a runtime: what
/// [`run_per_thread`] hands each thread.
enum ListenerCopy {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl ListenerCopy {
    /// A copy of `listener` (the same socket, one more descriptor).
    fn of(listener: &Listener) -> io::Result<Self> {
        Ok(match listener {
            Listener::Tcp(l) => Self::Tcp(socket2::SockRef::from(l).try_clone()?.into()),
            Listener::Unix(l, _) => Self::Unix(socket2::SockRef::from(l).try_clone()?.into()),
        })
    }

    /// The copy as a listener of the current runtime; dropping it leaves a
    /// Unix socket's path alone.
    fn register(self) -> io::Result<Listener> {
        Ok(match self {
            Self::Tcp(l) => {
                l.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Self::Unix(l) => {
                l.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(l)?, None)
            }
        })
    }
}

/// The whole `main` of a server that serves on `threads` threads (`None`:
/// one per CPU), each with a single-threaded runtime of its own that
/// accepts connections from the one listening socket and serves them to the
/// end: a connection and its requests never change threads, so nothing is
/// handed over between threads or cores (the design of php-fpm and uWSGI,
/// one worker per core, within one process). A request's application runs
/// on the thread of its connection, and so do the tasks it spawns.
///
/// A TCP address bound here gets a socket per thread on its port
/// (`SO_REUSEPORT`, after a first bind has checked that no other process
/// holds the port), among which the kernel spreads connections evenly;
/// the threads share any other listening socket (a Unix socket, one
/// handed over on file descriptor 0 or by systemd), each taking the
/// connections it is first to accept.
///
/// As [`run`] otherwise: it adopts the sockets systemd passed, opens `addr`,
/// and waits for SIGTERM, SIGINT or `shutdown` on the calling
/// thread, which also runs `around` (for example [`with_status`](super::with_status)'s status
/// page) around the serving threads; `serve` is called once per thread,
/// with that thread's copy of the listening socket and the number of
/// threads (for limits that depend on it; a connection cap for the whole
/// server is one [`ConnectionCap`](super::ConnectionCap) shared by every
/// thread's accept loop, as [`ServerOptions::run`](super::ServerOptions::run) does).
///
/// # Errors
///
/// A runtime or thread cannot start, the address cannot be opened, or a
/// thread's serving failed (the others are then stopped).
pub fn run_per_thread<F, Fut, A, AFut>(
    protocol: &str,
    addr: &ListenAddr,
    limits: &Limits,
    threads: Option<usize>,
    shutdown: &Shutdown,
    serve: F,
    around: A,
) -> io::Result<()>
where
    F: Fn(Listener, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
    A: FnOnce(Serving) -> AFut,
    AFut: Future<Output = io::Result<()>>,
{
    systemd::adopt();
    let threads = threads
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    runtime(Some(1))?.block_on(async {
        let mut listener = listen(addr, limits).await?;
        let at = listener.local_addr_string();
        // The path of a Unix socket bound here is removed once every
        // thread is done, not when this copy goes.
        let path = match &mut listener {
            Listener::Unix(_, path) => path.take(),
            Listener::Tcp(_) => None,
        };
        let copies = match listener.tcp_addr() {
            // A TCP address bound here: a socket per thread on the same
            // port (`SO_REUSEPORT`), among which the kernel spreads the
            // connections evenly. The first bind, without it unless the
            // limits ask for it, has checked that no other process holds
            // the port.
            Some(bound)
                if threads > 1 && matches!(addr, ListenAddr::Tcp(_) | ListenAddr::Host { .. }) =>
            {
                drop(listener);
                let mut opts = BindOptions::new();
                opts.backlog(limits.get_listen_backlog()).reuse_port(true);
                (0..threads)
                    .map(|_| {
                        let own = Listener::bind_tcp(bound, &opts).map_err(|e| {
                            io::Error::new(e.kind(), format!("cannot listen on {at}: {e}"))
                        })?;
                        ListenerCopy::of(&own)
                    })
                    .collect::<io::Result<Vec<_>>>()?
            }
            // Otherwise the threads share the one socket.
            _ => {
                let copies = (0..threads)
                    .map(|_| ListenerCopy::of(&listener))
                    .collect::<io::Result<Vec<_>>>()?;
                // This thread accepts nothing: its copy leaves its runtime.
                drop(listener);
                copies
            }
        };
        let serving = spawn_threads(
            protocol,
            copies.into_iter().map(|c| vec![c]).collect(),
            shutdown,
            move |listeners: Vec<Listener>, threads| {
                let serve = serve.clone();
                async move {
                    match listeners.into_iter().next() {
                        Some(listener) => serve(listener, threads).await,
                        None => Ok(()),
                    }
                }
            },
        )?;
        let result = until_signal(around(serving), shutdown, || {
            tracing::info!("{protocol} server listening on {at} ({threads} threads)");
            systemd::notify_ready(&format!("serving {protocol} on {at}"));
        })
        .await;
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
        result
    })
}

/// Serves sockets already open on `threads` threads, each with a
/// single-threaded runtime of its own and its copy of every socket of
/// `listeners` (the threads share each socket, each taking the
/// connections it is first to accept), as [`run_per_thread`] serves one:
/// `serve` is called once per thread, with that thread's copies in the
/// order of `listeners` and the number of threads. For a program that
/// serves several sockets at once (those systemd passed, say) and runs
/// signals, readiness and the status page itself: call it inside a
/// runtime, which keeps none of the sockets, and run the returned future
/// there (with [`until_signal`]); it ends when every thread has. A thread
/// whose serving fails triggers `shutdown`, so that the others stop too.
///
/// # Errors
///
/// A socket cannot be copied or a thread cannot start.
pub fn spawn_per_thread<F, Fut>(
    name: &str,
    listeners: Vec<Listener>,
    threads: usize,
    shutdown: &Shutdown,
    serve: F,
) -> io::Result<Serving>
where
    F: Fn(Vec<Listener>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    let mut listeners = listeners;
    // The paths of Unix sockets bound here are removed once every thread
    // is done, not when these copies go.
    let paths: Vec<_> = listeners
        .iter_mut()
        .filter_map(|l| match l {
            Listener::Unix(_, path) => path.take(),
            Listener::Tcp(_) => None,
        })
        .collect();
    let remove_paths = |paths: &[std::path::PathBuf]| {
        for path in paths {
            let _ = std::fs::remove_file(path);
        }
    };
    let started = (0..threads.max(1))
        .map(|_| listeners.iter().map(ListenerCopy::of).collect())
        .collect::<io::Result<Vec<Vec<_>>>>()
        .and_then(|copies| {
            // This runtime accepts nothing: its copies leave it.
            drop(listeners);
            spawn_threads(name, copies, shutdown, serve)
        });
    // Nothing serves the paths if the threads did not start.
    let serving = started.inspect_err(|_| remove_paths(&paths))?;
    Ok(Box::pin(async move {
        let result = serving.await;
        remove_paths(&paths);
        result
    }))
}

/// The serving of several threads, which a runtime awaits.
type Serving = std::pin::Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// Starts a thread for each set of socket copies in `per_thread`, each
/// with a single-threaded runtime that serves them with `serve`; the
/// returned future waits for every thread. One that fails triggers
/// `shutdown`.
fn spawn_threads<F, Fut>(
    name: &str,
    per_thread: Vec<Vec<ListenerCopy>>,
    shutdown: &Shutdown,
    serve: F,
) -> io::Result<Serving>
where
    F: Fn(Vec<Listener>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    let threads = per_thread.len();
    let mut done = Vec::with_capacity(threads);
    for (i, copies) in per_thread.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let serve = serve.clone();
        let stop = shutdown.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{i}", name.to_ascii_lowercase()))
            .spawn(move || {
                let result = runtime(Some(1)).and_then(|rt| {
                    // Boxed, as in `run`.
                    rt.block_on(Box::pin(async {
                        prepare_thread().await;
                        let listeners = copies
                            .into_iter()
                            .map(ListenerCopy::register)
                            .collect::<io::Result<Vec<_>>>()?;
                        serve(listeners, threads).await
                    }))
                });
                if result.is_err() {
                    // One thread failed: the others stop too.
                    stop.trigger();
                }
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            shutdown.trigger();
            return Err(e);
        }
        done.push(rx);
    }
    Ok(Box::pin(async move {
        let mut result = Ok(());
        for rx in done {
            let r = rx
                .await
                .unwrap_or_else(|_| Err(io::Error::other("a serving thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }))
}

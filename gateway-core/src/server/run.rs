//! What every server's `run` does around serving: the runtime, the
//! listening socket, readiness, signals.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::task::Poll;

use super::addr::ListenAddr;
use super::listener::{BindOptions, Listener};
use super::shutdown::{Shutdown, signal};
use super::systemd;
use crate::Limits;

/// The runtime a server's `run` serves on: `Some(1)`, a current-thread
/// runtime (no hand-over between threads; often the fastest behind a web
/// server); `Some(n)`, `n` worker threads; `None` or `Some(0)`, tokio's
/// default (one per core).
pub fn runtime(worker_threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) if n > 1 => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

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
    runtime(worker_threads)?.block_on(serve_until_signal(protocol, addr, limits, shutdown, serve))
}

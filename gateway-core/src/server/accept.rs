//! The accept loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::listener::{Listener, Stream};
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
}

/// Accepts connections on `listener` and runs `conn` for each on its own
/// task, until `shutdown` is triggered; then waits for the running
/// connections up to the shutdown's deadline and aborts the rest.
///
/// At most `max_connections` run at once: past that, the loop stops
/// accepting (the kernel's backlog holds new connections) until one ends.
/// Accept errors never end the loop: running out of file descriptors
/// (`EMFILE`, `ENFILE`) or memory pauses it for a moment, and per-connection
/// failures (`ECONNABORTED`, …) are skipped.
pub async fn serve<F, Fut>(
    listener: Listener,
    max_connections: usize,
    shutdown: Shutdown,
    conn: F,
) -> io::Result<()>
where
    F: Fn(Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut tasks = JoinSet::new();
    let mut stop = shutdown.watch();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.stopping() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.stopping() => break,
        };
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
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
        let local_addr = stream.local_addr();
        let fut = conn(Connection {
            stream,
            peer_addr,
            local_addr,
            shutdown: shutdown.watch(),
        });
        tasks.spawn(async move {
            fut.await;
            drop(permit);
        });
    }
    drop(listener);
    let deadline = tokio::time::sleep(shutdown.get_deadline());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                tracing::warn!(left = tasks.len(), "shutdown deadline passed; aborting connections");
                tasks.shutdown().await;
                break;
            }
        }
    }
    Ok(())
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105)) // ENFILE, EMFILE, ENOMEM, ENOBUFS
        || e.kind() == io::ErrorKind::OutOfMemory
}

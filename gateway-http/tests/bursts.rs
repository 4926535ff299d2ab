//! `serve`, the server on the caller's runtime, runs the release set with
//! `release_memory_after_bursts` once a burst of connections has ended, as
//! `run` does.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway_core::server::MemoryRelease;
use gateway_http::Server;

use tokio::net::TcpStream;

#[tokio::test]
async fn serve_runs_the_release_after_a_burst() {
    let released = Arc::new(AtomicUsize::new(0));
    let counted = released.clone();
    let mut server = Server::new();
    server.release_memory_after_bursts(
        MemoryRelease::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .min_burst(16),
    );
    let srv = support::start_server(server, tower::service_fn(support::app)).await;
    let mut held = Vec::new();
    for _ in 0..24 {
        held.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    // Let the accept loop take them all before they close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(released.load(Ordering::SeqCst), 0, "released mid-burst");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    while released.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        released.load(Ordering::SeqCst),
        1,
        "one release after the burst"
    );
    srv.shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(10), srv.task).await;
}

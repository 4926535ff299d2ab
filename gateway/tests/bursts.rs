//! Each socket server's `serve` (the server on the caller's runtime) runs
//! the release set with `release_memory_after_bursts` once a burst of
//! connections has ended, as its `run` does.

#![cfg(all(feature = "fastcgi", feature = "scgi", feature = "http"))]

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway_core::Body;
use gateway_core::server::{Listener, MemoryRelease, Shutdown};
use http::{Request, Response};
use tokio::net::TcpStream;

/// A release that counts its runs, counting bursts from 16 connections.
fn counted() -> (MemoryRelease, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let release = MemoryRelease::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .min_burst(16);
    (release, runs)
}

fn app() -> impl gateway_core::Application<Body> {
    tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("hello")))
    })
}

/// Serves with `serve` on a loopback port, opens 24 connections at once,
/// closes them, and checks the release ran once afterwards, not before.
async fn a_burst_runs_the_release<F, Fut>(runs: Arc<AtomicUsize>, shutdown: Shutdown, serve: F)
where
    F: FnOnce(Listener) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let task = tokio::spawn(serve(listener));
    let mut held = Vec::new();
    for _ in 0..24 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the accept loop take them all before they close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "released mid-burst");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    while runs.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one release after the burst"
    );
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// A test of `$server`'s `serve`, named `$name`.
macro_rules! serve_runs_the_release {
    ($name:ident, $server:path) => {
        #[tokio::test]
        async fn $name() {
            let (release, runs) = counted();
            let mut server = <$server>::new();
            server.release_memory_after_bursts(release);
            let shutdown = server.shutdown_handle();
            a_burst_runs_the_release(runs, shutdown, move |l| async move {
                server.serve(l, app()).await
            })
            .await;
        }
    };
}

serve_runs_the_release!(
    fastcgi_serve_runs_the_release_after_a_burst,
    gateway_fastcgi::Server
);
serve_runs_the_release!(
    scgi_serve_runs_the_release_after_a_burst,
    gateway_scgi::Server
);
serve_runs_the_release!(
    http_serve_runs_the_release_after_a_burst,
    gateway_http::Server
);

//! The server's metrics over loopback TCP: requests, bytes and failures (a
//! response aborted after its head, a malformed header, a header timeout,
//! a connection refused past the cap) move the counters.

mod support;

use std::time::Duration;

use gateway_core::metrics::Snapshot;
use gateway_core::{Failure, Limits, Metrics};
use gateway_scgi::Server;
use support::{TestServer, exchange, get, request, split};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn eventually(metrics: &Metrics, what: &str, f: impl Fn(&Snapshot) -> bool) {
    for _ in 0..200 {
        if f(&metrics.snapshot()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: {:?}", metrics.snapshot());
}

#[tokio::test]
async fn requests_and_failures_move_the_counters() {
    let metrics = Metrics::new();
    let mut limits = Limits::default();
    limits
        .head_read_timeout(Duration::from_millis(200))
        .max_connections(1);
    let mut server = Server::new();
    server.limits(limits).metrics(&metrics);
    let server = TestServer::start_with(server).await;

    let out = exchange(server.addr, request(&[("REQUEST_URI", b"/echo")], b"hello"))
        .await
        .unwrap();
    assert_eq!(split(&out).1, b"hello");
    // One connection at a time: the next waits for this one's slot.
    eventually(&metrics, "closed", |s| s.connections_open == 0).await;
    // Aborted after its head: the server resets the connection.
    let _ = exchange(server.addr, get("/fail-after")).await;
    eventually(&metrics, "two requests", |s| {
        s.requests == 2 && s.connections_open == 0
    })
    .await;
    let s = metrics.snapshot();
    assert_eq!(s.connections_accepted, 2, "{s:?}");
    assert_eq!(s.requests_by_class[1], 2, "{s:?}");
    assert_eq!(s.bytes_in, 5, "{s:?}");
    assert_eq!(s.bytes_out, 5 + "partial".len() as u64, "{s:?}");
    assert_eq!(s.failure(Failure::Aborted), 1, "{s:?}");

    // A malformed netstring: 400 and a protocol error.
    let out = exchange(server.addr, b"x:,".to_vec()).await.unwrap();
    assert!(split(&out).0.starts_with("Status: 400"));
    eventually(&metrics, "protocol error", |s| {
        s.failure(Failure::Protocol) == 1 && s.connections_open == 0
    })
    .await;

    // Half a header, then silence: the head timeout. While it is held, a
    // second connection is past the cap: refused with 503.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"70:CONTENT").await.unwrap();
    eventually(&metrics, "held", |s| s.connections_open == 1).await;
    let out = exchange(server.addr, get("/x")).await.unwrap();
    assert!(split(&out).0.starts_with("Status: 503"));
    eventually(&metrics, "refused and timed out", |s| {
        s.failure(Failure::Refused) == 1 && s.failure(Failure::Timeout) == 1
    })
    .await;
    let json = metrics.snapshot().to_json();
    assert!(json.contains("\"refused\":1"), "{json}");
    drop(slow);
    server.shutdown.trigger();
    server.task.await.unwrap().unwrap();
}

//! The server's metrics over loopback TCP: requests, bytes and failures (an
//! application error, a malformed request, a head timeout, a connection
//! refused past the cap) move the counters; the status listener serves
//! them.

mod support;

use std::time::Duration;

use gateway_core::metrics::Snapshot;
use gateway_core::server::{Listener, serve_status};
use gateway_core::{Failure, Limits, Metrics};
use support::*;
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
        .head_read_timeout(Duration::from_millis(300))
        .max_connections(1);
    let server = start_app(
        handler(limits),
        |s| {
            s.metrics(&metrics);
        },
        tower::service_fn(app),
    )
    .await;

    let out = text(
        &exchange(
            server.addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await,
    );
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("hello"),
        "{out}"
    );
    eventually(&metrics, "closed", |s| s.connections_open == 0).await;
    let out = text(&exchange(server.addr, b"GET /error-before HTTP/1.0\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.0 500 "), "{out}");
    eventually(&metrics, "closed", |s| s.connections_open == 0).await;
    let s = metrics.snapshot();
    assert_eq!(s.connections_accepted, 2, "{s:?}");
    assert_eq!(s.requests, 2, "{s:?}");
    assert_eq!(s.requests_by_class[1], 1, "{s:?}");
    assert_eq!(s.requests_by_class[4], 1, "{s:?}");
    assert_eq!(s.bytes_in, 5, "{s:?}");
    assert_eq!(
        s.bytes_out,
        5 + gateway_core::DEFAULT_ERROR_BODY.len() as u64,
        "{s:?}"
    );
    assert_eq!(s.failure(Failure::App), 1, "{s:?}");

    // A request hyper cannot parse: a protocol error.
    let out = text(&exchange(server.addr, b"GET / HTTP/1.1\r\nbad header\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    eventually(&metrics, "protocol error", |s| {
        s.failure(Failure::Protocol) == 1 && s.connections_open == 0
    })
    .await;

    // Half a head, then silence: the head timeout. While it is held, a
    // second connection is past the cap: refused with 503.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
    eventually(&metrics, "held", |s| s.connections_open == 1).await;
    let out = text(&exchange(server.addr, b"GET / HTTP/1.0\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    eventually(&metrics, "refused and timed out", |s| {
        s.failure(Failure::Refused) == 1 && s.failure(Failure::Timeout) == 1
    })
    .await;
    drop(slow);

    // The status listener answers with the same figures.
    let status = Listener::bind("127.0.0.1:0").await.unwrap();
    let status_addr = status.tcp_addr().unwrap();
    let stop = gateway_core::server::Shutdown::new();
    let task = tokio::spawn(serve_status(status, metrics.clone(), stop.clone()));
    let out = text(&exchange(status_addr, b"GET /metrics HTTP/1.0\r\n\r\n").await);
    assert!(
        out.contains("gateway_failures_total{kind=\"timeout\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("gateway_request_body_bytes_total 5\n"),
        "{out}"
    );
    assert!(out.ends_with("# EOF\n"), "{out}");
    stop.trigger();
    task.await.unwrap().unwrap();
    server.shutdown.trigger();
    server.task.await.unwrap().unwrap();
}

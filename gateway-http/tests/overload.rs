//! Past `max_connections`: a new connection is answered at once with a
//! busy reply (HTTP/1: 503 with Retry-After; HTTP/2: GOAWAY) and closed.

mod support;

use std::time::{Duration, Instant};

use gateway_core::Limits;
use support::{h2_preface, read_h2_frame, read_to_close, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server with room for one connection, and a connection that holds it
/// (kept alive after one answered request).
async fn full_server() -> (support::Running, TcpStream) {
    let mut limits = Limits::default();
    limits.max_connections(1);
    let srv = support::start_with(support::handler(limits)).await;
    let mut held = TcpStream::connect(srv.addr).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !text(&got).ends_with("Hello, world!") {
        let n = held.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
    }
    (srv, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_past_the_cap_gets_503_at_once() {
    let (srv, held) = full_server().await;
    let started = Instant::now();
    let out = text(&support::exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await);
    let took = started.elapsed();
    assert!(
        out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{out}"
    );
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    for line in [
        "\r\nRetry-After: 1",
        "\r\nConnection: close",
        "\r\nContent-Type: text/plain",
    ] {
        assert!(head.contains(line), "missing {line:?}: {out}");
    }
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{out}"
    );
    assert!(!body.is_empty());
    assert!(took < Duration::from_millis(500), "took {took:?}");
    // A HEAD request gets the head alone.
    let out = text(&support::exchange(srv.addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "{out}");
    // The held connection is served still; once it closes there is room.
    drop(held);
    let started = Instant::now();
    loop {
        let out = text(&support::exchange(srv.addr, b"GET / HTTP/1.0\r\n\r\n").await);
        if out.starts_with("HTTP/1.0 200 OK") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{out}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_with_the_refused_request_does_not_destroy_the_answer() {
    let (srv, _held) = full_server().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'x', 200_000));
    // Write the body while reading the answer, as a client would.
    let (mut rd, mut wr) = s.split();
    let (_, out) = tokio::join!(async { wr.write_all(&req).await }, async {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out)).await;
        out
    });
    let out = text(&out);
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_past_the_cap_gets_goaway() {
    let (srv, _held) = full_server().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&h2_preface()).await.unwrap();
    let started = Instant::now();
    let (kind, _, stream, payload) = read_h2_frame(&mut s).await.expect("a SETTINGS frame");
    assert_eq!((kind, stream, payload.len()), (0x4, 0, 0));
    let (kind, _, stream, payload) = read_h2_frame(&mut s).await.expect("a GOAWAY frame");
    assert_eq!((kind, stream), (0x7, 0));
    // Last stream 0: nothing was processed, every request may be retried;
    // error REFUSED_STREAM (0x7).
    assert_eq!(&payload[..8], &[0, 0, 0, 0, 0, 0, 0, 7]);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(read_to_close(&mut s).await.is_empty());
}

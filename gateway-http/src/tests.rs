//! Parked HTTP/1 connections, seen from a client over loopback TCP and
//! from the server's count of parked connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::server::{Listener, Shutdown};
use gateway_core::{Limits, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Body, Server};

/// Answers with the request's path.
async fn echo_path(req: http::Request<Body>) -> Result<http::Response<String>, Infallible> {
    Ok(http::Response::new(req.uri().path().to_owned()))
}

type Conns =
    crate::Connections<tower::util::ServiceFn<fn(http::Request<Body>) -> EchoFuture>, String>;
type EchoFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response<String>, Infallible>> + Send>,
>;

fn echo(req: http::Request<Body>) -> EchoFuture {
    Box::pin(echo_path(req))
}

struct Running {
    addr: SocketAddr,
    conns: Conns,
    shutdown: Shutdown,
    metrics: Metrics,
}

async fn start(limits: Limits) -> Running {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = Shutdown::new();
    let metrics = Metrics::new();
    let mut server = Server::new();
    server
        .limits(limits)
        .shutdown(shutdown.clone())
        .metrics(&metrics);
    let conns: Conns = server.connections(tower::service_fn(echo as fn(_) -> _));
    let serving = conns.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    Running {
        addr,
        conns,
        shutdown,
        metrics,
    }
}

/// Reads one response with a Content-Length body; its head and body. Bytes
/// past it (the next pipelined response) are kept in `got` for the next
/// call.
async fn response(s: &mut TcpStream, got: &mut Vec<u8>) -> (String, String) {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a Content-Length")
                .trim()
                .parse()
                .unwrap();
            if got.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
                got.drain(..end + 4 + len);
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Waits (at most 10 s) until the server has parked `n` connections in all.
async fn parked(conns: &Conns, n: u64) {
    for _ in 0..1000 {
        if conns.parked() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} connections parked, not {n}", conns.parked());
}

/// Reads until the server closes (at most 5 s); what came.
async fn to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not close within 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_serves_its_next_requests_as_one_connection() {
    let srv = start(Limits::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut got = Vec::new();
    for (i, path) in ["/one", "/two", "/three"].into_iter().enumerate() {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = response(&mut s, &mut got).await;
        assert!(head.starts_with("http/1.1 200 ok"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        assert_eq!(body, path);
        // Between requests the connection is parked, and stays open.
        parked(&srv.conns, i as u64 + 1).await;
        let snap = srv.metrics.snapshot();
        assert_eq!(snap.connections_open, 1, "{snap:?}");
    }
    let snap = srv.metrics.snapshot();
    assert_eq!(snap.connections_accepted, 1, "{snap:?}");
    assert_eq!(snap.requests, 3, "{snap:?}");
    drop(s);
    srv.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_of_the_next_request_read_before_the_park_are_served() {
    let srv = start(Limits::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut got = Vec::new();
    // The first request and the start of the second in one write: hyper
    // reads both; the start of the second is still in its buffer when the
    // connection is parked.
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /sec")
        .await
        .unwrap();
    let (_, body) = response(&mut s, &mut got).await;
    assert_eq!(body, "/first");
    parked(&srv.conns, 1).await;
    s.write_all(b"ond HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut s, &mut got).await;
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert_eq!(body, "/second");
    // Pipelined requests arriving at a parked connection are all served.
    parked(&srv.conns, 2).await;
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut s, &mut got).await.1, "/a");
    assert_eq!(response(&mut s, &mut got).await.1, "/b");
    assert_eq!(srv.metrics.snapshot().connections_accepted, 1);
    srv.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_after_the_idle_timeout() {
    let mut limits = Limits::default();
    limits.idle_timeout(Duration::from_secs(1));
    let srv = start(limits).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut got = Vec::new();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    response(&mut s, &mut got).await;
    parked(&srv.conns, 1).await;
    assert!(to_close(&mut s).await.is_empty());
    for _ in 0..500 {
        if srv.metrics.snapshot().connections_open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let snap = srv.metrics.snapshot();
    assert_eq!(snap.connections_open, 0, "{snap:?}");
    // An idle close is no failure.
    assert_eq!(snap.failure(gateway_core::Failure::Timeout), 0, "{snap:?}");
    srv.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_at_once_when_the_server_stops() {
    // The idle timeout is far: only the shutdown can close it in time.
    let srv = start(Limits::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut got = Vec::new();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    response(&mut s, &mut got).await;
    parked(&srv.conns, 1).await;
    srv.shutdown.trigger();
    assert!(to_close(&mut s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_budget_holds_across_parks() {
    let mut limits = Limits::default();
    limits.max_requests_per_connection(Some(2));
    let srv = start(limits).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut got = Vec::new();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut s, &mut got).await;
    assert!(!head.contains("connection: close"), "{head}");
    parked(&srv.conns, 1).await;
    s.write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut s, &mut got).await;
    assert_eq!(body, "/2");
    assert!(head.contains("connection: close"), "{head}");
    assert!(to_close(&mut s).await.is_empty());
    srv.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_begun_before_the_park_keeps_its_deadline() {
    let mut limits = Limits::default();
    limits.head_read_timeout(Duration::from_secs(3));
    let srv = start(limits).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut got = Vec::new();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\n")
        .await
        .unwrap();
    response(&mut s, &mut got).await;
    let answered = std::time::Instant::now();
    parked(&srv.conns, 1).await;
    // One more byte, 2 s after the head began, brings the connection back;
    // the head is still not complete when its deadline passes, 3 s after it
    // began. Were the deadline counted afresh from the new byte, the close
    // would come 3 s after it (5 s in all).
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(answered.elapsed())).await;
    s.write_all(b"H").await.unwrap();
    assert!(to_close(&mut s).await.is_empty());
    let took = answered.elapsed();
    assert!(took < Duration::from_millis(4200), "{took:?}");
    let snap = srv.metrics.snapshot();
    assert_eq!(snap.failure(gateway_core::Failure::Timeout), 1, "{snap:?}");
    srv.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_not_parked() {
    let srv = start(Limits::default()).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://x/h2").body(()).unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("a response")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    // Several looks' worth of quiet after a request: an HTTP/1 connection
    // would have been parked by now.
    tokio::time::sleep(crate::conn::PARK_AFTER * 5).await;
    assert_eq!(srv.conns.parked(), 0);
    assert_eq!(srv.metrics.snapshot().connections_open, 1);
    srv.shutdown.trigger();
}

/// A large body in one buffer arrives whole and in order, on a keep-alive
/// connection, whether hyper copies it into its write buffer (in 16 KiB
/// frames) or writes it with vectored writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_arrives_whole_with_either_write_strategy() {
    const LEN: usize = 300 * 1024 + 11;
    let body: String = (0..LEN).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    for vectored in [false, true] {
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.tcp_addr().unwrap();
        let shutdown = Shutdown::new();
        let mut server = Server::new();
        server.shutdown(shutdown.clone()).vectored_writes(vectored);
        let sent = body.clone();
        let conns = server.connections(tower::service_fn(move |_req: http::Request<Body>| {
            let sent = sent.clone();
            async move { Ok::<_, Infallible>(http::Response::new(sent)) }
        }));
        tokio::spawn(async move { conns.serve(listener).await });
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let (head, received) = response(&mut s, &mut got).await;
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert_eq!(received.len(), LEN, "vectored_writes({vectored})");
            assert!(
                received == body,
                "vectored_writes({vectored}): the body differs"
            );
        }
        shutdown.trigger();
    }
}

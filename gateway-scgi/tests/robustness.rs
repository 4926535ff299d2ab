//! Bad input, slow peers, shutdown and Unix sockets.

mod support;

use std::time::{Duration, Instant};

use gateway_core::Limits;
use gateway_core::server::Listener;
use gateway_scgi::Server;
use support::{BIG, TestServer, exchange, get, request, split};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BAD_REQUEST: &[u8] =
    b"Status: 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nBad Request\n";

#[tokio::test]
async fn b4_malformed_headers_get_400_and_the_server_keeps_serving() {
    let server = TestServer::start(Limits::default()).await;
    let cases: [&[u8]; 9] = [
        b"x:CONTENT_LENGTH\x000\x00,",        // non-digit length
        b"017:CONTENT_LENGTH\x000\x00,",      // leading zero
        b"17;CONTENT_LENGTH\x000\x00,",       // no ':'
        b"17:CONTENT_LENGTH\x000\x00;",       // no ','
        b"19:CONTENT_LENGTH\x000\x00AB,",     // block not NUL-terminated
        b"20:CONTENT_LENGTH\x000\x00AB\x00,", // odd string count
        b"11:SCGI\x001\x00A\x00B\x00,",       // first header not CONTENT_LENGTH
        b"18:CONTENT_LENGTH\x00-1\x00,",      // bad CONTENT_LENGTH
        b"99999999999999999999999:",          // over the cap
    ];
    for case in cases {
        let out = exchange(server.addr, case.to_vec()).await.unwrap();
        assert_eq!(
            out,
            BAD_REQUEST,
            "input {:?} got {:?}",
            String::from_utf8_lossy(case),
            String::from_utf8_lossy(&out)
        );
    }
    let out = exchange(server.addr, get("/ignore")).await.unwrap();
    assert!(out.ends_with(b"ignored"));
}

#[tokio::test]
async fn header_over_max_head_len_is_rejected() {
    let mut limits = Limits::default();
    limits.max_head_len(64);
    let server = TestServer::start(limits).await;
    let long = "x".repeat(100);
    let req = support::request(&[("REQUEST_URI", long.as_bytes())], b"");
    let out = exchange(server.addr, req).await.unwrap();
    assert_eq!(out, BAD_REQUEST);
}

#[tokio::test]
async fn truncated_header_just_closes() {
    let server = TestServer::start(Limits::default()).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"70:CONTENT_LENGTH\x0027").await.unwrap();
    wr.shutdown().await.unwrap();
    let mut out = Vec::new();
    rd.read_to_end(&mut out).await.unwrap();
    assert!(out.is_empty(), "{out:?}");
}

#[tokio::test]
async fn slowloris_header_is_cut_off_by_the_head_read_timeout() {
    let mut limits = Limits::default();
    limits.head_read_timeout(Duration::from_millis(300));
    let server = TestServer::start(limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(b"70:CONTENT_LENGTH\x00").await.unwrap();
    // One byte at a time: each arrives well within any per-read timeout,
    // but the whole header never does.
    let mut closed = false;
    for b in b"27\x00SCGI\x001\x00REQUEST_METHOD\x00POST" {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if stream.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut one = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut one)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Other connections are unaffected.
    let out = exchange(server.addr, get("/ignore")).await.unwrap();
    assert!(out.ends_with(b"ignored"));
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let server = TestServer::start(Limits::default()).await;
    let addr = server.addr;
    let in_flight = tokio::spawn(exchange(addr, get("/sleep")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // An idle connection (nothing sent yet) is closed at once.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.shutdown.trigger();
    let out = in_flight.await.unwrap().unwrap();
    assert!(
        out.ends_with(b"slept"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "idle connection: {read:?}");
    let served = tokio::time::timeout(Duration::from_secs(5), server.task).await;
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn unix_socket_serves_requests() {
    let dir = std::env::temp_dir().join(format!("gateway-scgi-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    let listener = Listener::bind(&format!("unix:{}", path.display()))
        .await
        .unwrap();
    let server = Server::new();
    let shutdown = server.shutdown_handle();
    let task = tokio::spawn(async move {
        server
            .serve(listener, tower::service_fn(support::app))
            .await
    });
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    stream.write_all(&get("/info")).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("Status: 200 OK\r\n"), "{text}");
    assert!(text.ends_with("peer=None local=None"), "{text}");
    shutdown.trigger();
    task.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Past the connection cap, a new connection is answered 503 with
/// `Retry-After` at once instead of waiting in the listen backlog.
#[tokio::test]
async fn over_the_connection_cap_the_answer_is_503_at_once() {
    let mut limits = Limits::default();
    limits.max_connections(1);
    let server = TestServer::start(limits).await;
    // The one slot: a connection that sends nothing.
    let _held = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let out = exchange(server.addr, get("/hello")).await.unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("Status: 503"), "{head}");
    assert!(head.contains("Retry-After: 1"), "{head}");
    assert_eq!(body, b"Service Unavailable\n");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A body that stops arriving is the client's fault: an app that propagates
/// its body error gets a 408 for the client, and the error stream records no
/// application error.
#[tokio::test]
async fn body_read_timeout_is_a_408_and_no_application_error() {
    use gateway_core::{Body, BoxError, ErrorStream};
    use http_body_util::BodyExt;
    let mut limits = Limits::default();
    limits.body_read_timeout(Duration::from_millis(200));
    let (errors, captured) = ErrorStream::capture();
    let mut server = Server::new();
    server.limits(limits).error_stream(errors);
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let app = tower::service_fn(|req: http::Request<Body>| async move {
        let body = req.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>(http::Response::new(Body::from(body)))
    });
    tokio::spawn(async move { server.serve(listener, app).await });
    let mut req = request(&[("REQUEST_URI", b"/echo")], b"0123456789");
    req.truncate(req.len() - 4);
    let out = exchange(addr, req).await.unwrap();
    let (head, _) = split(&out);
    assert!(head.starts_with("Status: 408"), "{head}");
    assert!(captured.text().is_empty(), "{}", captured.text());
}

#[tokio::test]
async fn response_to_a_web_server_that_stops_reading_times_out() {
    let mut limits = Limits::default();
    limits.write_timeout(Duration::from_millis(200));
    let server = TestServer::start(limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&get("/big")).await.unwrap();
    // Nothing is read until the server had time to give up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut got = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the server kept the connection open");
    assert!(got > 0, "nothing of the response arrived");
    assert!(got < BIG, "the whole response arrived ({got} bytes)");
}

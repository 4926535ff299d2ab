//! WebSocket over HTTP/1.1 `Upgrade`: an axum `WebSocketUpgrade` route runs
//! unchanged, with a real client (tokio-tungstenite): the handshake, echo,
//! the close handshake, a 1 MiB message, 100 sockets at once; an upgraded
//! connection holds its slot under the connection cap, and is closed once
//! the server stops and the grace period is over.

mod support;

use std::time::{Duration, Instant};

use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt, StreamExt};
use gateway_core::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Echoes text and binary messages; the WebSocket library answers pings
/// and the close handshake itself (the loop goes on reading until it has).
async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, AxMessage::Text(_) | AxMessage::Binary(_))
            && socket.send(msg).await.is_err()
        {
            break;
        }
    }
}

fn router() -> axum::Router {
    axum::Router::new()
        .route(
            "/ws",
            axum::routing::get(|ws: WebSocketUpgrade| async move {
                ws.max_message_size(8 << 20).on_upgrade(echo)
            }),
        )
        .route("/hello", axum::routing::get(|| async { "hello" }))
}

async fn start(limits: Limits) -> support::Running {
    support::start_app(support::handler(limits), |_| {}, router()).await
}

fn url(srv: &support::Running) -> String {
    format!("ws://{}/ws", srv.addr)
}

const TIMEOUT: Duration = Duration::from_secs(10);

async fn next_message<S>(ws: &mut S) -> Option<Message>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("an answer in time")
        .map(|r| r.expect("a message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_keeps_the_upgrade_headers() {
    let srv = start(Limits::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !support::text(&got).contains("\r\n\r\n") {
        let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", support::text(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let head = support::text(&got).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    // RFC 6455's example key and answer.
    assert!(
        head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(!head.contains("x-accel-buffering"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    // An unmasked frame from a client is a protocol error for the server;
    // a masked text frame "hi" is echoed (unmasked).
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x82];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    s.write_all(&frame).await.unwrap();
    let mut answer = [0u8; 4];
    tokio::time::timeout(TIMEOUT, s.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"\x81\x02hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_close_handshake() {
    let srv = start(Limits::default()).await;
    let (mut ws, res) = tokio_tungstenite::connect_async(url(&srv)).await.unwrap();
    assert_eq!(res.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("hello")));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::binary(vec![0u8, 1, 2, 255]))
    );
    // A ping is answered by the server's WebSocket library.
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::Pong(b"p".to_vec().into()))
    );
    // The close handshake: our Close is answered with a Close, then the
    // stream ends.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    match next_message(&mut ws).await {
        Some(Message::Close(_)) => {}
        other => panic!("expected the server's Close, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .is_none()
    );
    // The same server still answers plain requests.
    let out = support::text(&support::exchange(srv.addr, b"GET /hello HTTP/1.0\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_message() {
    let srv = start(Limits::default()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url(&srv)).await.unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Binary(b)) => assert!(b[..] == big[..], "the echo differs"),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sockets_at_once() {
    let srv = start(Limits::default()).await;
    let url = url(&srv);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let url = url.clone();
        tasks.spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            for j in 0..3 {
                let text = format!("socket {i} message {j}");
                ws.send(Message::text(text.clone())).await.unwrap();
                assert_eq!(next_message(&mut ws).await, Some(Message::text(text)));
            }
            ws
        });
    }
    // All 100 are open at once here.
    let mut open = Vec::new();
    while let Some(ws) = tasks.join_next().await {
        open.push(ws.unwrap());
    }
    assert_eq!(open.len(), 100);
    for mut ws in open {
        ws.send(Message::text("last")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Some(Message::text("last")));
        ws.close(None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_holds_its_slot() {
    let mut limits = Limits::default();
    limits.max_connections(1);
    let srv = start(limits).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url(&srv)).await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("x")));
    // The WebSocket is the one connection the server has room for.
    let out = support::text(&support::exchange(srv.addr, b"GET /hello HTTP/1.0\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    // Once it closes, the slot is free again.
    ws.close(None).await.unwrap();
    while next_message(&mut ws).await.is_some() {}
    let started = Instant::now();
    loop {
        let out = support::text(&support::exchange(srv.addr, b"GET /hello HTTP/1.0\r\n\r\n").await);
        if out.starts_with("HTTP/1.0 200 OK") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{out}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stopping_closes_it_after_the_grace_period() {
    // The test server's grace period is 2 s.
    let srv = start(Limits::default()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url(&srv)).await.unwrap();
    let started = Instant::now();
    srv.shutdown.trigger();
    // Still served within the grace period.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text("still here"))
    );
    // Then closed.
    let end = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("closed in time");
    let took = started.elapsed();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // And the server has finished.
    tokio::time::timeout(TIMEOUT, srv.task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_get_is_not_a_websocket_handshake() {
    // Over HTTP/2 a WebSocket opens with an extended CONNECT (see
    // websocket_h2.rs): axum's extractor refuses a GET, and the route
    // answers with its rejection.
    let srv = start(Limits::default()).await;
    let mut req = support::h2_preface();
    // HEADERS for GET /ws (HPACK: :method GET, :scheme http, :path /ws,
    // :authority x), END_STREAM | END_HEADERS.
    let mut block = vec![0x82, 0x86, 0x44, 0x03];
    block.extend_from_slice(b"/ws");
    block.extend_from_slice(&[0x41, 0x01, b'x']);
    req.extend(support::h2_frame(0x1, 0x5, 1, &block));
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    loop {
        let (kind, _, stream, payload) =
            tokio::time::timeout(TIMEOUT, support::read_h2_frame(&mut s))
                .await
                .unwrap()
                .expect("a HEADERS frame");
        if kind == 0x1 && stream == 1 {
            // :status 405 (axum: MethodNotConnect) is not in the static
            // table: a literal; any status but 101/200 will do.
            assert!(!payload.is_empty());
            assert_ne!(payload[0], 0x88, "200 for a WebSocket over HTTP/2");
            break;
        }
    }
}

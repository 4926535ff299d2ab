//! WebSocket over HTTP/2 (extended CONNECT, RFC 8441): an axum
//! `WebSocketUpgrade` route served with `any`, a real client (hyper's HTTP/2
//! client opening the stream, tokio-tungstenite speaking WebSocket on it):
//! echo, a hundred WebSockets on one connection, the close handshake, the
//! idle timeout leaving an open WebSocket alone and closing the connection
//! once it is over, the server stopping, and the setting that turns
//! extended CONNECT off.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway_core::Limits;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const TIMEOUT: Duration = Duration::from_secs(10);

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
            // `any`: HTTP/1.1 asks with GET, HTTP/2 with CONNECT.
            axum::routing::any(|ws: WebSocketUpgrade| async move {
                ws.max_message_size(8 << 20).on_upgrade(echo)
            }),
        )
        .route("/hello", axum::routing::get(|| async { "hello" }))
}

async fn start(
    limits: Limits,
    configure: impl FnOnce(&mut gateway_http::Server),
) -> support::Running {
    support::start_app(support::handler(limits), configure, router()).await
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// An HTTP/2 connection (prior knowledge), after one GET answered on it:
/// by then the server's SETTINGS have arrived.
async fn h2_connection(
    addr: SocketAddr,
) -> (SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    assert_eq!(get_hello(&mut send).await, "hello");
    (send, conn)
}

async fn get_hello(send: &mut SendRequest<Empty<Bytes>>) -> String {
    let req = Request::get("http://x/hello")
        .version(Version::HTTP_2)
        .body(Empty::new())
        .unwrap();
    let res = tokio::time::timeout(TIMEOUT, send.send_request(req))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The extended CONNECT for `/ws`.
fn connect_request() -> Request<Empty<Bytes>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri("http://x/ws")
        .version(Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    req
}

/// Opens a WebSocket on a new stream of `send`'s connection.
async fn open_ws(send: &mut SendRequest<Empty<Bytes>>) -> Ws {
    let res = tokio::time::timeout(TIMEOUT, send.send_request(connect_request()))
        .await
        .expect("an answer in time")
        .expect("the CONNECT is answered");
    assert_eq!(res.status(), StatusCode::OK, "{res:?}");
    assert!(
        res.headers().get("sec-websocket-accept").is_none(),
        "an HTTP/2 WebSocket has no accept key"
    );
    let upgraded = tokio::time::timeout(TIMEOUT, hyper::upgrade::on(res))
        .await
        .expect("upgraded in time")
        .expect("the stream is handed over");
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

async fn next_message(ws: &mut Ws) -> Option<Message> {
    tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("an answer in time")
        .map(|r| r.expect("a message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_http2() {
    let srv = start(Limits::default(), |_| {}).await;
    let (mut send, _conn) = h2_connection(srv.addr).await;
    let mut ws = open_ws(&mut send).await;
    ws.send(Message::text("hello over h2")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text("hello over h2"))
    );
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::binary(big)));
    // A second WebSocket and a plain request share the connection.
    let mut second = open_ws(&mut send).await;
    second.send(Message::text("two")).await.unwrap();
    assert_eq!(next_message(&mut second).await, Some(Message::text("two")));
    assert_eq!(get_hello(&mut send).await, "hello");
    ws.send(Message::text("one")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("one")));
}

/// A hundred WebSockets open at once as streams of one HTTP/2 connection,
/// each echoing on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_websockets_on_one_connection() {
    let srv = start(Limits::default(), |_| {}).await;
    let (send, _conn) = h2_connection(srv.addr).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let mut send = send.clone();
        tasks.spawn(async move {
            let mut ws = open_ws(&mut send).await;
            for j in 0..3 {
                let text = format!("stream {i} message {j}");
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
    for (i, ws) in open.iter_mut().enumerate() {
        let text = format!("last {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next_message(ws).await, Some(Message::text(text)));
    }
    // The server answers each close and drops its WebSocket at once, which
    // may end the stream (a reset with NO_ERROR) while the client is still
    // flushing its side of the close: not an error here.
    for mut ws in open {
        let _ = ws.close(None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handshake_then_the_idle_connection_closes() {
    let mut limits = Limits::default();
    limits.idle_timeout(Duration::from_millis(300));
    let srv = start(limits, |_| {}).await;
    let (mut send, conn) = h2_connection(srv.addr).await;
    let mut ws = open_ws(&mut send).await;
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("x")));
    // The server answers the close and drops the WebSocket at once, which
    // may end the stream (a reset with NO_ERROR) while the client is still
    // finishing its side of the close: not an error here.
    let _ = ws.close(None).await;
    // What follows from the server is its close, or the end: no more data.
    let after = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("the close is answered in time");
    assert!(
        matches!(after, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        "{after:?}"
    );
    drop(ws);
    // With the WebSocket over, nothing keeps the connection: it is closed
    // for being idle (GOAWAY), between one and two idle timeouts later
    // (plus the close's own grace).
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(8), conn)
        .await
        .expect("the idle connection is closed once the WebSocket is over")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_does_not_cut_an_open_websocket() {
    let mut limits = Limits::default();
    limits.idle_timeout(Duration::from_millis(200));
    let srv = start(limits, |_| {}).await;
    let (mut send, conn) = h2_connection(srv.addr).await;
    let mut ws = open_ws(&mut send).await;
    // Talking, for many idle periods.
    for i in 0..10 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Some(Message::text(text)));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Silent, for many more: no request is in flight, the stream is open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !conn.is_finished(),
        "the connection was closed under the WebSocket"
    );
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text("still here"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stopping_closes_it_after_the_grace_period() {
    // The test server's grace period is 2 s.
    let srv = start(Limits::default(), |_| {}).await;
    let (mut send, _conn) = h2_connection(srv.addr).await;
    let mut ws = open_ws(&mut send).await;
    let started = Instant::now();
    srv.shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text("still here"))
    );
    let end = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("closed in time");
    let took = started.elapsed();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    tokio::time::timeout(TIMEOUT, srv.task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_connect_can_be_turned_off() {
    let srv = start(Limits::default(), |s| {
        s.extended_connect(false);
    })
    .await;
    let (mut send, _conn) = h2_connection(srv.addr).await;
    // The server did not offer the protocol: the client refuses to send it.
    let sent = tokio::time::timeout(TIMEOUT, send.send_request(connect_request()))
        .await
        .expect("an answer in time");
    assert!(sent.is_err(), "{sent:?}");
    // HTTP/2 itself goes on working.
    let (mut send, _conn) = h2_connection(srv.addr).await;
    assert_eq!(get_hello(&mut send).await, "hello");
}

//! HTTP/2 connections and streams that a client leaves hanging: silent
//! after the preface, never answering PING, never opening its window.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_core::{Body, BoxError, Limits};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use support::{OnDrop, h2_frame, h2_preface, read_h2_frame, text};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

/// Reads frames until the server closes the connection (at most `within`);
/// returns the frame types seen.
async fn frames_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut kinds = Vec::new();
    let read_all = async {
        while let Some((kind, ..)) = read_h2_frame(s).await {
            kinds.push(kind);
        }
    };
    let closed = tokio::time::timeout(within, read_all).await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open; frames seen: {kinds:?}"
    );
    kinds
}

/// An application that never answers, and says when its future is dropped.
fn hanging_app() -> (
    impl gateway_core::Application<http_body_util::Full<Bytes>>,
    mpsc::UnboundedReceiver<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = tower::service_fn(move |_req: Request<Body>| {
        let tx = tx.clone();
        let guard = OnDrop(move || {
            let _ = tx.send(());
        });
        async move {
            let _guard = guard;
            std::future::pending::<Result<Response<http_body_util::Full<Bytes>>, BoxError>>().await
        }
    });
    (app, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_the_idle_timeout() {
    // The write timeout (60 s) is not what closes it: the close after the
    // idle timeout is bounded even when the client never acknowledges it.
    let mut limits = Limits::default();
    limits.idle_timeout(Duration::from_millis(300));
    let srv = support::start_with(support::handler(limits)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&h2_preface()).await.unwrap();
    let started = Instant::now();
    let kinds = frames_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(kinds.contains(&GOAWAY), "{kinds:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    support::still_serving(srv.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_answers_ping_is_closed() {
    // A request in flight keeps the idle watch away; the keep-alive PING
    // finds the client gone.
    let mut limits = Limits::default();
    limits
        .idle_timeout(Duration::from_millis(300))
        .write_timeout(Duration::from_millis(300));
    let (app, mut dropped) = hanging_app();
    let srv = support::start_app(support::handler(limits), |_| {}, app).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    // GET /hang: the header block in HPACK, every field a literal or an
    // entry of the static table.
    let mut block = vec![0x82, 0x86, 0x04, 5];
    block.extend_from_slice(b"/hang");
    block.extend_from_slice(&[0x01, 1, b'x']);
    let mut hello = h2_preface();
    hello.extend(h2_frame(0x1, 0x5, 1, &block)); // END_STREAM | END_HEADERS
    s.write_all(&hello).await.unwrap();
    let kinds = frames_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(kinds.contains(&PING), "{kinds:?}");
    tokio::time::timeout(Duration::from_secs(2), dropped.recv())
        .await
        .expect("the application was not dropped with its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_cannot_hold_the_only_slot() {
    let mut limits = Limits::default();
    limits
        .idle_timeout(Duration::from_millis(300))
        .max_connections(1);
    let srv = support::start_with(support::handler(limits)).await;
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    silent.write_all(&h2_preface()).await.unwrap();
    // The server's SETTINGS: the connection is being served.
    let (kind, ..) = read_h2_frame(&mut silent).await.unwrap();
    assert_eq!(kind, 0x4);
    let started = Instant::now();
    let mut refused = 0;
    loop {
        let out = text(&support::exchange(srv.addr, b"GET / HTTP/1.0\r\n\r\n").await);
        if out.starts_with("HTTP/1.0 200 OK") {
            break;
        }
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
        refused += 1;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the silent connection still holds the slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused > 0, "the silent connection never held the slot");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_whose_window_never_opens_is_reset_after_the_write_timeout() {
    let mut limits = Limits::default();
    limits.write_timeout(Duration::from_millis(300));
    let (tx, mut dropped) = mpsc::unbounded_channel();
    // An endless response body that says when it is dropped.
    let app = tower::service_fn(move |_req: Request<Body>| {
        let tx = tx.clone();
        async move {
            let guard = OnDrop(move || {
                let _ = tx.send(());
            });
            let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                let _ = &guard;
                Ok::<_, BoxError>(http_body::Frame::data(chunk.clone()))
            });
            Ok::<_, BoxError>(Response::new(StreamBody::new(stream).boxed_unsync()))
        }
    });
    let srv = support::start_app(support::handler(limits), |_| {}, app).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    // A stream window of 0, never released: the server may send headers,
    // not a byte of the body.
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://x/").body(()).unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("no response head")
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), dropped.recv())
        .await
        .expect("the stalled response was never given up");
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The client sees the stream reset, not a clean end.
    let mut body = response.into_body();
    let end = tokio::time::timeout(Duration::from_secs(5), body.data())
        .await
        .expect("the stream was neither reset nor ended");
    assert!(matches!(end, Some(Err(_))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_response_whose_window_never_opens_is_reset() {
    // The application is done before the head goes out; hyper holds its
    // whole body, waiting for room that never comes.
    let mut limits = Limits::default();
    limits.write_timeout(Duration::from_millis(300));
    let app = tower::service_fn(|_req: Request<Body>| async {
        let body = http_body_util::Full::new(Bytes::from(vec![b'x'; 100_000]));
        Ok::<_, BoxError>(Response::new(body))
    });
    let srv = support::start_app(support::handler(limits), |_| {}, app).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://x/").body(()).unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = response.await.unwrap();
    let started = Instant::now();
    let mut body = response.into_body();
    let end = tokio::time::timeout(Duration::from_secs(5), body.data())
        .await
        .expect("the stalled response was never given up");
    assert!(matches!(end, Some(Err(_))), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_that_keeps_opening_its_window_gets_everything() {
    // Each chunk is taken within the write timeout, the whole response
    // takes twice as long: a slow client is not a stalled one.
    let mut limits = Limits::default();
    limits.write_timeout(Duration::from_millis(500));
    let app = tower::service_fn(|_req: Request<Body>| async {
        // One chunk at a time (the core would coalesce chunks that are
        // ready together).
        let chunks = futures_util::stream::unfold(0, |n| async move {
            if n == 20 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let chunk = http_body::Frame::data(Bytes::from(vec![b'x'; 8192]));
            Some((Ok::<_, BoxError>(chunk), n + 1))
        });
        Ok::<_, BoxError>(Response::new(StreamBody::new(chunks)))
    });
    let srv = support::start_app(support::handler(limits), |_| {}, app).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(16384)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://x/").body(()).unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let started = Instant::now();
    let mut got = 0;
    while let Some(data) = body.data().await {
        let data = data.expect("the response was cut off");
        got += data.len();
        tokio::time::sleep(Duration::from_millis(60)).await;
        body.flow_control().release_capacity(data.len()).unwrap();
    }
    assert_eq!(got, 20 * 8192);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

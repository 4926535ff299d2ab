//! HTTP/2 connections and streams that a client leaves hanging: silent
//! after the preface, never answering PING, never opening its window.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_core::{Body, BoxError, Limits};
use http::{Request, Response};
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

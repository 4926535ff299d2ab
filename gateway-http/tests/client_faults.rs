//! Request bodies that fail through the client's doing (too slow, cut
//! short, malformed, too large): the application sees the core's body
//! errors, the client gets 408/400/413 while nothing was sent, and nothing
//! reaches the error stream as an application error.

mod support;

use std::time::Duration;

use bytes::Bytes;
use gateway_core::{Body, BoxError, ErrorStream, Limits};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use support::{read_to_close, text};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the application saw when it read the whole request body.
fn describe(got: &Result<Bytes, BoxError>) -> String {
    match got {
        Ok(b) => format!("ok {}", b.len()),
        Err(e) => match e.downcast_ref::<gateway_core::Error>() {
            Some(e) if e.is_body_timeout() => "timeout".into(),
            Some(e) if e.is_malformed_body() => "malformed".into(),
            Some(e) if e.is_incomplete_body() => "incomplete".into(),
            Some(e) if e.is_body_too_large() => "too large".into(),
            _ => format!("other: {e}"),
        },
    }
}

/// A server whose application reads the request body, reports what it saw
/// on the channel, and fails with the body's error if there was one.
async fn start(
    limits: Limits,
) -> (
    support::Running,
    mpsc::UnboundedReceiver<String>,
    gateway_core::Captured,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (errors, captured) = ErrorStream::capture();
    let app = tower::service_fn(move |req: Request<Body>| {
        let tx = tx.clone();
        async move {
            let got = req
                .into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes);
            let _ = tx.send(describe(&got));
            Ok::<_, BoxError>(Response::new(Full::new(got?)))
        }
    });
    let srv = support::start_app(
        support::handler(limits),
        move |s| {
            s.error_stream(errors);
        },
        app,
    )
    .await;
    (srv, rx, captured)
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the application never finished reading")
        .expect("the server went away")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_body_is_answered_408() {
    let mut limits = Limits::default();
    limits.body_read_timeout(Duration::from_millis(300));
    let (srv, mut rx, errors) = start(limits).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let out = text(&read_to_close(&mut s).await);
    assert_eq!(seen(&mut rx).await, "timeout");
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(
        !errors.text().contains("application error"),
        "{}",
        errors.text()
    );
    support::still_serving(srv.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunk_size_is_answered_400() {
    let (srv, mut rx, errors) = start(Limits::default()).await;
    let out = text(
        &support::exchange(
            srv.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .await,
    );
    assert_eq!(seen(&mut rx).await, "malformed");
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(
        !errors.text().contains("application error"),
        "{}",
        errors.text()
    );
    support::still_serving(srv.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_max_body_len_is_answered_413() {
    let mut limits = Limits::default();
    limits.max_body_len(Some(4));
    let (srv, mut rx, errors) = start(limits).await;
    let out = text(
        &support::exchange(
            srv.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
        )
        .await,
    );
    assert_eq!(seen(&mut rx).await, "too large");
    assert!(
        out.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{out}"
    );
    assert!(
        !errors.text().contains("application error"),
        "{}",
        errors.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_upload_logs_nothing() {
    let (srv, mut rx, errors) = start(Limits::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    assert_eq!(seen(&mut rx).await, "incomplete");
    // The handler logs (or not) as soon as the application returns.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(errors.text(), "");
    support::still_serving(srv.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upload_reset_by_the_client_is_incomplete() {
    let (srv, mut rx, errors) = start(Limits::default()).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://x/").body(()).unwrap();
    let (_response, mut upload) = client.send_request(req, false).unwrap();
    upload.send_data(Bytes::from_static(b"abc"), false).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    upload.send_reset(h2::Reason::CANCEL);
    assert_eq!(seen(&mut rx).await, "incomplete");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(errors.text(), "");
}

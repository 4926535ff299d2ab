//! The server's metrics over loopback TCP: connections, requests, bytes and
//! failures (an application error, a protocol error, a head timeout, a
//! connection refused past the cap) move the counters, for every dispatch strategy, with and without multiplexing.

#[allow(unused_macros)]
mod support;

use std::time::Duration;

use gateway_core::server::{Listener, Shutdown};
use gateway_core::{Body, Failure, Limits, Metrics};
use gateway_fastcgi::Server;
use gateway_fastcgi::proto::{ProtocolStatus, RecordType};
use http::{Request, Response};
use support::*;
use tokio::net::TcpStream;

type App = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, std::io::Error>;

/// `/fail` fails before its head; anything else echoes its body's length.
fn app() -> App {
    tower::util::BoxCloneSyncService::new(tower::service_fn(|req: Request<Body>| async move {
        if req.uri().path() == "/fail" {
            return Err(std::io::Error::other("the application failed"));
        }
        let body = read_body(req.into_body()).await.unwrap_or_default();
        Ok(ok(format!("read {}", body.len())))
    }))
}

async fn eventually(
    metrics: &Metrics,
    what: &str,
    f: impl Fn(&gateway_core::metrics::Snapshot) -> bool,
) {
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
    for (multiplex, dispatch) in [false, true]
        .into_iter()
        .flat_map(|m| gateway_fastcgi::Dispatch::ALL.map(|d| (m, d)))
    {
        let metrics = Metrics::new();
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.tcp_addr().unwrap();
        let shutdown = Shutdown::new();
        let mut limits = Limits::default();
        limits
            .head_read_timeout(Duration::from_millis(200))
            .max_connections(1);
        let mut server = Server::new();
        server
            .limits(limits)
            .metrics(&metrics)
            .multiplex(multiplex)
            .dispatch(dispatch)
            .shutdown(shutdown.clone());
        let task = tokio::spawn(async move { server.serve(listener, app()).await.unwrap() });
        let connect = || async { Client::new(TcpStream::connect(addr).await.unwrap()) };

        // A kept-alive connection: a GET, a POST with a body, a failure.
        let mut c = connect().await;
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/a"))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        assert_eq!(c.response(1).await.body(), "read 0");
        let mut post = get("/b");
        post[0].1 = "POST".into();
        post.last_mut().unwrap().1 = "5".into();
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&post)).await;
        c.stream(RecordType::Stdin, 1, b"hello", true).await;
        assert_eq!(c.response(1).await.body(), "read 5");
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/fail")))
            .await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        assert!(c.response(1).await.text().starts_with("Status: 500"));

        let s = metrics.snapshot();
        let m = format!("multiplex {multiplex}, {dispatch:?}: {s:?}");
        assert_eq!(s.connections_accepted, 1, "{m}");
        assert_eq!(s.connections_open, 1, "{m}");
        assert_eq!(s.requests, 3, "{m}");
        assert_eq!(s.requests_by_class[1], 2, "{m}");
        assert_eq!(s.requests_by_class[4], 1, "{m}");
        assert_eq!(s.requests_in_flight, 0, "{m}");
        assert_eq!(s.bytes_in, 5, "{m}");
        assert_eq!(
            s.bytes_out,
            ("read 0".len() + "read 5".len() + gateway_core::DEFAULT_ERROR_BODY.len()) as u64,
            "{m}"
        );
        assert_eq!(s.failure(Failure::App), 1, "{m}");

        // Past the cap (one connection): refused with FCGI_OVERLOADED.
        let mut refused = connect().await;
        refused.begin(1, RESPONDER, 0, &pairs(&get("/x"))).await;
        refused.stream(RecordType::Stdin, 1, b"", true).await;
        let r = refused.response(1).await;
        assert_eq!(r.protocol_status, ProtocolStatus::Overloaded.as_u8());
        eventually(&metrics, "refused", |s| s.failure(Failure::Refused) == 1).await;

        // A bad record version: a protocol error; the connection closes.
        drop(c);
        eventually(&metrics, "closed", |s| s.connections_open == 0).await;
        let mut bad = connect().await;
        bad.send(&[9, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
            .await;
        assert!(bad.closed().await);
        eventually(&metrics, "protocol error", |s| {
            s.failure(Failure::Protocol) == 1 && s.connections_open == 0
        })
        .await;

        // Half a record, then silence: the head timeout.
        let mut slow = connect().await;
        slow.send(&[1, 1, 0, 1]).await;
        assert!(slow.closed().await);
        eventually(&metrics, "timeout", |s| s.failure(Failure::Timeout) == 1).await;

        let s = metrics.snapshot();
        assert_eq!(
            s.connections_accepted, 3,
            "multiplex {multiplex}, {dispatch:?}: {s:?}"
        );
        assert_eq!(
            s.connections_max_open, 1,
            "multiplex {multiplex}, {dispatch:?}: {s:?}"
        );
        let text = s.to_openmetrics();
        assert!(
            text.contains("gateway_failures_total{kind=\"refused\"} 1\n"),
            "{text}"
        );
        shutdown.trigger();
        task.await.unwrap();
    }
}

//! Connections past the cap over loopback TCP: refused at once with
//! FCGI_OVERLOADED, for both drivers.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use gateway_core::Body;
use gateway_core::server::{Listener, Shutdown};
use gateway_fastcgi::Dispatch;
use gateway_fastcgi::proto::{self, ProtocolStatus, RecordType};
use http::{Request, Response};
use support::*;
use tokio::net::TcpStream;

type App = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

fn echo() -> App {
    tower::util::BoxCloneSyncService::new(tower::service_fn(|req: Request<Body>| async move {
        Ok::<_, Infallible>(ok(format!("{} {}", req.method(), req.uri().path())))
    }))
}

/// A server capped at one connection, serving on loopback TCP.
async fn capped(
    dispatch: Dispatch,
    multiplex: bool,
    allowed: Option<Vec<std::net::IpAddr>>,
) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = Shutdown::new();
    let mut server = new_server(dispatch);
    server
        .shutdown(shutdown.clone())
        .multiplex(multiplex)
        .web_server_addrs(allowed)
        .max_connections(1);
    let task = tokio::spawn(async move { server.serve(listener, echo()).await.unwrap() });
    (addr, shutdown, task)
}

async fn connect(addr: std::net::SocketAddr) -> Client<TcpStream> {
    Client::new(TcpStream::connect(addr).await.unwrap())
}

per_dispatch! {
/// With `max_connections(1)` and one connection held open, a second
/// connection's request gets END_REQUEST {appStatus 0, FCGI_OVERLOADED}
/// at once, and the connection is closed; an FCGI_GET_VALUES before the
/// request is answered from the configuration. The held connection goes on
/// serving.
async fn past_the_connection_cap_requests_get_overloaded_at_once(dispatch) {
    for multiplex in [false, true] {
        let (addr, shutdown, task) = capped(dispatch, multiplex, None).await;
        let mut held = connect(addr).await;
        held.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/held")))
            .await;
        held.stream(RecordType::Stdin, 1, b"", true).await;
        assert_eq!(
            held.response(1).await.body(),
            "GET /held",
            "multiplex {multiplex}"
        );

        // What nginx or Apache send: the whole request at once.
        let began = Instant::now();
        let mut c = connect(addr).await;
        c.begin(1, RESPONDER, 0, &pairs(&get("/refused"))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let r = c.response(1).await;
        let took = began.elapsed();
        assert_eq!(
            (r.protocol_status, r.app_status),
            (ProtocolStatus::Overloaded.as_u8(), 0),
            "multiplex {multiplex}"
        );
        assert!(r.stdout.is_empty() && r.stderr.is_empty());
        assert!(
            took < Duration::from_millis(500),
            "multiplex {multiplex}: answered after {took:?}"
        );
        assert!(
            c.closed().await,
            "multiplex {multiplex}: refused connection left open"
        );

        // A management query first, then the request.
        let mut c = connect(addr).await;
        let mut w = BytesMut::new();
        proto::encode_get_values(&mut w, ["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS"]).unwrap();
        c.send(&w).await;
        let r = c.record().await.expect("the values");
        assert_eq!(r.record_type, RecordType::GetValuesResult);
        let values: Vec<(String, String)> = proto::decode_pairs(r.content, 1024, 16)
            .unwrap()
            .into_iter()
            .map(|(n, v)| {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (text(&n), text(&v))
            })
            .collect();
        let mpxs = if multiplex { "1" } else { "0" };
        let expected = [("FCGI_MAX_CONNS", "1"), ("FCGI_MPXS_CONNS", mpxs)]
            .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(values, expected, "multiplex {multiplex}");
        c.begin(1, RESPONDER, 0, &pairs(&get("/refused"))).await;
        let r = c.response(1).await;
        assert_eq!(r.protocol_status, ProtocolStatus::Overloaded.as_u8());

        held.begin(1, RESPONDER, 0, &pairs(&get("/again"))).await;
        held.stream(RecordType::Stdin, 1, b"", true).await;
        assert_eq!(held.response(1).await.body(), "GET /again");

        drop(held);
        shutdown.trigger();
        task.await.unwrap();
    }
}
}

per_dispatch! {
/// A peer outside the allow-list gets no answer past the cap either: its
/// connection is closed without a record.
async fn past_the_cap_a_peer_not_allowed_gets_no_answer(dispatch) {
    let (addr, shutdown, task) = capped(dispatch, false, Some(vec!["10.9.9.9".parse().unwrap()])).await;
    // Refused by the allow-list, but it holds the one slot while it lasts.
    let _held = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = connect(addr).await;
    let mut w = BytesMut::new();
    proto::encode_begin_request(&mut w, 1, RESPONDER, 0);
    let _ = tokio::io::AsyncWriteExt::write_all(&mut c.io, &w).await;
    assert_eq!(c.raw_until_close().await.len(), 0);
    shutdown.trigger();
    task.await.unwrap();
}
}

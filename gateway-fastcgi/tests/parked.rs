//! A kept-alive connection that has been idle for a moment waits for its
//! next request without its dispatcher (see `idle_memory.rs` for the memory
//! it saves): what the web server sees does not change. Its deadlines, the
//! cap on requests per connection, the shutdown, the metrics and
//! multiplexed requests behave as on a connection that never parked, for
//! every dispatch strategy.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use gateway_core::server::{Listener, Shutdown};
use gateway_core::{Body, BoxError, Handler, Limits, Metrics};
use gateway_fastcgi::proto::{self, ProtocolStatus, RecordType};
use gateway_fastcgi::{Connections, Dispatch};
use http::{Request, Response};
use support::*;
use tokio::io::DuplexStream;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower::util::BoxCloneSyncService;

type App = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// Longer than a connection stays unparked after its last request.
const PARKED: Duration = Duration::from_millis(400);

/// Answers with its path; `/wait` first waits for `gate`.
fn app(gate: std::sync::Arc<Notify>) -> App {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<Body>| {
        let gate = gate.clone();
        async move {
            if req.uri().path() == "/wait" {
                gate.notified().await;
            }
            Ok::<_, BoxError>(ok(req.uri().path().to_owned()))
        }
    }))
}

fn server(dispatch: Dispatch, multiplex: bool, limits: Limits) -> Connections<App, Body> {
    let mut server = new_server(dispatch);
    server
        .multiplex(multiplex)
        .handler(Handler::builder().limits(limits).build());
    server.connections(app(Default::default()))
}

/// A kept-alive request for `path` as request `id`; its response body.
async fn request<T>(c: &mut Client<T>, id: u16, path: &str) -> Response_
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    c.begin(id, RESPONDER, KEEP_CONN, &pairs(&get(path))).await;
    c.stream(RecordType::Stdin, id, b"", true).await;
    c.response(id).await
}

per_dispatch! {
/// Requests separated by pauses long enough to park the connection are
/// served as usual, with and without multiplexing.
async fn requests_after_pauses_are_served(dispatch) {
    for multiplex in [false, true] {
        let mut c = connect(&server(dispatch, multiplex, Limits::default()));
        for (i, path) in ["/a", "/b", "/c"].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(PARKED).await;
            }
            assert_eq!(request(&mut c, 1, path).await.body(), path, "multiplex {multiplex}");
        }
    }
}
}

per_dispatch! {
/// On a parked connection, the idle timeout still counts from the end of
/// the last request, and the head read timeout from the first byte of the
/// next request head (not from the end of the last request, which would
/// close it at once, nor from the parking).
async fn deadlines_hold_across_parking(dispatch) {
    let head = Duration::from_millis(600);
    let mut limits = Limits::default();
    limits
        .head_read_timeout(head)
        .idle_timeout(Duration::from_millis(2000));
    let conns = server(dispatch, false, limits);

    let mut c = connect(&conns);
    request(&mut c, 1, "/a").await;
    let ended = Instant::now();
    tokio::time::sleep(PARKED + head).await;
    assert!(c.stays_open().await, "past the head read timeout, idle");
    assert!(c.closed().await, "past the idle timeout");
    let took = ended.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "closed {took:?} after the request"
    );

    let mut c = connect(&conns);
    request(&mut c, 1, "/a").await;
    tokio::time::sleep(PARKED).await;
    let mut w = BytesMut::new();
    proto::encode_begin_request(&mut w, 1, RESPONDER, KEEP_CONN);
    c.send(&w).await;
    let began = Instant::now();
    assert!(c.closed().await, "a head never finished");
    let took = began.elapsed();
    assert!(
        took >= head - Duration::from_millis(100) && took < Duration::from_millis(1800),
        "head open for {took:?}"
    );
}
}

per_dispatch! {
/// The cap on requests per connection counts the requests before the
/// connection parked: past it, the connection closes once idle.
async fn request_cap_counts_across_parking(dispatch) {
    let mut limits = Limits::default();
    limits.max_requests_per_connection(Some(2));
    let mut c = connect(&server(dispatch, false, limits));
    assert_eq!(request(&mut c, 1, "/a").await.body(), "/a");
    tokio::time::sleep(PARKED).await;
    assert_eq!(request(&mut c, 1, "/b").await.body(), "/b");
    assert!(c.closed().await, "closed after its second request");
}
}

per_dispatch! {
/// A parked connection closes as soon as the server stops.
async fn a_parked_connection_closes_on_shutdown(dispatch) {
    let shutdown = Shutdown::new();
    let mut server = new_server(dispatch);
    server.shutdown(shutdown.clone());
    let conns = server.connections(app(Default::default()));
    let mut c: Client<DuplexStream> = connect(&conns);
    request(&mut c, 1, "/a").await;
    tokio::time::sleep(PARKED).await;
    shutdown.trigger();
    assert!(c.closed().await, "closed on shutdown");
}
}

per_dispatch! {
/// A multiplexed connection does not park while a request is in flight,
/// however long it runs: a request that comes meanwhile, and the answer of
/// the first one, go through.
async fn a_request_in_flight_keeps_the_connection(dispatch) {
    let gate = std::sync::Arc::new(Notify::new());
    let mut server = new_server(dispatch);
    server.multiplex(true);
    let conns = server.connections(app(gate.clone()));
    let mut c = connect(&conns);
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/wait"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    tokio::time::sleep(PARKED).await;
    assert_eq!(request(&mut c, 2, "/b").await.body(), "/b");
    tokio::time::sleep(PARKED).await;
    gate.notify_one();
    let r = c.response(1).await;
    assert_eq!((r.body().as_str(), r.protocol_status), ("/wait", ProtocolStatus::RequestComplete.as_u8()));
}
}

/// Parking is not a new connection: the metrics count one connection
/// accepted and open across requests separated by pauses.
#[tokio::test]
async fn parking_moves_no_connection_metric() {
    for dispatch in Dispatch::ALL {
        let metrics = Metrics::new();
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.tcp_addr().unwrap();
        let shutdown = Shutdown::new();
        let mut server = new_server(dispatch);
        server.metrics(&metrics).shutdown(shutdown.clone());
        let task = tokio::spawn(async move {
            server
                .serve(listener, app(Default::default()))
                .await
                .unwrap()
        });
        let mut c = Client::new(TcpStream::connect(addr).await.unwrap());
        for path in ["/a", "/b", "/c"] {
            assert_eq!(request(&mut c, 1, path).await.body(), path);
            tokio::time::sleep(PARKED).await;
        }
        let s = metrics.snapshot();
        assert_eq!(
            (s.connections_accepted, s.connections_open, s.requests),
            (1, 1, 3),
            "{dispatch:?}: {s:?}"
        );
        shutdown.trigger();
        task.await.unwrap();
    }
}

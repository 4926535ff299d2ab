//! The heap a FastCGI connection holds while it waits for a request: once
//! every request on it has ended and it has been idle for a moment, a
//! kept-alive connection holds no more than a fresh one that has sent
//! nothing yet (its dispatcher, buffers and protocol state are made again
//! when the next request arrives), for every dispatch strategy. Counted
//! with dhat's heap statistics, so this test has a binary of its own (one
//! global allocator) and one test (the counts are the whole process's).

use std::convert::Infallible;
use std::time::Duration;

use bytes::BytesMut;
use gateway_fastcgi::proto::{self, RecordType};
use gateway_fastcgi::{Body, Dispatch, Server};
use http::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Connections measured at once (the figures are per connection).
const N: usize = 16;

fn live_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

/// One kept-alive request for `/`, as a web server sends it.
fn request() -> BytesMut {
    let mut w = BytesMut::new();
    proto::encode_begin_request(&mut w, 1, 1, 1);
    proto::encode_params(
        &mut w,
        1,
        [
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/"),
            ("SCRIPT_NAME", ""),
            ("PATH_INFO", "/"),
            ("QUERY_STRING", ""),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
        ],
    )
    .expect("small parameters");
    proto::encode_stream_end(&mut w, RecordType::Stdin, 1);
    w
}

/// Sends a request on `c` and reads its response up to FCGI_END_REQUEST.
async fn one_request(c: &mut TcpStream) {
    c.write_all(&request()).await.expect("the server reads");
    let end = [1u8, 3, 0, 1, 0, 8, 0, 0];
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while got.len() < 16 || got[got.len() - 16..got.len() - 8] != end {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .expect("the server answers");
        assert!(n > 0, "the server closed the connection");
        got.extend_from_slice(&chunk[..n]);
    }
}

/// `n` connections to `listener`, each served by `server`.
async fn open(
    listener: &TcpListener,
    server: &gateway_fastcgi::Connections<App, Body>,
    n: usize,
) -> Vec<TcpStream> {
    let addr = listener.local_addr().expect("an address");
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let client = TcpStream::connect(addr).await.expect("connect");
        let (ours, _) = listener.accept().await.expect("accept");
        tokio::spawn(server.serve_io(ours, None));
        clients.push(client);
    }
    clients
}

type App = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

fn app() -> App {
    tower::util::BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("hello\n")))
    }))
}

/// Live heap bytes per connection (above `base`) once they settle: within
/// 5 s, the first figure at or below `bound`, else the last one.
async fn settled_per_connection(base: usize, bound: usize) -> usize {
    let mut per = usize::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        per = live_bytes().saturating_sub(base) / N;
        if per <= bound {
            break;
        }
    }
    per
}

async fn check(dispatch: Dispatch) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut server = Server::new();
    server.dispatch(dispatch);
    let conns = server.connections(app());

    // A first connection through its whole life, so that what is made
    // once (lazy statics, the timer wheel) is counted in the base.
    let mut warm = open(&listener, &conns, 1).await;
    for c in &mut warm {
        one_request(c).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let base = live_bytes();
    let mut clients = open(&listener, &conns, N).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = live_bytes().saturating_sub(base) / N;
    for c in &mut clients {
        one_request(c).await;
    }
    // The connections stay open and idle.
    let margin = 128;
    let after = settled_per_connection(base, fresh + margin).await;
    assert!(
        after <= fresh + margin,
        "{dispatch:?}: {after} bytes per kept-alive connection between requests, \
         {fresh} per fresh one"
    );
    eprintln!(
        "{dispatch:?}: {fresh} bytes per fresh connection, {after} once idle after a request"
    );
    // They still serve their next request.
    for c in &mut clients {
        one_request(c).await;
    }
    drop(clients);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Connections that sent only a management record keep their
    // dispatcher (more input may follow for them), but not their 8 KiB
    // read buffer once idle.
    let base = live_bytes();
    let mut clients = open(&listener, &conns, N).await;
    let mut get_values = BytesMut::new();
    proto::encode_get_values(&mut get_values, ["FCGI_MAX_CONNS"]).expect("a small record");
    for c in &mut clients {
        c.write_all(&get_values).await.expect("the server reads");
        let mut answer = [0u8; 256];
        let n = c.read(&mut answer).await.expect("an answer");
        assert!(
            n > 8 && answer[1] == 10,
            "{dispatch:?}: no FCGI_GET_VALUES_RESULT"
        );
    }
    let bound = fresh + 6 * 1024;
    let managed = settled_per_connection(base, bound).await;
    eprintln!("{dispatch:?}: {managed} bytes per connection idle after a management record");
    assert!(
        managed <= bound,
        "{dispatch:?}: {managed} bytes per connection idle after a management record, \
         {fresh} per fresh one"
    );
    for c in &mut clients {
        one_request(c).await;
    }
}

#[test]
fn a_kept_alive_connection_between_requests_holds_what_a_fresh_one_does() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for dispatch in Dispatch::ALL {
            check(dispatch).await;
        }
    });
}

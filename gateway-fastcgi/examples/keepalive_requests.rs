//! Feeds N FastCGI requests, one after the other, through one kept-alive
//! connection (an in-memory pipe) on a single-threaded runtime, the way
//! nginx with `fastcgi_keep_conn on` sends them: for counting the
//! instructions one request costs (`scripts/callgrind-fastcgi.sh` runs it
//! under callgrind twice and takes the difference).
//!
//! ```text
//! cargo run --release -p gateway-fastcgi --example keepalive_requests -- 10000 [adaptive|in-task|spawned]
//! ```

use std::convert::Infallible;

use bytes::BytesMut;
use gateway_fastcgi::proto::{self, RecordType};
use gateway_fastcgi::{Body, Dispatch, Server};
use http::{Request, Response, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What nginx's `fastcgi_params` sends for `GET /` (values as on loopback).
const PARAMS: &[(&str, &str)] = &[
    ("QUERY_STRING", ""),
    ("REQUEST_METHOD", "GET"),
    ("CONTENT_TYPE", ""),
    ("CONTENT_LENGTH", ""),
    ("SCRIPT_NAME", "/"),
    ("REQUEST_URI", "/"),
    ("DOCUMENT_URI", "/"),
    ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "http"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/1.22.1"),
    ("REMOTE_ADDR", "127.0.0.1"),
    ("REMOTE_PORT", "41234"),
    ("SERVER_ADDR", "127.0.0.1"),
    ("SERVER_PORT", "8080"),
    ("SERVER_NAME", ""),
    ("REDIRECT_STATUS", "200"),
    ("HTTP_HOST", "127.0.0.1:8080"),
    ("HTTP_USER_AGENT", "wrk"),
];

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let dispatch = match args.next().as_deref() {
        Some("in-task") => Dispatch::InTask,
        Some("spawned") => Dispatch::Spawned,
        _ => Dispatch::Adaptive,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(n, dispatch));
}

async fn run(n: usize, dispatch: Dispatch) {
    let app = tower::service_fn(|_req: Request<Body>| async {
        let res = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body("Hello, world!\n".to_string());
        Ok::<_, Infallible>(res.unwrap_or_default())
    });
    let mut server = Server::new();
    server.dispatch(dispatch);
    let conns = server.connections(app);
    let (mut client, ours) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(conns.serve_io(ours, None));

    let mut request = BytesMut::new();
    proto::encode_begin_request(&mut request, 1, 1, 1);
    proto::encode_params(&mut request, 1, PARAMS.iter().copied()).expect("small params");
    proto::encode_stream_end(&mut request, RecordType::Stdin, 1);
    // The response ends with FCGI_END_REQUEST for id 1.
    let end = [1u8, 3, 0, 1, 0, 8, 0, 0];
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    for _ in 0..n {
        client.write_all(&request).await.expect("the server reads");
        buf.clear();
        while !ends_with_end_request(&buf, &end) {
            let got = client.read(&mut chunk).await.expect("the server answers");
            assert!(got > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..got]);
        }
    }
    drop(client);
    let _ = serving.await;
    println!("{n} requests");
}

/// Whether `buf` ends with an `FCGI_END_REQUEST` record (header `end`, 8
/// bytes of body).
fn ends_with_end_request(buf: &[u8], end: &[u8; 8]) -> bool {
    buf.len() >= 16 && buf[buf.len() - 16..buf.len() - 8] == end[..]
}

//! Arbitrary bytes from a web server into a whole FastCGI connection: the
//! driver (one request at a time, or multiplexed), the handler and a small
//! application that reads its body, writes to the error stream and answers.
//!
//! Input layout: byte 0 picks the server's options, byte 1 the piece sizes
//! the wire is written in, the rest is the wire; then the web server's side
//! is shut down. Checks that nothing panics, that the connection ends (with
//! time running fast: every timeout fires), and that what the server writes
//! is well-formed records of the types an application may send, none after
//! the request they belong to has ended.

#![no_main]

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::{Body, Limits, RequestContext};
use gateway_fastcgi::proto::{self, RecordType};
use gateway_fastcgi::{Connections, Server};
use gateway_fuzz::{exchange, runtime};
use http::{Request, Response};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

async fn app(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    if let Some(errors) = (req.extensions().get::<RequestContext>()).map(|cx| cx.errors()) {
        errors.write(b"fuzz: request seen\n");
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let text = match body {
        Ok(b) => format!("read {}\n", b.len()),
        Err(_) => "body error\n".to_owned(),
    };
    Ok(Response::new(Body::new(http_body_util::Full::new(
        Bytes::from(text),
    ))))
}

fn server(
    options: u8,
) -> Connections<tower::util::ServiceFn<fn(Request<Body>) -> AppFuture>, Body> {
    type F = fn(Request<Body>) -> AppFuture;
    let f: F = |req| Box::pin(app(req));
    let mut limits = Limits::default();
    limits
        .max_head_len(if options & 4 != 0 { 256 } else { 1 << 20 })
        .idle_timeout(Duration::from_millis(50))
        .head_read_timeout(Duration::from_millis(50));
    let mut server = Server::new();
    server
        .limits(limits)
        .multiplex(options & 1 != 0)
        .abort_with_reset(options & 2 != 0);
    server.connections(tower::service_fn(f))
}

type AppFuture = std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Checks the server's output: whole records (a final one may be cut off
/// when the connection was aborted) of types an application sends, and each
/// request's end in order: after its empty FCGI_STDOUT only the empty
/// FCGI_STDERR and FCGI_END_REQUEST.
fn check_output(mut out: BytesMut) {
    let mut ending: HashSet<u16> = HashSet::new();
    while let Some(record) = proto::decode(&mut out).expect("the server writes valid records") {
        let id = record.request_id;
        let empty = record.content.is_empty();
        match record.record_type {
            RecordType::GetValuesResult | RecordType::UnknownType => assert_eq!(id, 0),
            RecordType::Stdout => {
                assert_ne!(id, 0);
                assert!(!ending.contains(&id), "FCGI_STDOUT after its end for {id}");
                if empty {
                    ending.insert(id);
                }
            }
            RecordType::Stderr => {
                assert_ne!(id, 0);
                assert!(
                    !ending.contains(&id) || empty,
                    "FCGI_STDERR after the end for {id}"
                );
            }
            RecordType::EndRequest => {
                assert_ne!(id, 0);
                assert_eq!(record.content.len(), 8);
                ending.remove(&id);
            }
            other => panic!("the server sent {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [options, sizes, wire @ ..] = data else {
        return;
    };
    let (options, sizes) = (*options, *sizes);
    runtime().block_on(async {
        let (mut client, conn) = tokio::io::duplex(16 * 1024);
        let serving = tokio::spawn(server(options).serve_io(conn, None));
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let out = exchange(&mut rd, &mut wr, wire, sizes, 64 << 20).await;
        check_output(BytesMut::from(&out[..]));
        let _ = tokio::time::timeout(Duration::from_secs(60), serving).await;
    });
});

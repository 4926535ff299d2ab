//! Arbitrary bytes from a client into a whole connection of the HTTP
//! server (hyper below it, the gateway's connection handling, handler and
//! a small application around it), over an in-memory pipe.
//!
//! Input layout: byte 0 picks the server's options (HTTP/2 with prior
//! knowledge allowed, a small head limit, a small body limit), byte 1 the
//! piece sizes the wire is written in, the rest is the wire; then the
//! client's side is shut down for writing. Checks that nothing panics, that
//! the connection ends (time runs fast: every timeout fires), and that an
//! HTTP/1 answer starts with a status line.

#![no_main]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use gateway_core::Body;
use gateway_core::server::Shutdown;
use gateway_fuzz::{exchange, fuzz_limits, in_memory_connection, runtime};
use gateway_http::Server;
use http::{Request, Response};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

async fn app(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().len();
    let text = match req.into_body().collect().await {
        Ok(b) => format!("path {path} read {}\n", b.to_bytes().len()),
        Err(_) => "body error\n".to_owned(),
    };
    Ok(Response::new(Body::from(Bytes::from(text))))
}

fuzz_target!(|data: &[u8]| {
    let [options, sizes, wire @ ..] = data else {
        return;
    };
    let (options, sizes) = (*options, *sizes);
    runtime().block_on(async {
        let limits = fuzz_limits(options);
        let mut server = Server::new();
        server.limits(limits).http2(options & 1 != 0);
        let conns = server.connections(tower::service_fn(app));
        let shutdown = Shutdown::new();

        let (client, conn) = in_memory_connection(&shutdown);
        let serving = tokio::spawn(async move { conns.serve_connection(conn).await });
        let (mut rd, mut wr) = tokio::io::split(client);
        let out = exchange(&mut rd, &mut wr, wire, sizes, 1 << 20).await;
        if !wire.starts_with(b"PRI ") {
            assert!(
                out.is_empty() || out.starts_with(b"HTTP/1."),
                "not an HTTP/1 response: {:?}",
                String::from_utf8_lossy(&out[..out.len().min(64)])
            );
        }
        tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("the connection's task ends")
            .expect("the connection's task does not panic");
    });
});

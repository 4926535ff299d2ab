//! Arbitrary bytes from a web server into a whole SCGI connection: the
//! server's connection driver, the handler and a small application that
//! reads its body and answers, over an in-memory pipe.
//!
//! Input layout: byte 0 picks the server's options (strict marker, a small
//! head limit, a small body limit), byte 1 the piece sizes the wire is
//! written in, the rest is the wire; then the web server's side is shut
//! down for writing. Checks that nothing panics, that the connection ends
//! (time runs fast: every timeout fires), and that whatever the server
//! writes starts with a CGI `Status:` line.

#![no_main]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use gateway_core::Body;
use gateway_core::server::Shutdown;
use gateway_fuzz::{exchange, fuzz_limits, in_memory_connection, runtime};
use gateway_scgi::Server;
use http::{Request, Response};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

async fn app(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let text = match req.into_body().collect().await {
        Ok(b) => format!("read {}\n", b.to_bytes().len()),
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
        server.limits(limits).strict_marker(options & 1 != 0);
        let conns = server.connections(tower::service_fn(app));
        let shutdown = Shutdown::new();

        let (client, conn) = in_memory_connection(&shutdown);
        let serving = tokio::spawn(async move { conns.serve_connection(conn).await });
        let (mut rd, mut wr) = tokio::io::split(client);
        let out = exchange(&mut rd, &mut wr, wire, sizes, 1 << 20).await;
        assert!(
            out.is_empty() || out.starts_with(b"Status: "),
            "not a CGI response: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(64)])
        );
        tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("the connection's task ends")
            .expect("the connection's task does not panic");
    });
});

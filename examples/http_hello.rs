//! The smallest HTTP server: answers every request with `Hello, world!`.
//!
//! ```text
//! cargo run --example http_hello              # on 127.0.0.1:8000
//! cargo run --example http_hello -- 0.0.0.0:8080
//! cargo run --example http_hello -- unix:/tmp/hello.sock
//! ```
//!
//! The address is a `gateway_http::ListenAddr` (an IP address and port, not
//! a host name). Stop it with Ctrl-C or SIGTERM: requests in flight are
//! finished first. `gateway_http::Server` has the settings this one-liner
//! leaves at their defaults.
//!
//! For `scripts/bench-http.sh`: `HELLO_BYTES=N` answers with N bytes
//! instead, and `HTTP_VECTORED_WRITES=1` serves with
//! `Server::vectored_writes(true)`.

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use gateway_core::Body;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let body = match std::env::var("HELLO_BYTES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) => Bytes::from(vec![b'x'; n]),
        None => Bytes::from_static(b"Hello, world!\n"),
    };
    let app = tower::service_fn(move |_req: Request<Body>| {
        let body = body.clone();
        async move {
            let mut res = Response::new(Full::new(body));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok::<_, Infallible>(res)
        }
    });
    match addr.strip_prefix("unix:") {
        Some(path) => println!(
            "serving on the Unix socket {path}: curl --unix-socket {path} http://localhost/"
        ),
        None => println!("serving on http://{addr}/"),
    }
    let served = if std::env::var_os("HTTP_VECTORED_WRITES").is_some_and(|v| v == "1") {
        match gateway_http::Listener::bind(&addr).await {
            Ok(listener) => {
                gateway_http::Server::new()
                    .vectored_writes(true)
                    .serve(listener, app)
                    .await
            }
            Err(e) => Err(e),
        }
    } else {
        gateway_http::serve(&addr, app).await
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_hello: {e}");
            ExitCode::FAILURE
        }
    }
}

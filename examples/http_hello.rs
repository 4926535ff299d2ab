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
    let app = tower::service_fn(|_req: Request<Body>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok::<_, Infallible>(res)
    });
    match addr.strip_prefix("unix:") {
        Some(path) => println!(
            "serving on the Unix socket {path}: curl --unix-socket {path} http://localhost/"
        ),
        None => println!("serving on http://{addr}/"),
    }
    match gateway_http::serve(&addr, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_hello: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The smallest HTTP server: answers every request with `Hello, world!`.
//!
//! ```text
//! cargo run --example http_hello              # on 127.0.0.1:8000
//! cargo run --example http_hello -- 0.0.0.0:8080
//! cargo run --example http_hello -- unix:/tmp/hello.sock
//! ```
//!
//! Stop it with Ctrl-C: requests in flight are finished first.

use std::convert::Infallible;
use std::process::ExitCode;

use gateway_core::Body;
use http::{Request, Response, header};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let app = tower::service_fn(|_req: Request<Body>| async {
        let res = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body("Hello, world!\n".to_string());
        Ok::<_, Infallible>(res.unwrap_or_default())
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
            eprintln!("http_hello: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

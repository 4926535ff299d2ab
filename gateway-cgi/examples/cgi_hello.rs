//! The smallest CGI program: answers every request with `Hello, world!`.
//!
//! Build it (`cargo build --release -p gateway-cgi --example cgi_hello`)
//! and put `target/release/examples/cgi_hello` where your web server runs
//! CGI programs (see `examples/webservers/cgi/`). By hand:
//!
//! ```text
//! GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET cargo run -p gateway-cgi --example cgi_hello
//! ```
//!
//! It is an example of the `gateway-cgi` package so that it is built with
//! the dependency features a CGI program has: tokio without its
//! multi-thread scheduler or signal handling.

use std::convert::Infallible;
use std::process::ExitCode;

use gateway_core::Body;
use http::{Request, Response, header};

fn main() -> ExitCode {
    let app = tower::service_fn(|_req: Request<Body>| async {
        let res = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body("Hello, world!\n".to_string());
        Ok::<_, Infallible>(res.unwrap_or_default())
    });
    gateway_cgi::run(app)
}

//! The smallest SCGI server: answers every request with `Hello, world!`.
//!
//! ```text
//! cargo run --example scgi_hello                   # 127.0.0.1:4000
//! cargo run --example scgi_hello 127.0.0.1:9000
//! cargo run --example scgi_hello unix:/run/app.sock
//! ```
//!
//! On start it prints where it listens and an nginx snippet that passes
//! requests to it; `examples/webservers/scgi/` has complete configurations
//! for nginx, Apache and lighttpd. Ctrl-C (or SIGTERM) stops it after the
//! requests in flight.

use std::convert::Infallible;
use std::process::ExitCode;

use gateway_core::Body;
use http::{Request, Response, header};

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4000".to_owned());
    let app = tower::service_fn(|_req: Request<Body>| async {
        let res = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body("Hello, world!\n".to_string());
        Ok::<_, Infallible>(res.unwrap_or_default())
    });
    let ready = |listening: &str| {
        println!("SCGI server listening on {listening}");
        println!("nginx:");
        println!("    location / {{");
        println!("        include scgi_params;");
        println!("        scgi_pass {listening};");
        println!("    }}");
    };
    match gateway_scgi::Server::new().run(Some(&addr), app, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scgi_hello: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The smallest SCGI server: answers every request with `Hello, world!`.
//!
//! ```text
//! cargo run --example scgi_hello                   # 127.0.0.1:4000
//! cargo run --example scgi_hello 127.0.0.1:9000
//! cargo run --example scgi_hello unix:/run/app.sock
//! ```
//!
//! The address is any listen address (`HOST:PORT`, `unix:PATH[?mode=OCTAL]`,
//! `fd:0`, `systemd`). On start it prints where it serves and an nginx
//! snippet that passes requests to it; `examples/webservers/scgi/` has
//! complete configurations for nginx, Apache and lighttpd. Ctrl-C (or
//! SIGTERM) stops it after the requests in flight.
//! `SCGI_WORKER_THREADS=N` sets the threads it serves on (each with a
//! single-threaded runtime of its own; default: `gateway_scgi::Server`'s).

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use gateway_scgi::{Body, ListenAddr, Server};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

fn main() -> ExitCode {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4000".to_owned());
    let addr: ListenAddr = match text.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("scgi_hello: {e}");
            return ExitCode::from(2);
        }
    };
    // The same application as the peers of the benchmarks: a static body
    // and header value, nothing allocated per request.
    let app = tower::service_fn(|_req: Request<Body>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok::<_, Infallible>(res)
    });
    println!("SCGI server on {addr}");
    // What nginx's scgi_pass takes: an address, or unix: and a path.
    let pass = match &addr {
        ListenAddr::Tcp(a) => Some(a.to_string()),
        ListenAddr::Unix { path, .. } => Some(format!("unix:{}", path.display())),
        _ => None,
    };
    if let Some(pass) = pass {
        println!("nginx:");
        println!("    location / {{");
        println!("        include scgi_params;");
        println!("        scgi_pass {pass};");
        println!("    }}");
    }
    let threads = std::env::var("SCGI_WORKER_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    match Server::new().worker_threads(threads).run(&addr, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scgi_hello: {e}");
            ExitCode::FAILURE
        }
    }
}

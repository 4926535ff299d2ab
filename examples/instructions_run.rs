//! The servers `scripts/instructions-per-request.sh` runs for its `run-http`
//! and `run-fastcgi` kinds: the `Hello, world!` of `examples/instructions.rs`,
//! served through `gateway::Builder::run`, the entry point applications
//! use, with its defaults (its runtime, and its log subscriber: the request
//! span, the error-log layer, info level).
//!
//! ```text
//! instructions_run serve KIND N PORT_FILE   # KIND: run-http, run-fastcgi
//! ```
//!
//! The server listens on a free loopback port, writes it to `PORT_FILE` once
//! it accepts connections, and exits shortly after its `N`th answer (as the
//! bare hyper server of `examples/instructions.rs` does once its connection
//! ends); `instructions client http|fastcgi N PORT` sends the requests. A
//! program of its own: a second copy of the handler in `instructions`
//! would change how the compiler inlines the code the other servers share,
//! and move their figures.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let protocol = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", "run-http", _, _] => gateway::Protocol::Http,
        ["serve", "run-fastcgi", _, _] => gateway::Protocol::FastCgi,
        _ => {
            eprintln!("usage: instructions_run serve run-http|run-fastcgi N PORT_FILE");
            return ExitCode::from(2);
        }
    };
    let Ok(n) = args[2].parse::<usize>() else {
        eprintln!("instructions_run: N must be a number");
        return ExitCode::from(2);
    };
    match serve(protocol, n, &args[3]) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("instructions_run: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(protocol: gateway::Protocol, n: usize, port_file: &str) -> io::Result<ExitCode> {
    let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
    let addr = gateway::ListenAddr::from(SocketAddr::from(([127, 0, 0, 1], port)));
    // The port is written out once the server accepts connections.
    let port_file = port_file.to_owned();
    std::thread::spawn(move || {
        for _ in 0..600 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let _ = std::fs::write(&port_file, format!("{port}\n"));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let left = Arc::new(AtomicUsize::new(n));
    let app = tower::service_fn(move |_req: Request<gateway::Body>| {
        if left.fetch_sub(1, Ordering::Relaxed) == 1 {
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                std::process::exit(0);
            });
        }
        let mut res = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        std::future::ready(Ok::<_, Infallible>(res))
    });
    Ok(gateway::Builder::new()
        .protocol(protocol)
        .addr(addr)
        .run(app))
}

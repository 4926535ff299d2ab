//! The smallest FastCGI server: answers every request with `Hello, world!`.
//!
//! ```text
//! cargo run --example fastcgi_hello                   # 127.0.0.1:9000
//! cargo run --example fastcgi_hello 127.0.0.1:9001
//! cargo run --example fastcgi_hello unix:/run/app.sock
//! spawn-fcgi -p 9000 -- target/debug/examples/fastcgi_hello -   # socket on fd 0
//! ```
//!
//! The address is a `gateway_fastcgi::ListenAddr` (`fd:0`, `systemd` and
//! `unix:PATH?mode=660` work too). Started with a listening socket on file
//! descriptor 0 (lighttpd's `bin-path`, `spawn-fcgi`) and no argument, or
//! with `-`, it serves on that socket. On start it prints where it listens
//! and an nginx snippet that passes requests to it;
//! `examples/webservers/fastcgi/` has complete configurations for nginx,
//! Apache and lighttpd. Ctrl-C (or SIGTERM) stops it after the requests in
//! flight. `FASTCGI_WORKER_THREADS=N` sets the threads it serves on (each
//! with a single-threaded runtime of its own; default: half the CPUs), and
//! `FASTCGI_WORK_STEALING=1` makes them one multi-threaded runtime
//! (`gateway_fastcgi::Server::work_stealing`); `FASTCGI_MULTIPLEX=1`
//! lets a connection carry several requests at once, and
//! `FASTCGI_DISPATCH=adaptive|in-task|spawned` says where they run
//! (`gateway_fastcgi::Dispatch`; default adaptive). `FASTCGI_METRICS=1`
//! counts requests in a `gateway_core::Metrics` (what
//! `scripts/bench-fastcgi.sh` measures the cost of); with
//! `FASTCGI_STATUS_ADDR=ADDR` as well, they are served over HTTP there.

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use gateway_fastcgi::{Body, Dispatch, ListenAddr, Server};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

fn main() -> ExitCode {
    let addr = match std::env::args().nth(1).as_deref() {
        Some("-") => ListenAddr::Stdin,
        Some(text) => match text.parse() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("fastcgi_hello: {e}");
                return ExitCode::from(2);
            }
        },
        None if fd0_is_listening() => ListenAddr::Stdin,
        None => ListenAddr::Tcp(([127, 0, 0, 1], 9000).into()),
    };
    // The same application as the peers of the benchmarks: a static body
    // and header value, nothing allocated per request.
    let app = tower::service_fn(|_req: Request<Body>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok::<_, Infallible>(res)
    });
    print_nginx_snippet(&addr);
    let threads = std::env::var("FASTCGI_WORKER_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let multiplex = std::env::var("FASTCGI_MULTIPLEX").is_ok_and(|v| v == "1");
    let work_stealing = std::env::var("FASTCGI_WORK_STEALING").is_ok_and(|v| v == "1");
    let dispatch = match std::env::var("FASTCGI_DISPATCH").as_deref() {
        Ok("in-task") => Dispatch::InTask,
        Ok("spawned") => Dispatch::Spawned,
        _ => Dispatch::Adaptive,
    };
    let mut server = Server::new();
    server
        .worker_threads(threads)
        .work_stealing(work_stealing)
        .multiplex(multiplex)
        .dispatch(dispatch);
    if std::env::var("FASTCGI_METRICS").is_ok_and(|v| v == "1") {
        server.metrics(&gateway_fastcgi::Metrics::new());
        if let Some(status) = std::env::var("FASTCGI_STATUS_ADDR")
            .ok()
            .and_then(|a| a.parse().ok())
        {
            server.status_addr(status);
        }
    }
    match server.run(&addr, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fastcgi_hello: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints where the server listens and how nginx reaches it (not for a
/// socket a web server handed over: it knows).
fn print_nginx_snippet(addr: &ListenAddr) {
    let pass = match addr {
        ListenAddr::Tcp(a) => a.to_string(),
        ListenAddr::Unix { path, .. } => format!("unix:{}", path.display()),
        _ => return,
    };
    // stdout may be closed when a web server spawned us; ignore that.
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "FastCGI server listening on {addr}");
    let _ = writeln!(out, "nginx:");
    let _ = writeln!(out, "    location / {{");
    let _ = writeln!(out, "        include fastcgi_params;");
    let _ = writeln!(out, "        fastcgi_keep_conn on;");
    let _ = writeln!(out, "        fastcgi_pass {pass};");
    let _ = writeln!(out, "    }}");
}

/// Whether file descriptor 0 is a listening socket (checked on a throwaway
/// runtime, since the listener needs one).
fn fd0_is_listening() -> bool {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(async { gateway_core::server::Listener::from_stdin().ok() }))
        .flatten()
        .is_some()
}

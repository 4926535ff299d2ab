//! `serve` and `Server::run` stop gracefully on SIGTERM and SIGINT: the
//! request in flight is answered, then they return.
//!
//! One test in its own binary: the signals go to the whole process.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn connect_when_up(addr: SocketAddr) -> TcpStream {
    let started = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(10), "{addr}: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn kill(signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(std::process::id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Sends a request that takes 300 ms, signals the process while it runs,
/// and checks the answer came whole.
fn signal_during_a_request(addr: SocketAddr, signal: &str) {
    // The server is up once it accepts; its signal handlers are in place
    // before it accepts.
    drop(connect_when_up(addr));
    let mut s = connect_when_up(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    kill(signal);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = support::text(&out);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("slept"), "{out}");
}

#[test]
fn serve_and_run_stop_on_signals() {
    // gateway_http::serve on the caller's runtime, stopped by SIGTERM.
    let addr = free_addr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let text_addr = addr.to_string();
    let serving =
        rt.spawn(
            async move { gateway_http::serve(&text_addr, tower::service_fn(support::app)).await },
        );
    signal_during_a_request(addr, "TERM");
    let ended = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), serving).await });
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    assert!(TcpStream::connect(addr).is_err(), "still listening");
    drop(rt);

    // Server::run with a runtime of its own (one thread), stopped by
    // SIGINT.
    let addr = free_addr();
    let listen: gateway_http::ListenAddr = addr.into();
    let run = std::thread::spawn(move || {
        let mut server = gateway_http::Server::new();
        server
            .worker_threads(1)
            .grace_period(Duration::from_secs(5));
        server.run(&listen, tower::service_fn(support::app))
    });
    signal_during_a_request(addr, "INT");
    let started = Instant::now();
    while !run.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "run did not return"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    run.join().unwrap().unwrap();
    assert!(TcpStream::connect(addr).is_err(), "still listening");
}

//! `conformance fastcgi ADDR`: the conformance app as a FastCGI server.

use std::process::ExitCode;

use std::time::Duration;

use gateway_core::Limits;
use gateway_core::Metrics;
use gateway_fastcgi::{ListenAddr, Server};
use gateway_test::conformance::Conformance;

/// Serves `app` over FastCGI on `addr` (`HOST:PORT`, `unix:PATH`, any other
/// [`ListenAddr`], or none or `-` for the listening socket on file
/// descriptor 0, as lighttpd's `bin-path` passes it) until SIGTERM or
/// SIGINT. From the environment: `FCGI_MPXS_CONNS=1` turns on
/// multiplexing, `FCGI_ABORT_WITH_RESET=1` signals a response that fails
/// after its head by resetting the connection
/// ([`Server::abort_with_reset`]), `CONFORMANCE_SLOW_MS=N` logs requests
/// running longer than N ms ([`Limits::slow_request`]),
/// `CONFORMANCE_REUSE_PORT=1` binds a TCP address with `SO_REUSEPORT`
/// ([`Server::reuse_port`], for rolling restarts).
pub(crate) fn run(addr: Option<&str>, app: Conformance, metrics: &Metrics) -> ExitCode {
    let listen = match addr {
        None | Some("-") => ListenAddr::Stdin,
        Some(text) => match text.parse() {
            Ok(listen) => listen,
            Err(e) => {
                eprintln!("conformance fastcgi: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut server = Server::new();
    server
        .metrics(metrics)
        .multiplex(std::env::var("FCGI_MPXS_CONNS").is_ok_and(|v| v == "1"))
        .abort_with_reset(std::env::var("FCGI_ABORT_WITH_RESET").is_ok_and(|v| v == "1"));
    if let Some(ms) = std::env::var("CONFORMANCE_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let mut limits = Limits::default();
        limits.slow_request(Some(Duration::from_millis(ms)));
        server.limits(limits);
    }
    server.reuse_port(reuse_port());
    eprintln!("conformance: FastCGI on {listen}");
    match server.run(&listen, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance fastcgi: {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `CONFORMANCE_REUSE_PORT=1` asks for `SO_REUSEPORT`.
pub(crate) fn reuse_port() -> bool {
    std::env::var("CONFORMANCE_REUSE_PORT").is_ok_and(|v| v == "1")
}

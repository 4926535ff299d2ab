//! `conformance fastcgi ADDR`: the conformance app as a FastCGI server.

use std::process::ExitCode;

use gateway_test::conformance::Conformance;

/// Serves `app` over FastCGI on `addr` (`HOST:PORT`, `unix:PATH`, or none for
/// the listening socket on file descriptor 0, as lighttpd's `bin-path`
/// passes it) until SIGTERM or SIGINT. From the environment:
/// `FCGI_MPXS_CONNS=1` turns on multiplexing, `FCGI_ABORT_WITH_RESET=1`
/// signals a response that fails after its head by resetting the connection
/// ([`gateway_fastcgi::Server::abort_with_reset`]).
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let ready = |listening: &str| eprintln!("conformance: FastCGI on {listening}");
    let mut server = gateway_fastcgi::Server::new(app);
    server.multiplex(std::env::var("FCGI_MPXS_CONNS").is_ok_and(|v| v == "1"));
    server.abort_with_reset(std::env::var("FCGI_ABORT_WITH_RESET").is_ok_and(|v| v == "1"));
    match server.run(addr, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance fastcgi: {}: {e}", addr.unwrap_or("fd 0"));
            ExitCode::FAILURE
        }
    }
}

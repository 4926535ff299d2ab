//! `conformance scgi ADDR`: the conformance app as an SCGI server.

use std::process::ExitCode;

use gateway_test::conformance::Conformance;

/// Serves `app` over SCGI on `addr` (`HOST:PORT`, `unix:PATH`, or none for
/// the listening socket on file descriptor 0) until SIGTERM or SIGINT.
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let ready = |listening: &str| eprintln!("conformance: SCGI on {listening}");
    match gateway_scgi::Server::new().run(addr, app, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance scgi: {}: {e}", addr.unwrap_or("fd 0"));
            ExitCode::FAILURE
        }
    }
}

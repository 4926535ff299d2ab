//! `conformance scgi ADDR`: the conformance app as an SCGI server.

use std::process::ExitCode;

use gateway_core::Metrics;
use gateway_scgi::{ListenAddr, Server};
use gateway_test::conformance::Conformance;

/// Serves `app` over SCGI on `addr` until SIGTERM or SIGINT. `addr` is any
/// listen address (`HOST:PORT`, `unix:PATH`, `fd:0`, `systemd`, …); none
/// is the listening socket on file descriptor 0.
pub(crate) fn run(addr: Option<&str>, app: Conformance, metrics: &Metrics) -> ExitCode {
    let addr: ListenAddr = match addr.unwrap_or("fd:0").parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("conformance scgi: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("conformance: SCGI on {addr}");
    match Server::new().metrics(metrics).run(&addr, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance scgi: {e}");
            ExitCode::FAILURE
        }
    }
}

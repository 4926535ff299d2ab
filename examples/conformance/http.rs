//! `conformance http ADDR`: the conformance app as a HTTP server.

use std::process::ExitCode;

use gateway_http::{ListenAddr, Server};
use gateway_test::conformance::Conformance;

/// Serves `app` over HTTP on `addr` (`HOST:PORT`, `unix:PATH`, `fd:0`,
/// `systemd`) on a current-thread runtime, until SIGTERM or SIGINT.
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let Some(addr) = addr else {
        eprintln!("conformance http: an address is required (HOST:PORT or unix:PATH)");
        return ExitCode::from(2);
    };
    let addr: ListenAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("conformance http: {e}");
            return ExitCode::from(2);
        }
    };
    match Server::new().worker_threads(1).run(&addr, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance http: {e}");
            ExitCode::FAILURE
        }
    }
}

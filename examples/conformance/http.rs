//! `conformance http ADDR`: the conformance app as a HTTP server.

use std::process::ExitCode;

use gateway_test::conformance::Conformance;

/// Serves `app` over HTTP on `addr`.
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let _ = (addr, app);
    eprintln!("conformance: the http mode is not available in this build");
    ExitCode::from(2)
}

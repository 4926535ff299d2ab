//! `conformance scgi ADDR`: the conformance app as a SCGI server.

use std::process::ExitCode;

use gateway_test::conformance::Conformance;

/// Serves `app` over SCGI on `addr`.
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let _ = (addr, app);
    eprintln!("conformance: the scgi mode is not available in this build");
    ExitCode::from(2)
}

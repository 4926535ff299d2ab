//! `conformance fastcgi ADDR`: the conformance app as a FastCGI server.

use std::process::ExitCode;

use gateway_test::conformance::Conformance;

/// Serves `app` over FastCGI on `addr`.
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let _ = (addr, app);
    eprintln!("conformance: the fastcgi mode is not available in this build");
    ExitCode::from(2)
}

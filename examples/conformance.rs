//! The conformance application, served over the protocol named on the
//! command line. The interop suites run it behind real web servers.
//!
//! ```text
//! conformance                 # with GATEWAY_INTERFACE set: one CGI request
//! conformance iis-cgi         # one CGI request as IIS sends it
//! conformance nph             # one NPH CGI request
//! ```
//!
//! The routes are listed in `gateway_test::conformance`. `/file` serves from
//! the directory in `CONFORMANCE_FILES` (default: `examples/conformance-files`).

use std::path::PathBuf;
use std::process::ExitCode;

use gateway_test::conformance::Conformance;

fn files_dir() -> PathBuf {
    std::env::var_os("CONFORMANCE_FILES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/conformance-files"
            ))
        })
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: conformance [iis-cgi | nph]\n\
         With GATEWAY_INTERFACE set and no argument, serves one CGI request."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let app = Conformance::new(files_dir());
    let mode = std::env::args().nth(1);
    match mode.as_deref() {
        Some("iis-cgi") => gateway_cgi::Cgi::iis().run(app),
        Some("nph") => gateway_cgi::Cgi::nph().run(app),
        Some("cgi") => gateway_cgi::run(app),
        None if gateway_cgi::is_cgi() => gateway_cgi::run(app),
        _ => usage(),
    }
}

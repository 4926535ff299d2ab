//! The conformance application, served over the protocol named on the
//! command line. The interop suites run it behind real web servers.
//!
//! ```text
//! conformance                 # with GATEWAY_INTERFACE set: one CGI request
//! conformance iis-cgi         # one CGI request as IIS sends it
//! conformance nph             # one NPH CGI request
//! conformance fastcgi ADDR    # FastCGI server (any listen address; none or - for fd 0)
//! conformance scgi ADDR       # SCGI server (any listen address; none for fd 0)
//! conformance http ADDR       # HTTP server (any listen address), with a WebSocket echo at /ws
//! ```
//!
//! The routes are listed in `gateway_test::conformance`. `/file` serves from
//! the directory in `CONFORMANCE_FILES` (default: `examples/conformance-files`).

use std::path::PathBuf;
use std::process::ExitCode;

use gateway_test::conformance::Conformance;

mod fastcgi;
mod http;
mod scgi;

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
        "usage: conformance [cgi | iis-cgi | nph | fastcgi [ADDR] | scgi ADDR | http ADDR]\n\
         With GATEWAY_INTERFACE set and no argument, serves one CGI request."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let app = Conformance::new(files_dir());
    let mode = std::env::args().nth(1);
    let addr = std::env::args().nth(2);
    match mode.as_deref() {
        Some("fastcgi") => fastcgi::run(addr.as_deref(), app),
        Some("scgi") => scgi::run(addr.as_deref(), app),
        Some("http") => http::run(addr.as_deref(), app),
        Some("iis-cgi") => gateway_cgi::Cgi::iis().run(app),
        Some("nph") => gateway_cgi::Cgi::nph().run(app),
        Some("cgi") => gateway_cgi::run(app),
        None if gateway_cgi::is_cgi() => gateway_cgi::run(app),
        _ => usage(),
    }
}

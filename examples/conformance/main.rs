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
//!
//! `CONFORMANCE_OFFLOAD` puts an offload layer on `/offload`, with that
//! directory as its root: `nginx:URI_PREFIX` (`X-Accel-Redirect`),
//! `lighttpd` (`X-Sendfile`), `lighttpd-old` (`X-LIGHTTPD-send-file`) or
//! `apache` (`X-Sendfile`, the raw path).
//!
//! `CONFORMANCE_LOG=LEVEL` (`error`, `warn`, `info`, `debug`) sends what is
//! logged while a request runs, at that level and above, to the request's
//! error stream (`gateway_core::logging::ErrorLogLayer`), so `/log` lands
//! in the web server's error log. `CONFORMANCE_SLOW_MS=N` sets
//! `Limits::slow_request` for the FastCGI server.
//! `CONFORMANCE_REUSE_PORT=1` binds a TCP address with `SO_REUSEPORT`
//! (FastCGI and HTTP), so a new process can take over the port in a
//! rolling restart (`scripts/scale-out.sh`).
//!
//! The socket servers count their traffic in a `gateway_core::Metrics` and
//! answer `/_gateway/status` (JSON) and `/_gateway/metrics` (OpenMetrics
//! text) with it.

use std::path::PathBuf;
use std::process::ExitCode;

use gateway_core::offload::{OffloadHeader, OffloadLayer, PathEncoding};
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

fn offload_layer(spec: &str, root: PathBuf) -> Option<OffloadLayer> {
    Some(match spec.split_once(':') {
        Some(("nginx", prefix)) => OffloadLayer::nginx(root, prefix),
        _ => match spec {
            "lighttpd" => OffloadLayer::lighttpd(root),
            "lighttpd-old" => {
                OffloadLayer::new(OffloadHeader::XLighttpdSendFile, PathEncoding::PercentUtf8)
                    .map(root.clone(), root)
            }
            "apache" => OffloadLayer::apache(root),
            _ => return None,
        },
    })
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: conformance [cgi | iis-cgi | nph | fastcgi [ADDR] | scgi ADDR | http ADDR]\n\
         With GATEWAY_INTERFACE set and no argument, serves one CGI request."
    );
    ExitCode::from(2)
}

/// Installs the error-log layer at `level`.
fn init_logging(level: &str) -> bool {
    use tracing_subscriber::prelude::*;
    let level = match level {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        _ => return false,
    };
    tracing_subscriber::registry()
        .with(gateway_core::logging::ErrorLogLayer::new().level(level))
        .init();
    true
}

fn main() -> ExitCode {
    if let Some(level) = std::env::var_os("CONFORMANCE_LOG")
        && !init_logging(&level.to_string_lossy())
    {
        eprintln!("conformance: unknown CONFORMANCE_LOG {level:?}");
        return ExitCode::from(2);
    }
    let mut app = Conformance::new(files_dir());
    if let Some(spec) = std::env::var_os("CONFORMANCE_OFFLOAD") {
        match offload_layer(&spec.to_string_lossy(), files_dir()) {
            Some(layer) => app = app.with_offload(layer),
            None => {
                eprintln!("conformance: unknown CONFORMANCE_OFFLOAD {spec:?}");
                return ExitCode::from(2);
            }
        }
    }
    let mode = std::env::args().nth(1);
    let addr = std::env::args().nth(2);
    let metrics = gateway_core::Metrics::new();
    let counted = app.clone().with_metrics(&metrics);
    match mode.as_deref() {
        Some("fastcgi") => fastcgi::run(addr.as_deref(), counted, &metrics),
        Some("scgi") => scgi::run(addr.as_deref(), counted, &metrics),
        Some("http") => http::run(addr.as_deref(), counted, &metrics),
        Some("iis-cgi") => gateway_cgi::Cgi::iis().run(app),
        Some("nph") => gateway_cgi::Cgi::nph().run(app),
        Some("cgi") => gateway_cgi::run(app),
        None if gateway_cgi::is_cgi() => gateway_cgi::run(app),
        _ => usage(),
    }
}

//! `conformance http ADDR`: the conformance app as a HTTP server.

use std::process::ExitCode;

use gateway_core::server::{Listener, Shutdown, signal};
use gateway_test::conformance::Conformance;

/// Serves `app` over HTTP on `addr` (`HOST:PORT` or `unix:PATH`) until
/// SIGTERM or SIGINT.
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let Some(addr) = addr else {
        eprintln!("conformance http: an address is required (HOST:PORT or unix:PATH)");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conformance http: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let listener = match Listener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("conformance http: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = Shutdown::new();
        shutdown.trigger_on(signal());
        let mut server = gateway_http::Server::new();
        server.shutdown(shutdown);
        match server.serve(listener, app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("conformance http: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

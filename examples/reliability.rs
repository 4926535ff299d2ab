//! The server `scripts/reliability.sh` measures: the conformance
//! application (`/hello`, `/echo`, `/stream`, `/bytes`, `/sleep`, `/panic`,
//! …) over FastCGI, SCGI or HTTP, with limits taken from the environment.
//!
//! ```text
//! reliability fastcgi|scgi|http ADDR
//! ```
//!
//! | variable | limit |
//! |---|---|
//! | `RELIABILITY_MAX_CONNECTIONS` | `Limits::max_connections` (default 1024) |
//! | `RELIABILITY_TIMEOUT_MS` | head read, body read, write and idle timeouts (defaults 30/60/60/60 s) |
//! | `RELIABILITY_THREADS` | worker threads (default: one per core) |
//!
//! Served by the `gateway` facade, so it logs to standard error (`RUST_LOG`)
//! and runs until SIGTERM or SIGINT, then lets requests in flight finish.

use std::process::ExitCode;
use std::time::Duration;

use gateway::ListenAddr;
use gateway_core::Limits;
use gateway_test::conformance::Conformance;

fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(protocol), Some(addr)) = (args.next(), args.next()) else {
        eprintln!("usage: reliability fastcgi|scgi|http ADDR");
        return ExitCode::from(2);
    };
    let addr: ListenAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("reliability: {e}");
            return ExitCode::from(2);
        }
    };
    let mut limits = Limits::default();
    let max_connections = var("RELIABILITY_MAX_CONNECTIONS").unwrap_or(1024);
    limits.max_connections(max_connections);
    if let Some(ms) = var::<u64>("RELIABILITY_TIMEOUT_MS") {
        let t = Duration::from_millis(ms);
        limits
            .head_read_timeout(t)
            .body_read_timeout(t)
            .write_timeout(t)
            .idle_timeout(t);
    }
    let threads: Option<usize> = var("RELIABILITY_THREADS");
    let app = Conformance::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/conformance-files"
    ));
    let protocol: gateway::Protocol = match protocol.parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("reliability: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("reliability: {protocol} on {addr}, max {max_connections} connections");
    let mut builder = gateway::Builder::new();
    builder.protocol(protocol).addr(addr).limits(limits);
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    builder.run(app)
}

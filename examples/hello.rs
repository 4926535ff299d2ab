//! Hello, world, behind anything: run it from a shell and it serves HTTP
//! on 127.0.0.1:8000; install it as a CGI program, give it to lighttpd's
//! `bin-path`, start it with systemd socket activation, and it serves that
//! way, unchanged.
//!
//! ```text
//! cargo run --example hello                          # HTTP on 127.0.0.1:8000
//! GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET target/debug/examples/hello   # one CGI request
//! systemd-socket-activate -l 127.0.0.1:9000 target/debug/examples/hello      # FastCGI, SCGI or HTTP on :9000
//! GATEWAY_PROTOCOL=fastcgi GATEWAY_ADDR=unix:/tmp/hello.sock target/debug/examples/hello
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let app = axum::Router::new().fallback(|| async { "Hello, world!\n" });
    gateway::run(app)
}

//! The least a Rust CGI program can do: one write of a fixed response
//! through the standard library's stdout. The Rust baseline for
//! scripts/bench-cgi.sh, built with the same profile and link mode as ours,
//! so the ratio shows what gateway-cgi adds to a Rust program's start-up.
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let response = b"Status: 200 OK\r\n\
        Content-Type: text/plain\r\n\
        Content-Length: 14\r\n\
        \r\n\
        Hello, world!\n";
    match std::io::stdout().lock().write_all(response) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

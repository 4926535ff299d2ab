//! Shared server pieces for the socket backends (FastCGI, SCGI, HTTP):
//! listeners, the accept loop, connection limits and graceful shutdown.
//!
//! Enabled by the `server` feature. The protocol crates use these so that
//! every server binds, accepts, limits and shuts down the same way:
//!
//! - [`ListenAddr`]: where to listen, as text (`127.0.0.1:9000`,
//!   `unix:/run/app.sock?mode=660`, `fd:0`, `systemd`, `systemd:NAME`);
//! - [`Listener`]: TCP, a Unix socket (with permissions), or the listening
//!   socket a web server hands over on file descriptor 0 (lighttpd's
//!   `bin-path`, `spawn-fcgi`);
//! - [`serve`]: the accept loop: it survives `EMFILE`/`ENFILE` (it waits and
//!   retries instead of dying), caps concurrent connections
//!   ([`Limits::max_connections`](crate::Limits::max_connections)) and
//!   answers connections past the cap at once with the protocol's busy
//!   reply ([`Refusal`]), sets
//!   `TCP_NODELAY`, and runs each connection on its own task;
//! - [`Shutdown`]: stop accepting, tell connections to finish (each
//!   connection watches [`Watch::stopping`] between requests and closes idle
//!   keep-alive connections), wait for in-flight requests up to a deadline;
//! - [`linger_close`], [`reset_on_close`], [`nothing_waiting`]: ending a
//!   connection cleanly, or as an abort the peer can see;
//!   [`linger_close_io`], [`nothing_waiting_io`] and [`stall_timeout`] do
//!   the same over any byte stream, for drivers that also serve in-memory
//!   pipes;
//! - [`Stall`]: read and write timeouts that cost nothing while I/O is ready;
//!   [`Timed`]: a reader or writer with those timeouts;
//! - [`SharedInput`], [`close_after`], [`answer_and_close`]: the pieces of a
//!   server for a protocol with one request per connection (SCGI, uwsgi):
//!   the request body read from the socket and the socket taken back after
//!   the response, the close the response's outcome calls for, a canned
//!   answer (400, 503) and the close after it;
//! - [`sniff`], [`sniff_stream`]: the protocol of a connection from its
//!   first bytes, so one socket can serve FastCGI, SCGI and HTTP;
//! - [`ServerOptions`]: the settings every server shares (handler, limits,
//!   shutdown and grace period, worker threads, status page), with one
//!   text for their setters;
//! - [`systemd`]: socket activation and readiness notification;
//! - [`run`], [`serve_until_signal`], [`until_signal`], [`runtime`],
//!   [`listen`], [`parse_addr`]: what every server's `run` and one-line `serve` do
//!   around serving (the runtime, the socket, readiness, signals);
//! - [`serve_status`], [`with_status`]: a [`Metrics`](crate::Metrics)'
//!   status page and OpenMetrics text over plain HTTP on an address of
//!   their own (the servers' `status_addr` setting).

mod accept;
mod addr;
mod any_stream;
mod close;
mod finish;
mod gated;
mod input;
mod listener;
mod options;
mod release;
mod run;
mod shutdown;
mod sniff;
mod stall;
mod status;
pub mod systemd;
mod timed;

pub use accept::{Connection, ConnectionCap, Refusal, serve};
pub use addr::{InvalidListenAddr, ListenAddr};
pub use any_stream::{linger_close_io, nothing_waiting_io, stall_timeout};
pub use close::{LINGER_MAX_BYTES, LINGER_TIME, linger_close, nothing_waiting, reset_on_close};
pub use finish::{answer_and_close, close_after};
pub use gated::Gated;
pub use input::SharedInput;
pub use listener::{BindOptions, DEFAULT_BACKLOG, Listener, Replay, Stream};
pub use options::ServerOptions;
pub use release::MemoryRelease;
pub use run::{
    half_the_cpus, listen, parse_addr, run, run_per_thread, runtime, serve_until_signal,
    spawn_per_thread, until_signal,
};
pub use shutdown::{Shutdown, Watch, signal};
pub use sniff::{Sniffed, sniff, sniff_stream};
pub use stall::Stall;
pub use status::{STATUS_MAX_CONNECTIONS, serve_status, with_status};
pub use timed::Timed;

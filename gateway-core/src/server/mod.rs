//! Shared server pieces for the socket backends (FastCGI, SCGI, HTTP):
//! listeners, the accept loop, connection limits and graceful shutdown.
//!
//! Enabled by the `server` feature. The protocol crates use these so that
//! every server binds, accepts, limits and shuts down the same way:
//!
//! - [`Listener`]: TCP, a Unix socket (with permissions), or the listening
//!   socket a web server hands over on file descriptor 0 (lighttpd's
//!   `bin-path`, `spawn-fcgi`; CHECKLIST F1, Q16);
//! - [`serve`]: the accept loop: it survives `EMFILE`/`ENFILE` (it waits and
//!   retries instead of dying), caps concurrent connections
//!   ([`Limits::max_connections`](crate::Limits::max_connections)), sets
//!   `TCP_NODELAY`, and runs each connection on its own task;
//! - [`Shutdown`]: stop accepting, tell connections to finish (each
//!   connection watches [`Watch::stopping`] between requests and closes idle
//!   keep-alive connections), wait for in-flight requests up to a deadline.

mod accept;
mod listener;
mod shutdown;
mod stall;

pub use accept::{Connection, serve};
pub use listener::{Listener, Stream, UnixOptions};
pub use shutdown::{Shutdown, Watch, signal};
pub use stall::Stall;

//! The FastCGI server: listeners, configuration, and the one-line
//! [`serve`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use gateway_core::server::{self, Listener, Shutdown, Watch};
use gateway_core::{AppBody, Application, Body, Handler};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tower::Service;

use crate::conn::{self, Shared};
use crate::gateway::ErrorOutput;
use crate::proto::Config;
use crate::refuse;

/// A FastCGI application server.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use gateway_core::server::Listener;
///
/// let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
/// });
/// let listener = Listener::bind("127.0.0.1:9000").await?;
/// gateway_fastcgi::Server::new(app).multiplex(true).serve(listener).await
/// # }
/// ```
///
/// Defaults: no multiplexing (what nginx, Apache httpd and lighttpd expect;
/// a second request on a busy connection gets `FCGI_CANT_MPX_CONN`), as many
/// requests at once as [`Limits::max_connections`](gateway_core::Limits)
/// allows connections (more get `FCGI_OVERLOADED`), the error stream in
/// `FCGI_STDERR` records, and the web server allow-list from the
/// `FCGI_WEB_SERVER_ADDRS` environment variable, if set. Limits and timeouts
/// come from the [`Handler`]'s [`Limits`](gateway_core::Limits):
/// `max_head_len` caps a request's parameters, `head_read_timeout` bounds
/// the wait for a whole request head (`FCGI_BEGIN_REQUEST` and its
/// parameters) from its first byte, `body_read_timeout` each wait of the
/// application for body data (then 408 and the connection closes),
/// `idle_timeout` the wait between requests on a kept-alive connection,
/// `write_timeout` each write, and `max_requests_per_connection` what it
/// says. Past `max_connections`, a new connection is accepted and its first
/// request answered `FCGI_OVERLOADED` at once (then it is closed), so a web
/// server never waits in the listen backlog for a slot.
#[derive(Debug, Clone)]
pub struct Server<S> {
    app: S,
    handler: Handler,
    multiplex: bool,
    max_requests: Option<usize>,
    errors: ErrorOutput,
    allowed: Option<Vec<IpAddr>>,
    shutdown: Shutdown,
    capacity: Option<Arc<Semaphore>>,
    reset_on_abort: bool,
    worker_threads: usize,
}

impl<S, B> Server<S>
where
    // The Response projection ties B to S (an impl's parameters must be
    // constrained).
    S: Application<B> + Service<Request<Body>, Response = Response<B>>,
    B: AppBody,
{
    /// A server for `app` with the defaults.
    pub fn new(app: S) -> Self {
        Server {
            app,
            handler: Handler::new(),
            multiplex: false,
            max_requests: None,
            errors: ErrorOutput::default(),
            allowed: web_server_addrs_from_env(),
            shutdown: Shutdown::new(),
            capacity: None,
            reset_on_abort: false,
            worker_threads: 0,
        }
    }

    /// The threads [`run`](Server::run) serves on: 0 (the default) for one
    /// per CPU, 1 for a single-threaded runtime, which costs the least per
    /// connection (no hand-over between threads: about two thirds of the CPU
    /// time per request behind nginx without keep-alive, measured with
    /// `scripts/bench-fastcgi.sh`) but runs the application on one core.
    pub fn worker_threads(&mut self, n: usize) -> &mut Self {
        self.worker_threads = n;
        self
    }

    /// The handler (error page, limits, mount point).
    pub fn handler(&mut self, handler: Handler) -> &mut Self {
        self.handler = handler;
        self.capacity = None;
        self
    }

    /// Whether a connection may carry several requests at once
    /// (`FCGI_MPXS_CONNS`). Default false.
    pub fn multiplex(&mut self, yes: bool) -> &mut Self {
        self.multiplex = yes;
        self
    }

    /// How many requests run at once across all connections
    /// (`FCGI_MAX_REQS`); more are answered `FCGI_OVERLOADED`. Default: the
    /// connection limit.
    pub fn max_requests(&mut self, n: usize) -> &mut Self {
        self.max_requests = Some(n.max(1));
        self.capacity = None;
        self
    }

    /// Where the application's error stream goes. Default
    /// [`ErrorOutput::Records`].
    pub fn error_output(&mut self, errors: ErrorOutput) -> &mut Self {
        self.errors = errors;
        self
    }

    /// Accepts connections only from these web server addresses (TCP peers;
    /// with a list set, Unix-socket connections are refused too). `None`
    /// accepts every connection. Default: the comma-separated list in
    /// `FCGI_WEB_SERVER_ADDRS`, when set.
    pub fn web_server_addrs(&mut self, addrs: Option<Vec<IpAddr>>) -> &mut Self {
        self.allowed = addrs;
        self
    }

    /// The shutdown that stops this server: trigger it to stop accepting,
    /// finish in-flight requests up to its deadline, answer new requests
    /// `FCGI_OVERLOADED` meanwhile and close idle connections.
    pub fn shutdown(&mut self, shutdown: Shutdown) -> &mut Self {
        self.shutdown = shutdown;
        self
    }

    /// How a response that fails after its head was sent is ended. By
    /// default (false) the output produced so far is sent, then the end of
    /// the response and `FCGI_END_REQUEST` with appStatus 1 (protocolStatus
    /// `FCGI_REQUEST_COMPLETE`), as the specification describes, and a
    /// `FCGI_KEEP_CONN` connection stays open. Web servers do not look at
    /// appStatus, though: they end the client's response normally, so a
    /// response without Content-Length (chunked or close-delimited) looks
    /// complete to the client.
    ///
    /// With true, the connection is reset instead, without the end of the
    /// response (what a crashed application does), once the web server has
    /// sent the rest of the request (at most 2 s later). The web server then
    /// sees its upstream close prematurely and cuts the client's response
    /// off (nginx and Apache end a chunked response without its last
    /// chunk), so the client can tell the response is truncated, whatever
    /// its framing. The price is the connection, and a web server that holds
    /// a small response whole (lighttpd) may still send it as if complete.
    /// A declared Content-Length shows the truncation either way. The crate's
    /// README has a table of what nginx, Apache and lighttpd show in both
    /// cases.
    pub fn abort_with_reset(&mut self, yes: bool) -> &mut Self {
        self.reset_on_abort = yes;
        self
    }

    /// What `FCGI_GET_VALUES` reports and the protocol layer enforces.
    pub fn protocol_config(&self) -> Config {
        let limits = self.handler.limits();
        let conns = limits.get_max_connections();
        let reqs = self.max_requests.unwrap_or(conns);
        let mut config = Config::new();
        config
            .max_conns(u32::try_from(conns).unwrap_or(u32::MAX))
            .max_reqs(u32::try_from(reqs).unwrap_or(u32::MAX))
            .mpxs_conns(self.multiplex)
            .max_params_len(limits.get_max_head_len());
        config
    }

    fn shared(&mut self) -> Arc<Shared<S>> {
        let config = self.protocol_config();
        let capacity = self
            .capacity
            .get_or_insert_with(|| {
                let n = self
                    .max_requests
                    .unwrap_or(self.handler.limits().get_max_connections());
                Arc::new(Semaphore::new(n.max(1)))
            })
            .clone();
        Arc::new(Shared {
            app: self.app.clone(),
            handler: self.handler.clone(),
            config,
            errors: self.errors,
            capacity,
            reset_on_abort: self.reset_on_abort,
        })
    }

    /// Serves connections from `listener` until the shutdown is triggered.
    ///
    /// A connection past [`Limits::max_connections`](gateway_core::Limits)
    /// is refused at once: its records are read (for at most a second and a
    /// few KiB) up to its `FCGI_BEGIN_REQUEST`, which is answered
    /// `FCGI_END_REQUEST` with protocolStatus `FCGI_OVERLOADED`; an
    /// `FCGI_GET_VALUES` before it is answered as usual. Then the connection
    /// is closed, reading what the web server still sends for a moment so
    /// that the answer is not lost to a reset. A peer outside the allow-list
    /// is closed without an answer.
    ///
    /// # Errors
    ///
    /// Only a failure of the listener itself; connection errors are logged
    /// at debug level and end that connection only.
    pub async fn serve(&mut self, listener: Listener) -> io::Result<()> {
        let shared = self.shared();
        let allowed: Option<Arc<[IpAddr]>> = self.allowed.clone().map(Into::into);
        let limits = self.handler.limits();
        let max_connections = limits.get_max_connections();
        let refusal = {
            let allowed = allowed.clone();
            let config = shared.config;
            let write_timeout = limits.get_write_timeout();
            server::Refusal::new(move |stream: server::Stream| {
                let allowed = allowed.clone();
                async move {
                    let peer = stream.peer_addr();
                    // No answer at all for a peer that may not connect.
                    if is_allowed(allowed.as_deref(), peer) {
                        refuse::refuse(stream, config, write_timeout).await;
                    }
                }
            })
        };
        server::serve(
            listener,
            max_connections,
            self.shutdown.clone(),
            refusal,
            move |c: server::Connection| {
                let shared = shared.clone();
                let allowed = allowed.clone();
                async move {
                    if !is_allowed(allowed.as_deref(), c.peer_addr) {
                        tracing::debug!(peer = ?c.peer_addr, "FastCGI connection from a web server not in FCGI_WEB_SERVER_ADDRS closed");
                        return;
                    }
                    conn::serve(
                        shared,
                        c.stream,
                        c.peer_addr,
                        c.local_addr,
                        Some(c.shutdown),
                        server::reset_on_close,
                    )
                    .await;
                }
            },
        )
        .await
    }

    /// Binds `addr` (see [`listen`]; a socket it creates gets the listen
    /// backlog of [`Limits::listen_backlog`](gateway_core::Limits)), calls
    /// `ready` with the address it listens on, and serves on a new runtime (see
    /// [`worker_threads`](Server::worker_threads)) until SIGINT or
    /// SIGTERM (or this server's shutdown): the whole `main` of a FastCGI
    /// application.
    ///
    /// # Errors
    ///
    /// The runtime cannot start, binding fails, or the listener fails.
    pub fn run(&mut self, addr: Option<&str>, ready: impl FnOnce(&str)) -> io::Result<()> {
        let rt = match self.worker_threads {
            1 => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            n => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if n > 1 {
                    b.worker_threads(n);
                }
                b.enable_all().build()?
            }
        };
        rt.block_on(async {
            let backlog = self.handler.limits().get_listen_backlog();
            let listener = listen_with_backlog(addr, backlog).await?;
            ready(&listener.local_addr_string());
            self.shutdown.trigger_on(server::signal());
            self.serve(listener).await
        })
    }

    /// Serves one connection that is already open (any byte stream: a
    /// socket accepted elsewhere, an in-memory pipe in tests) until it
    /// closes. The allow-list is not applied here.
    pub async fn serve_connection<T>(&mut self, io: T, peer_addr: Option<SocketAddr>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let shared = self.shared();
        let watch: Watch = self.shutdown.watch();
        conn::serve(shared, io, peer_addr, None, Some(watch), |_| {}).await;
    }

    /// A future serving one open connection, independent of `self` (to
    /// spawn).
    pub fn connection<T>(
        &mut self,
        io: T,
        peer_addr: Option<SocketAddr>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let shared = self.shared();
        let watch: Watch = self.shutdown.watch();
        conn::serve(shared, io, peer_addr, None, Some(watch), |_| {})
    }
}

/// Whether a connection from `peer` may be served under `allowed`.
fn is_allowed(allowed: Option<&[IpAddr]>, peer: Option<SocketAddr>) -> bool {
    match (allowed, peer) {
        (None, _) => true,
        (Some(list), Some(peer)) => {
            let ip = match peer.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            list.contains(&ip)
        }
        (Some(_), None) => false,
    }
}

/// Parses `FCGI_WEB_SERVER_ADDRS`: comma-separated addresses; entries that do
/// not parse are logged and skipped (so a list of only bad entries refuses
/// every connection rather than allowing all).
pub fn parse_web_server_addrs(list: &str) -> Vec<IpAddr> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                tracing::warn!(
                    entry = s,
                    "FCGI_WEB_SERVER_ADDRS entry is not an IP address"
                );
                None
            }
        })
        .collect()
}

fn web_server_addrs_from_env() -> Option<Vec<IpAddr>> {
    std::env::var("FCGI_WEB_SERVER_ADDRS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_web_server_addrs(&v))
}

/// Opens the listener for `addr`: `HOST:PORT`, `unix:PATH`, or `None` (or
/// `-`) for the listening socket a web server passes on file descriptor 0
/// (lighttpd's `bin-path`, `spawn-fcgi`; F1). A socket bound here gets the
/// default listen backlog ([`server::DEFAULT_BACKLOG`]); for another one,
/// bind with [`Listener::bind_with`] and [`server::BindOptions::backlog`],
/// or use [`Server::run`], which takes
/// [`Limits::listen_backlog`](gateway_core::Limits).
///
/// # Errors
///
/// Binding fails, or file descriptor 0 is not a listening socket.
pub async fn listen(addr: Option<&str>) -> io::Result<Listener> {
    listen_with_backlog(addr, server::DEFAULT_BACKLOG).await
}

/// [`listen`], with `backlog` for a socket bound here.
async fn listen_with_backlog(addr: Option<&str>, backlog: u32) -> io::Result<Listener> {
    match addr {
        None | Some("-") => Listener::from_stdin()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address given and file descriptor 0 is not a listening socket",
            )
        }),
        Some(addr) => {
            let mut opts = server::BindOptions::new();
            opts.remove_stale(true).backlog(backlog);
            Listener::bind_with(addr, &opts).await
        }
    }
}

/// Serves `app` over FastCGI on `addr` (`HOST:PORT` or `unix:PATH`; `-`
/// for the listening socket on file descriptor 0) until SIGINT or SIGTERM,
/// with the defaults of [`Server`].
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
/// });
/// gateway_fastcgi::serve("127.0.0.1:9000", app).await
/// # }
/// ```
///
/// # Errors
///
/// Binding fails, or `-` is given and file descriptor 0 is not a listening
/// socket.
pub async fn serve<S, B>(addr: &str, app: S) -> io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let listener = listen(Some(addr)).await?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on(server::signal());
    Server::new(app).shutdown(shutdown).serve(listener).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// F1: the allow-list matches IPv4 (also v4-mapped IPv6) and refuses
    /// peers without an address (Unix sockets) once set.
    #[test]
    fn allow_list_f1() {
        let list = parse_web_server_addrs("127.0.0.1, 10.0.0.2,bogus");
        assert_eq!(list.len(), 2);
        let ok: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:5000".parse().unwrap();
        let other: SocketAddr = "10.0.0.3:5000".parse().unwrap();
        assert!(is_allowed(Some(&list), Some(ok)));
        assert!(is_allowed(Some(&list), Some(mapped)));
        assert!(!is_allowed(Some(&list), Some(other)));
        assert!(!is_allowed(Some(&list), None));
        assert!(is_allowed(None, None));
    }
}

//! The FastCGI server: its settings ([`Server`]), the server joined with an
//! application ([`Connections`]), and the one-line [`serve`].

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use gateway_core::server::{
    self, Connection, ConnectionCap, ListenAddr, Listener, MemoryRelease, Refusal, ServerOptions,
    Shutdown, Stream,
};
use gateway_core::{AppBody, Application, ErrorStream, Metrics};
#[cfg(doc)]
use gateway_core::{Handler, Limits};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::dispatch::{self, Shared};
use crate::proto::Config;
use crate::refuse;
use crate::strategy::Dispatch;

/// A FastCGI application server's settings.
///
/// A `Server` holds no application: [`run`](Server::run) and
/// [`serve`](Server::serve) take one, and [`connections`](Server::connections)
/// joins one to the settings for an accept loop of your own. The SCGI and
/// HTTP servers of this workspace have the same methods, so moving an
/// application to another protocol changes the crate's name (and drops the
/// FastCGI-only settings: [`multiplex`](Server::multiplex),
/// [`max_requests`](Server::max_requests),
/// [`web_server_addrs`](Server::web_server_addrs),
/// [`abort_with_reset`](Server::abort_with_reset),
/// [`protocol_config`](Server::protocol_config)).
///
/// ```no_run
/// use gateway_fastcgi::{ListenAddr, Server};
///
/// let app = tower::service_fn(|_req: http::Request<gateway_fastcgi::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
/// });
/// let addr: ListenAddr = "127.0.0.1:9000".parse().expect("a listen address");
/// Server::new().worker_threads(1).run(&addr, app)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Defaults: no multiplexing (what nginx, Apache httpd and lighttpd expect;
/// a second request on a busy connection gets `FCGI_CANT_MPX_CONN`), as many
/// requests at once as [`Limits::max_connections`] allows connections (more
/// get `FCGI_OVERLOADED`), the application's error stream in `FCGI_STDERR`
/// records, and the web server allow-list from the `FCGI_WEB_SERVER_ADDRS`
/// environment variable, if set. Limits and timeouts come from the
/// [`Handler`]'s [`Limits`]: `max_head_len` caps a request's parameters,
/// `head_read_timeout` bounds the wait for a whole request head
/// (`FCGI_BEGIN_REQUEST` and its parameters) from its first byte,
/// `body_read_timeout` each wait of the application for body data (then 408
/// and the connection closes), `idle_timeout` the wait between requests on a
/// kept-alive connection, `write_timeout` each write, `listen_backlog` the
/// backlog of a socket [`run`](Server::run) binds, and
/// `max_requests_per_connection` what it says. Past `max_connections`, a new
/// connection is accepted and its first request answered `FCGI_OVERLOADED`
/// at once (then it is closed), so a web server never waits in the listen
/// backlog for a slot.
#[derive(Clone, Debug)]
pub struct Server {
    options: ServerOptions,
    multiplex: bool,
    max_requests: Option<usize>,
    error_stream: Option<ErrorStream>,
    allowed: Option<Vec<IpAddr>>,
    reset_on_abort: bool,
    dispatch: Dispatch,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with the defaults (see [`Server`]).
    pub fn new() -> Self {
        Server {
            options: ServerOptions::new(),
            multiplex: false,
            max_requests: None,
            error_stream: None,
            allowed: web_server_addrs_from_env(),
            reset_on_abort: false,
            dispatch: Dispatch::default(),
        }
    }

    gateway_core::server_options_setters!(
        options,
        "its connections, the connections refused past the connection limit, \
         FastCGI protocol errors, request heads not received in time, and \
         requests answered `FCGI_OVERLOADED`",
        threads: "half the CPUs, at least one (one per CPU with \
            [`work_stealing`](Self::work_stealing)). The web server in front \
            needs CPU time too, about as much per request as this server \
            for small requests, and a thread with fewer connections sleeps \
            and is woken more often per request. On two CPUs behind nginx, \
            one thread served as many kept-alive requests per second as two, \
            with a third less CPU time per request (and a seventh less of \
            nginx's, which wakes it less often), and between a tenth fewer \
            and a tenth more from run to run with a connection per request. \
            An application whose requests keep a core busy, on a \
            machine of its own, wants one per CPU"
    );

    /// Where the application's error stream goes. By default each request's
    /// error stream becomes its `FCGI_STDERR` records, which the web server
    /// writes to its error log (nginx, Apache, lighttpd). With a stream set,
    /// every request writes there instead and no `FCGI_STDERR` record is
    /// sent: [`ErrorStream::log`] for web servers that show that output to
    /// the client or take it for a failure (IIS).
    pub fn error_stream(&mut self, errors: ErrorStream) -> &mut Self {
        self.error_stream = Some(errors);
        self
    }

    /// Whether a connection may carry several requests at once
    /// (`FCGI_MPXS_CONNS`). Default false: web servers send one request at
    /// a time per connection.
    pub fn multiplex(&mut self, yes: bool) -> &mut Self {
        self.multiplex = yes;
        self
    }

    /// Where the applications of a connection's requests run (see
    /// [`Dispatch`]). Default: [`Dispatch::Adaptive`], in the connection's
    /// task while a request is the only one in flight on its connection,
    /// each on a task of its own while several are.
    pub fn dispatch(&mut self, dispatch: Dispatch) -> &mut Self {
        self.dispatch = dispatch;
        self
    }

    /// The most requests running at once across all connections
    /// (`FCGI_MAX_REQS`, as `FCGI_GET_VALUES` reports it); a request past it
    /// is answered `FCGI_OVERLOADED` on its own connection. Default: the
    /// connection limit. (The cap on requests over the life of one
    /// connection is [`Limits::max_requests_per_connection`].)
    pub fn max_requests(&mut self, n: usize) -> &mut Self {
        self.max_requests = Some(n.max(1));
        self
    }

    /// Accepts connections only from these web server addresses (TCP peers;
    /// with a list set, Unix-socket connections are refused too). `None`
    /// accepts every connection. Default: the comma-separated list in
    /// `FCGI_WEB_SERVER_ADDRS`, when set (see [`parse_web_server_addrs`]).
    pub fn web_server_addrs(&mut self, addrs: Option<Vec<IpAddr>>) -> &mut Self {
        self.allowed = addrs;
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
        let limits = self.options.get_handler().limits();
        let conns = limits.get_max_connections();
        let reqs = self.max_requests.unwrap_or(conns);
        let mut config = Config::new();
        config
            .max_conns(u32::try_from(conns).unwrap_or(u32::MAX))
            .max_reqs(u32::try_from(reqs).unwrap_or(u32::MAX))
            .mpxs_conns(self.multiplex)
            .max_params_len(limits.get_max_head_len())
            .head_read_timeout(limits.get_head_read_timeout())
            .idle_timeout(limits.get_idle_timeout())
            .body_read_timeout(limits.get_body_read_timeout())
            .write_timeout(limits.get_write_timeout())
            .max_requests_per_connection(limits.get_max_requests_per_connection());
        config
    }

    /// This server with `app`: what serves each accepted connection. Its
    /// clones share one count of running requests (the
    /// [`max_requests`](Server::max_requests) cap).
    pub fn connections<S, B>(&self, app: S) -> Connections<S, B>
    where
        S: Application<B>,
        B: AppBody,
    {
        let handler = self.options.get_handler();
        let limits = handler.limits();
        let capacity = self
            .max_requests
            .unwrap_or(limits.get_max_connections())
            .clamp(1, Semaphore::MAX_PERMITS);
        Connections {
            shared: Arc::new(Shared {
                app,
                handler: handler.clone(),
                config: self.protocol_config(),
                errors: self.error_stream.clone(),
                capacity: Arc::new(Semaphore::new(capacity)),
                reset_on_abort: self.reset_on_abort,
                dispatch: self.dispatch,
            }),
            allowed: self.allowed.clone().map(Into::into),
            shutdown: self.shutdown_handle(),
            release: self.options.get_release_memory_after_bursts().clone(),
            _body: PhantomData,
        }
    }

    /// Serves `app` on `listener`, on the caller's runtime, until the
    /// [shutdown](Server::shutdown) is triggered and the requests in flight
    /// have finished (or the [grace period](Server::grace_period) ran out).
    /// The same as `self.connections(app).serve(listener)`: see
    /// [`Connections::serve`].
    ///
    /// # Errors
    ///
    /// Only a failure of the listener itself; connection errors are logged
    /// at debug level and end that connection only.
    pub async fn serve<S, B>(&self, listener: Listener, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        self.connections(app).serve(listener).await
    }

    /// The whole `main` of a FastCGI application: adopts the sockets systemd
    /// passed (before any thread starts), starts a runtime (see
    /// [`worker_threads`](Server::worker_threads)), opens `addr` (a socket
    /// bound here gets the backlog of [`Limits::listen_backlog`]), logs
    /// `FastCGI server listening on ADDR` at info level, tells systemd it is
    /// ready (when started with `NOTIFY_SOCKET`), and serves `app` until
    /// SIGINT, SIGTERM or the [shutdown](Server::shutdown), then lets the
    /// requests in flight finish.
    ///
    /// # Errors
    ///
    /// The runtime cannot start, the address cannot be opened (a port in
    /// use, file descriptor 0 not a listening socket, no such systemd
    /// socket), or the listener fails.
    pub fn run<S, B>(&self, addr: &ListenAddr, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        let connections = self.connections(app);
        let options = self.options.or_worker_threads(server::half_the_cpus());
        options.run("FastCGI", addr, move |listener, cap| {
            let connections = connections.clone();
            async move { connections.serve_capped(listener, cap).await }
        })
    }
}

/// A [`Server`] with its application: serves accepted connections one by
/// one, for an accept loop of your own, or for one socket serving several
/// protocols (tell them apart with [`gateway_core::server::sniff_stream`]
/// and hand each FastCGI connection here).
///
/// Cheap to clone: the clones share the application, the settings and the
/// count of running requests.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use gateway_core::server::Refusal;
/// use gateway_fastcgi::{Listener, Server};
///
/// let app = tower::service_fn(|_req: http::Request<gateway_fastcgi::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
/// });
/// let server = Server::new();
/// let connections = server.connections(app);
/// let listener = Listener::bind("127.0.0.1:9000").await?;
/// // What `connections.serve(listener)` does:
/// let refusal: Refusal = connections.refusal();
/// gateway_core::server::serve(listener, 1024, server.shutdown_handle(), refusal, move |conn| {
///     let connections = connections.clone();
///     async move { connections.serve_connection(conn).await }
/// })
/// .await
/// # }
/// ```
pub struct Connections<S, B> {
    shared: Arc<Shared<S>>,
    allowed: Option<Arc<[IpAddr]>>,
    shutdown: Shutdown,
    release: MemoryRelease,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> Clone for Connections<S, B> {
    fn clone(&self) -> Self {
        Connections {
            shared: self.shared.clone(),
            allowed: self.allowed.clone(),
            shutdown: self.shutdown.clone(),
            release: self.release.clone(),
            _body: PhantomData,
        }
    }
}

impl<S, B> fmt::Debug for Connections<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("handler", &self.shared.handler)
            .field("config", &self.shared.config)
            .field("allowed", &self.allowed)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl<S, B> Connections<S, B>
where
    S: Application<B>,
    B: AppBody,
{
    /// Serves one accepted connection until it closes: its requests one
    /// after the other (or at once, with [`Server::multiplex`]), until the
    /// web server closes it, a limit or a protocol error ends it, or the
    /// connection's shutdown watch reports that the server is stopping
    /// (then it finishes its request in flight and closes). A peer outside
    /// the [allow-list](Server::web_server_addrs) is closed at once.
    ///
    /// The future does not borrow `self`, so it can be spawned.
    pub fn serve_connection(
        &self,
        conn: Connection,
    ) -> impl Future<Output = ()> + Send + use<S, B> {
        let Connection {
            stream,
            peer_addr,
            local_addr,
            shutdown,
            accepted,
            ..
        } = conn;
        let allowed = is_allowed(self.allowed.as_deref(), peer_addr);
        if !allowed {
            tracing::debug!(peer = ?peer_addr, "FastCGI connection from a web server not in FCGI_WEB_SERVER_ADDRS closed");
        }
        // Until its first bytes, and between requests, a connection holds
        // no more than its socket: the dispatcher (buffers, protocol state)
        // is made (and boxed) once it has something to read (see
        // `dispatch::serve`). Its first request head is due within the head
        // read timeout of the accept. (The future is made here rather than
        // in an `async` body, which would keep room for `conn` and for a
        // copy of the future as long as the connection lives.)
        dispatch::serve(
            self.shared.clone(),
            allowed.then_some(stream),
            peer_addr,
            local_addr,
            accepted,
            Some(shutdown),
            server::reset_on_close,
            allowed
                .then(|| self.shared.handler.metrics().map(Metrics::connection))
                .flatten(),
        )
    }

    /// Answers a connection the server has no room for (past
    /// [`Limits::max_connections`]): its records are read (for at most a
    /// second and a few KiB) up to its `FCGI_BEGIN_REQUEST`, which is
    /// answered `FCGI_END_REQUEST` with protocolStatus `FCGI_OVERLOADED`; an
    /// `FCGI_GET_VALUES` before it is answered as usual. Then the connection
    /// is closed, reading what the web server still sends for a moment so
    /// that the answer is not lost to a reset. A peer outside the
    /// [allow-list](Server::web_server_addrs) gets no answer.
    pub async fn refuse(&self, stream: Stream) {
        if is_allowed(self.allowed.as_deref(), stream.peer_addr()) {
            let write_timeout = self.shared.handler.limits().get_write_timeout();
            gateway_core::metrics::note(
                self.shared.handler.metrics(),
                gateway_core::Failure::Refused,
            );
            refuse::refuse(stream, self.shared.config, write_timeout).await;
        }
    }

    /// [`refuse`](Connections::refuse) as the [`Refusal`] of
    /// [`gateway_core::server::serve`].
    pub fn refusal(&self) -> Refusal {
        let this = self.clone();
        Refusal::new(move |stream| {
            let this = this.clone();
            async move { this.refuse(stream).await }
        })
    }

    /// Accepts connections on `listener` and serves each on its own task
    /// ([`serve_connection`](Connections::serve_connection)), refusing those
    /// past [`Limits::max_connections`] ([`refuse`](Connections::refuse)),
    /// until the server's shutdown is triggered; then waits for the
    /// requests in flight up to the grace period.
    ///
    /// # Errors
    ///
    /// Only a failure of the listener itself; connection errors are logged
    /// at debug level and end that connection only.
    pub async fn serve(&self, listener: Listener) -> io::Result<()> {
        self.serve_capped(listener, self.connection_cap()).await
    }

    /// A new cap on connections for an accept loop serving these
    /// connections: at most [`Limits::max_connections`] at once, running
    /// the server's `release_memory_after_bursts` once a burst of
    /// connections has ended. [`serve`](Connections::serve) makes one
    /// per listener; give one to several accept loops of your own
    /// ([`gateway_core::server::serve`]) to cap them together.
    pub fn connection_cap(&self) -> ConnectionCap {
        ConnectionCap::new(self.shared.handler.limits().get_max_connections())
            .release_memory_after_bursts(self.release.clone())
    }

    /// As [`serve`](Connections::serve), with the connection cap given:
    /// one shared with other accept loops (those of other threads
    /// serving copies of the same socket, say, to cap them together), or
    /// a number.
    ///
    /// # Errors
    ///
    /// As [`serve`](Connections::serve).
    pub async fn serve_capped(
        &self,
        listener: Listener,
        max_connections: impl Into<ConnectionCap>,
    ) -> io::Result<()> {
        let this = Arc::new(self.clone());
        server::serve(
            listener,
            max_connections,
            self.shutdown.clone(),
            self.refusal(),
            move |conn| this.serve_connection(conn),
        )
        .await
    }

    /// Serves one connection over any byte stream (a socket opened
    /// elsewhere, an in-memory pipe in tests) until it closes, as
    /// [`serve_connection`](Connections::serve_connection) does, with the
    /// server's shutdown. `peer_addr` is what the application sees as the
    /// web server's address. The allow-list is not applied, and a response
    /// that fails after its head cannot reset the stream (it is closed
    /// instead). The future does not borrow `self`, so it can be spawned.
    pub fn serve_io<T>(
        &self,
        io: T,
        peer_addr: Option<SocketAddr>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        dispatch::serve(
            self.shared.clone(),
            Some(io),
            peer_addr,
            None,
            tokio::time::Instant::now(),
            Some(self.shutdown.watch()),
            |_| {},
            self.shared.handler.metrics().map(Metrics::connection),
        )
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

/// Serves `app` over FastCGI on `addr` with the defaults of [`Server`],
/// on the caller's runtime, until SIGINT or SIGTERM; then lets the requests
/// in flight finish. `addr` is a [`ListenAddr`]: `HOST:PORT`,
/// `unix:PATH[?mode=OCTAL]`, `fd:0` (the listening socket a web server
/// passes on file descriptor 0), `systemd` or `systemd:NAME`.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let app = tower::service_fn(|_req: http::Request<gateway_fastcgi::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
/// });
/// gateway_fastcgi::serve("127.0.0.1:9000", app).await
/// # }
/// ```
///
/// # Errors
///
/// `addr` is not a listen address ([`io::ErrorKind::InvalidInput`]), it
/// cannot be opened, or the listener fails.
pub async fn serve<S, B>(addr: &str, app: S) -> io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let addr = server::parse_addr(addr)?;
    let s = Server::new();
    let connections = s.connections(app);
    server::serve_until_signal(
        "FastCGI",
        &addr,
        s.options.get_handler().limits(),
        &s.shutdown_handle(),
        |l| connections.serve(l),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::{Handler, Limits};
    use std::time::Duration;

    /// The allow-list matches IPv4 (also v4-mapped IPv6) and refuses peers
    /// without an address (Unix sockets) once set.
    #[test]
    fn allow_list() {
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

    /// The limits setters keep the handler's other settings; the shortcut
    /// changes only the connection cap, which the protocol layer reports.
    #[test]
    fn setters_keep_the_rest_of_the_handler() {
        let mut server = Server::new();
        server.handler(Handler::builder().error_body("sorry").build());
        let mut limits = Limits::default();
        limits.max_head_len(4096);
        server.limits(limits).max_connections(3);
        let h = server.options.get_handler();
        assert_eq!(h.limits().get_max_head_len(), 4096);
        assert_eq!(h.limits().get_max_connections(), 3);
        assert!(format!("{h:?}").contains("limits"));
        let config = server.protocol_config();
        assert_eq!((config.max_conns, config.max_reqs), (3, 3));
        server.max_requests(2);
        assert_eq!(server.protocol_config().max_reqs, 2);
    }

    /// The grace period is the deadline of the shutdown handed out, set
    /// before or after the shutdown itself.
    #[test]
    fn grace_period_applies_to_any_shutdown() {
        let mut server = Server::new();
        server.grace_period(Duration::from_secs(3));
        server.shutdown(Shutdown::new());
        assert_eq!(
            server.shutdown_handle().get_deadline(),
            Duration::from_secs(3)
        );
        let handle = server.shutdown_handle();
        handle.trigger();
        assert!(server.shutdown_handle().is_triggered());
    }

    /// A bad address is an `InvalidInput` error naming what was expected.
    #[tokio::test]
    async fn serve_refuses_a_bad_address() {
        let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let err = serve("localhost", app).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("expected"), "{err}");
    }
}

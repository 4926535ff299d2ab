//! The server: configuration, the connections of one application, entry
//! points.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::server::{
    self as server, Connection, ListenAddr, Listener, Refusal, Shutdown, Stream,
};
use gateway_core::{AppBody, Application, ErrorStream, Handler, Limits, Metrics, PathView};

use crate::connection::{self, Shared};
use crate::proto::Config;

/// An SCGI application server: how connections are served, without the
/// application.
///
/// Setters take `&mut self` and chain. The entry points take `&self` and
/// the application: [`serve`](Server::serve) on a listener, on the
/// caller's runtime; [`run`](Server::run) on an address, on a runtime of
/// its own, for a plain `main`; [`connections`](Server::connections) for
/// an accept loop of your own. One configuration can serve several
/// listeners and applications.
///
/// The limits are the handler's: [`limits`](Server::limits),
/// [`path_view`](Server::path_view) and
/// [`max_connections`](Server::max_connections) change the handler, and
/// [`handler`](Server::handler) replaces it with its limits.
///
/// ```no_run
/// use std::time::Duration;
/// use gateway_scgi::{ListenAddr, Limits, Server};
///
/// fn main() -> std::io::Result<()> {
///     let app = tower::service_fn(|_req: http::Request<gateway_scgi::Body>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new("Hello\n".to_string()))
///     });
///     let mut limits = Limits::default();
///     limits.head_read_timeout(Duration::from_secs(5));
///     let addr: ListenAddr = "127.0.0.1:4000".parse().map_err(std::io::Error::other)?;
///     Server::new()
///         .limits(limits)
///         .max_connections(256)
///         .grace_period(Duration::from_secs(10))
///         .run(&addr, app)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    handler: Handler,
    strict_marker: bool,
    errors: ErrorStream,
    shutdown: Shutdown,
    worker_threads: Option<usize>,
    work_stealing: bool,
    status_addr: Option<ListenAddr>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// The defaults: a default [`Handler`] (with default [`Limits`]),
    /// lenient about the `SCGI` marker, application errors logged through
    /// `tracing` ([`ErrorStream::log`]), a shutdown with a 30-second grace
    /// period, and a single-threaded runtime per CPU for
    /// [`run`](Server::run).
    pub fn new() -> Self {
        Self {
            handler: Handler::new(),
            strict_marker: false,
            errors: ErrorStream::log(),
            shutdown: Shutdown::new(),
            worker_threads: None,
            work_stealing: false,
            status_addr: None,
        }
    }

    /// The core handler: error page, base environ, path view, limits, …
    /// It replaces the server's handler whole, limits included: the
    /// handler's limits are the server's.
    pub fn handler(&mut self, handler: Handler) -> &mut Self {
        self.handler = handler;
        self
    }

    /// Limits and timeouts, kept in the handler (its other settings stay).
    /// The server applies `max_head_len` (the header block),
    /// `head_read_timeout`, `body_read_timeout` (per read), `write_timeout`
    /// (per write), `max_connections` and `listen_backlog` (when it binds
    /// the address itself); the handler applies `max_body_len`,
    /// `max_response_head_len` and `app_timeout`.
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.handler = self.handler.to_builder().limits(limits).build();
        self
    }

    /// Which path the application routes on (see [`PathView`]), kept in the
    /// handler (its other settings stay).
    pub fn path_view(&mut self, view: PathView) -> &mut Self {
        self.handler = self.handler.to_builder().path_view(view).build();
        self
    }

    /// The most connections served at once (default 1024); past it a new
    /// connection is answered `503 Service Unavailable` with `Retry-After`
    /// at once. The same as setting
    /// [`Limits::max_connections`] through [`limits`](Server::limits).
    pub fn max_connections(&mut self, max: usize) -> &mut Self {
        let mut limits = self.handler.limits().clone();
        limits.max_connections(max);
        self.limits(limits)
    }

    /// Binds a TCP address with `SO_REUSEPORT` (default: off), so that a new
    /// process can listen on the same port before this one stops: a
    /// rolling restart with no refused connection. The handler's
    /// [`Limits::reuse_port`], changed.
    pub fn reuse_port(&mut self, yes: bool) -> &mut Self {
        let mut limits = self.handler.limits().clone();
        limits.reuse_port(yes);
        self.limits(limits)
    }

    /// Counts this server's connections, requests, bytes and failures in
    /// `metrics` (the handler's, which keeps its other settings): mount
    /// [`Metrics::service`] in the application, or serve it on an address
    /// of its own with [`status_addr`](Server::status_addr). Besides what
    /// the handler counts, the server counts its connections, the
    /// connections refused past [`Limits::max_connections`], malformed
    /// SCGI headers, headers not received in time and connections closed
    /// inside the header.
    pub fn metrics(&mut self, metrics: &Metrics) -> &mut Self {
        self.handler = self.handler.to_builder().metrics(metrics).build();
        self
    }

    /// Serves the [metrics](Server::metrics) (fresh ones if none were set)
    /// over plain HTTP on `addr` next to the SCGI socket, under
    /// [`run`](Server::run): `GET` any path for the JSON status page, a
    /// path ending in `metrics` (or `Accept: application/openmetrics-text`)
    /// for the OpenMetrics text. See [`server::serve_status`]; meant for a
    /// loopback or internal address.
    pub fn status_addr(&mut self, addr: ListenAddr) -> &mut Self {
        if self.handler.metrics().is_none() {
            self.metrics(&Metrics::new());
        }
        self.status_addr = Some(addr);
        self
    }

    /// Where application failures are reported (wsgi.errors); the handler
    /// logs them to `tracing` too.
    pub fn error_stream(&mut self, errors: ErrorStream) -> &mut Self {
        self.errors = errors;
        self
    }

    /// The shutdown that stops the server: trigger it (or a clone of it) to
    /// stop accepting, let in-flight requests finish within its deadline,
    /// and make [`serve`](Server::serve) and [`run`](Server::run) return.
    /// Its deadline becomes the server's grace period.
    pub fn shutdown(&mut self, shutdown: Shutdown) -> &mut Self {
        self.shutdown = shutdown;
        self
    }

    /// A handle on the server's shutdown: [`Shutdown::trigger`] stops the
    /// server.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// How long requests in flight may still take once the shutdown starts
    /// (default 30 s); then their connections are aborted. This is the
    /// shutdown's deadline ([`Shutdown::deadline`]): set it after
    /// [`shutdown`](Server::shutdown), which brings its own.
    pub fn grace_period(&mut self, period: Duration) -> &mut Self {
        self.shutdown.deadline(period);
        self
    }

    /// The threads [`run`](Server::run) serves on. Unset (or 0): one per
    /// CPU. Each has a single-threaded runtime of its own and serves the
    /// connections it accepts to their end, so a request and the tasks its
    /// application spawns stay on one thread: nothing is handed over
    /// between threads (the way php-fpm and uWSGI run a worker per core).
    /// The connection cap ([`Limits::max_connections`]) is shared out
    /// among the threads. See [`work_stealing`](Server::work_stealing) for
    /// the other way. [`serve`](Server::serve) runs on the caller's runtime
    /// and ignores it.
    pub fn worker_threads(&mut self, threads: usize) -> &mut Self {
        self.worker_threads = (threads > 0).then_some(threads);
        self
    }

    /// Whether [`run`](Server::run) serves on one multi-threaded tokio
    /// runtime whose [worker threads](Server::worker_threads) share all
    /// connections and tasks (work stealing) instead of a single-threaded
    /// runtime per thread. For an application whose requests keep a core
    /// busy for long, or that needs a multi-threaded runtime (such as
    /// `tokio::task::block_in_place`); it costs hand-overs between threads
    /// on every request. Default: off. With one thread it makes no
    /// difference.
    pub fn work_stealing(&mut self, yes: bool) -> &mut Self {
        self.work_stealing = yes;
        self
    }

    /// Rejects requests whose `SCGI` header is missing or not `1` (default:
    /// accepted and logged at debug level, since nginx sends it only when
    /// the configuration includes `scgi_params`).
    pub fn strict_marker(&mut self, strict: bool) -> &mut Self {
        self.strict_marker = strict;
        self
    }

    /// This configuration with `app`: serves connections accepted by any
    /// accept loop, one by one.
    pub fn connections<S, B>(&self, app: S) -> Connections<S, B>
    where
        S: Application<B>,
        B: AppBody,
    {
        let limits = self.handler.limits().clone();
        let mut parser = Config::new();
        parser
            .max_header_len(limits.get_max_head_len())
            .strict_marker(self.strict_marker);
        Connections {
            shared: Arc::new(Shared {
                handler: self.handler.clone(),
                limits,
                parser,
                errors: self.errors.clone(),
            }),
            app,
            shutdown: self.shutdown.clone(),
            _body: PhantomData,
        }
    }

    /// Serves `app` on `listener`, on the caller's runtime, until the
    /// shutdown is triggered: one request per connection, each connection
    /// on its own task. The same as
    /// `self.connections(app).serve(listener)`.
    ///
    /// # Errors
    ///
    /// None in practice: failed accepts and connections are logged and
    /// skipped; the result is kept for future listener errors.
    pub async fn serve<S, B>(&self, listener: Listener, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        self.connections(app).serve(listener).await
    }

    /// Runs the server to the end, on a runtime of its own (see
    /// [`worker_threads`](Server::worker_threads)), for a `main` without
    /// one: listens on `addr` (TCP, `unix:PATH`, `fd:0`, `systemd`, …; see
    /// [`ListenAddr`]) with [`Limits::listen_backlog`], tells a service
    /// manager it is ready (`READY=1`, when started with `NOTIFY_SOCKET`),
    /// and serves until the shutdown is triggered or the process gets
    /// SIGTERM or SIGINT.
    ///
    /// Sockets passed by systemd are adopted before the runtime starts
    /// ([`systemd::adopt`](gateway_core::server::systemd::adopt)).
    ///
    /// # Errors
    ///
    /// The runtime cannot start, or `addr` cannot be listened on (it is
    /// taken, `fd:0` is not a listening socket, systemd passed no such
    /// socket).
    pub fn run<S, B>(&self, addr: &ListenAddr, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        let connections = self.connections(app);
        let limits = self.handler.limits();
        let status = self
            .status_addr
            .as_ref()
            .zip(self.handler.metrics().cloned());
        if self.work_stealing || self.worker_threads == Some(1) {
            return server::run(
                "SCGI",
                addr,
                limits,
                self.worker_threads,
                &self.shutdown,
                |listener| {
                    server::with_status(connections.serve(listener), status, limits, &self.shutdown)
                },
            );
        }
        let max_connections = limits.get_max_connections();
        server::run_per_thread(
            "SCGI",
            addr,
            limits,
            self.worker_threads,
            &self.shutdown,
            move |listener, threads| {
                let connections = connections.clone();
                async move {
                    let share = max_connections.div_ceil(threads.max(1));
                    connections.serve_capped(listener, share).await
                }
            },
            |serving| server::with_status(serving, status, limits, &self.shutdown),
        )
    }
}

/// A [`Server`] with its application: serves accepted connections one by
/// one, for accept loops of your own and for one socket serving several
/// protocols. Cheap to clone; made by [`Server::connections`].
///
/// One socket for SCGI and nothing else, told from the first bytes:
///
/// ```no_run
/// use std::time::Duration;
/// use gateway_core::server::{self, Sniffed, sniff_stream};
/// use gateway_scgi::{Listener, Server};
///
/// # async fn doc() -> std::io::Result<()> {
/// let app = tower::service_fn(|_req: http::Request<gateway_scgi::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("Hello\n".to_string()))
/// });
/// let server = Server::new();
/// let scgi = server.connections(app);
/// let listener = Listener::bind("127.0.0.1:4000").await?;
/// let refusal = scgi.refusal();
/// server::serve(listener, 1024, server.shutdown_handle(), refusal, move |mut conn| {
///     let scgi = scgi.clone();
///     async move {
///         let Ok((found, stream)) = sniff_stream(conn.stream, Duration::from_secs(5)).await
///         else {
///             return;
///         };
///         conn.stream = stream;
///         if found == Some(Sniffed::Scgi) {
///             scgi.serve_connection(conn).await;
///         }
///     }
/// })
/// .await
/// # }
/// ```
pub struct Connections<S, B> {
    shared: Arc<Shared>,
    app: S,
    shutdown: Shutdown,
    _body: PhantomData<fn() -> B>,
}

impl<S: Clone, B> Clone for Connections<S, B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            app: self.app.clone(),
            shutdown: self.shutdown.clone(),
            _body: PhantomData,
        }
    }
}

impl<S, B> fmt::Debug for Connections<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("handler", &self.shared.handler)
            .field("parser", &self.shared.parser)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl<S, B> Connections<S, B>
where
    S: Application<B>,
    B: AppBody,
{
    /// Serves the one request of an accepted connection, then closes it.
    /// Failures are the peer's or the connection's: they are logged at
    /// debug level and end this connection only. While no byte of the
    /// request has arrived, the connection's shutdown watch closes it.
    pub async fn serve_connection(&self, conn: Connection) {
        let _open = self.shared.handler.metrics().map(Metrics::connection);
        connection::serve(&self.shared, conn, self.app.clone()).await;
    }

    /// Answers a connection the server has no room for:
    /// `Status: 503 Service Unavailable` with `Retry-After: 1`, then the
    /// lingering close.
    pub async fn refuse(&self, stream: Stream) {
        gateway_core::metrics::note(
            self.shared.handler.metrics(),
            gateway_core::Failure::Refused,
        );
        connection::refuse(stream, self.shared.limits.get_write_timeout()).await;
    }

    /// The busy answer of [`refuse`](Connections::refuse), for
    /// [`gateway_core::server::serve`].
    pub fn refusal(&self) -> Refusal {
        let write_timeout = self.shared.limits.get_write_timeout();
        let metrics = self.shared.handler.metrics().cloned();
        Refusal::new(move |stream| {
            gateway_core::metrics::note(metrics.as_ref(), gateway_core::Failure::Refused);
            connection::refuse(stream, write_timeout)
        })
    }

    /// The accept loop: serves the connections of `listener`, each on its
    /// own task, at most `max_connections` at once (the rest are refused),
    /// until the shutdown is triggered; then waits for the connections in
    /// flight up to the grace period.
    ///
    /// # Errors
    ///
    /// None in practice: failed accepts and connections are logged and
    /// skipped; the result is kept for future listener errors.
    pub async fn serve(&self, listener: Listener) -> io::Result<()> {
        let max = self.shared.limits.get_max_connections();
        self.serve_capped(listener, max).await
    }

    /// As [`serve`](Connections::serve), with at most `max` connections at
    /// once on this listener.
    async fn serve_capped(&self, listener: Listener, max: usize) -> io::Result<()> {
        let this = self.clone();
        gateway_core::server::serve(
            listener,
            max,
            self.shutdown.clone(),
            self.refusal(),
            move |conn| {
                let this = this.clone();
                async move { this.serve_connection(conn).await }
            },
        )
        .await
    }
}

/// Serves `app` over SCGI on `addr` with the defaults, on the caller's
/// runtime, until SIGTERM or SIGINT (then gracefully: requests in flight
/// get 30 s). `addr` is a [`ListenAddr`]: `HOST:PORT`, `unix:PATH`,
/// `fd:0`, `systemd`, …
///
/// ```no_run
/// # async fn doc() -> std::io::Result<()> {
/// let app = tower::service_fn(|_req: http::Request<gateway_scgi::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("Hello\n".to_string()))
/// });
/// gateway_scgi::serve("127.0.0.1:4000", app).await
/// # }
/// ```
///
/// # Errors
///
/// `addr` is not a listen address ([`io::ErrorKind::InvalidInput`]), or
/// cannot be listened on.
pub async fn serve<S, B>(addr: &str, app: S) -> io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let addr = server::parse_addr(addr)?;
    let s = Server::new();
    let connections = s.connections(app);
    server::serve_until_signal("SCGI", &addr, s.handler.limits(), &s.shutdown, |l| {
        connections.serve(l)
    })
    .await
}

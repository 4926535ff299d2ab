//! The server: configuration, the connections of one application, entry
//! points.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

#[cfg(doc)]
use gateway_core::Limits;
use gateway_core::server::{
    self as server, Connection, ConnectionCap, ListenAddr, Listener, MemoryRelease, Refusal,
    ServerOptions, Shutdown, Stream,
};
use gateway_core::{AppBody, Application, ErrorStream, Metrics};

use crate::connection::{self, Shared};
use crate::proto::{Config, HeaderParser};

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
    options: ServerOptions,
    strict_marker: bool,
    errors: ErrorStream,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// The defaults: the shared [`ServerOptions`] defaults (a default
    /// [`Handler`](gateway_core::Handler) with default
    /// [`Limits`](gateway_core::Limits), a shutdown with a 30-second grace
    /// period), [`run`](Server::run) on half the CPUs (see
    /// [`worker_threads`](Server::worker_threads)), lenient about the `SCGI` marker, and
    /// application errors logged through `tracing` ([`ErrorStream::log`]).
    pub fn new() -> Self {
        Self {
            options: ServerOptions::new(),
            strict_marker: false,
            errors: ErrorStream::log(),
        }
    }

    gateway_core::server_options_setters!(
        options,
        "its connections, the connections refused past the connection limit, \
         malformed SCGI headers, headers not received in time and connections \
         closed inside the header",
        threads: "half the CPUs, at least one (one per CPU with \
            [`work_stealing`](Self::work_stealing)). The web server in front \
            needs CPU time too, more per request than this server for small \
            requests, and a thread with fewer connections sleeps and is woken \
            more often per request. On two CPUs behind nginx, one thread \
            spent a seventh less CPU time per request than two (3 to 19 % \
            from run to run), and two threads answered between 4 % fewer \
            and 13 % more requests per second. An \
            application whose requests keep a core busy, on a machine of its \
            own, wants one per CPU"
    );

    /// Where application failures are reported (wsgi.errors); the handler
    /// logs them to `tracing` too.
    pub fn error_stream(&mut self, errors: ErrorStream) -> &mut Self {
        self.errors = errors;
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
        let handler = self.options.get_handler();
        let limits = handler.limits().clone();
        let mut parser = Config::new();
        parser
            .max_header_len(limits.get_max_head_len())
            .strict_marker(self.strict_marker);
        Connections {
            shared: Arc::new(Shared {
                handler: handler.clone(),
                limits,
                parser,
                errors: self.errors.clone(),
            }),
            app,
            shutdown: self.options.shutdown_handle(),
            release: self.options.get_release_memory_after_bursts().clone(),
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
        let options = self.options.or_worker_threads(server::half_the_cpus());
        options.run("SCGI", addr, move |listener, cap| {
            let connections = connections.clone();
            async move { connections.serve_capped(listener, cap).await }
        })
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
    release: MemoryRelease,
    _body: PhantomData<fn() -> B>,
}

impl<S: Clone, B> Clone for Connections<S, B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            app: self.app.clone(),
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
    pub async fn serve_connection(&self, mut conn: Connection) {
        let _open = self.shared.handler.metrics().map(Metrics::connection);
        // The web server usually writes its request with its connect: one
        // read at once, into the header's buffer.
        let mut buf = BytesMut::with_capacity(connection::FIRST_READ);
        let first = {
            let mut read = std::pin::pin!(conn.stream.read_buf(&mut buf));
            std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await
        };
        let mut parser = HeaderParser::new(&self.shared.parser);
        match first {
            // Closed before a byte: nothing to answer.
            Poll::Ready(Ok(0)) => return,
            // Usually the whole header came with it: then the request is
            // run at once, without the header's own future.
            Poll::Ready(Ok(_)) => match parser.parse(&mut buf) {
                Ok(Some(header)) => {
                    let conn = connection::Parts::from(conn);
                    Box::pin(connection::respond(
                        &self.shared,
                        conn,
                        header,
                        buf,
                        self.app.clone(),
                    ))
                    .await;
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    connection::bad_request(&self.shared, conn.stream, e).await;
                    return;
                }
            },
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "reading the SCGI header failed");
                return;
            }
            // Nothing yet: until its first bytes, a connection holds no
            // more than its socket; the header buffer and parser are made
            // (and boxed) once it has something to read.
            Poll::Pending => {
                buf = BytesMut::new();
                conn.wait_for_input(self.shared.limits.get_head_read_timeout())
                    .await;
            }
        }
        Box::pin(connection::serve(
            &self.shared,
            conn,
            parser,
            buf,
            self.app.clone(),
        ))
        .await;
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
        self.serve_capped(listener, self.connection_cap()).await
    }

    /// A new cap on connections for an accept loop serving these
    /// connections: at most [`Limits::max_connections`] at once, running
    /// the server's `release_memory_after_bursts` once a burst of
    /// connections has ended. [`serve`](Connections::serve) makes one
    /// per listener; give one to several accept loops of your own
    /// ([`gateway_core::server::serve`]) to cap them together.
    pub fn connection_cap(&self) -> ConnectionCap {
        ConnectionCap::new(self.shared.limits.get_max_connections())
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
        max: impl Into<ConnectionCap>,
    ) -> io::Result<()> {
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
    let options = &s.options;
    server::serve_until_signal(
        "SCGI",
        &addr,
        options.get_handler().limits(),
        &options.shutdown_handle(),
        |l| connections.serve(l),
    )
    .await
}

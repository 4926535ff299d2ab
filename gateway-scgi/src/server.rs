//! The server: configuration, the accept loop, entry points.

use std::io;
use std::sync::Arc;

use gateway_core::server::{Listener, Shutdown, signal};
use gateway_core::{AppBody, Application, ErrorStream, Handler, Limits};

use crate::connection::{self, Shared};
use crate::proto::Config;

/// An SCGI application server.
///
/// Setters take `&mut self` and chain; [`serve`](Server::serve) and the
/// other entry points take `&self`, so one configuration can serve several
/// listeners.
///
/// ```no_run
/// use std::time::Duration;
/// use gateway_core::Limits;
///
/// # async fn doc() -> std::io::Result<()> {
/// let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("Hello\n".to_string()))
/// });
/// let mut limits = Limits::default();
/// limits.head_read_timeout(Duration::from_secs(5));
/// gateway_scgi::Server::new()
///     .limits(limits)
///     .serve_addr("127.0.0.1:4000", app)
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    handler: Option<Handler>,
    limits: Option<Limits>,
    strict_marker: bool,
    errors: ErrorStream,
    shutdown: Shutdown,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// The defaults: a default [`Handler`], default [`Limits`], lenient
    /// about the `SCGI` marker, application errors logged through `tracing`
    /// ([`ErrorStream::log`]), a shutdown with a 30-second deadline.
    pub fn new() -> Self {
        Self {
            handler: None,
            limits: None,
            strict_marker: false,
            errors: ErrorStream::log(),
            shutdown: Shutdown::new(),
        }
    }

    /// The core handler (error page, mount prefix, base environ, ...).
    /// Unless [`limits`](Server::limits) is also set, the handler's limits
    /// are the server's.
    pub fn handler(&mut self, handler: Handler) -> &mut Self {
        self.handler = Some(handler);
        self
    }

    /// Limits and timeouts. The server applies `max_head_len` (the header
    /// block), `head_read_timeout`, `body_read_timeout` (per read),
    /// `write_timeout` (per write) and `max_connections`; the handler applies
    /// `max_body_len` and `max_response_head_len`. Without an explicit
    /// [`handler`](Server::handler), the default handler gets these limits.
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = Some(limits);
        self
    }

    /// Rejects requests whose `SCGI` header is missing or not `1` (default:
    /// accepted and logged at debug level, since nginx sends it only when
    /// the configuration includes `scgi_params`).
    pub fn strict_marker(&mut self, strict: bool) -> &mut Self {
        self.strict_marker = strict;
        self
    }

    /// Where application failures are reported (wsgi.errors); the handler
    /// logs them to `tracing` too.
    pub fn error_stream(&mut self, errors: ErrorStream) -> &mut Self {
        self.errors = errors;
        self
    }

    /// The shutdown that stops the server: trigger it (or a clone of it) to
    /// stop accepting, let in-flight requests finish up to its deadline, and
    /// make [`serve`](Server::serve) return.
    pub fn shutdown(&mut self, shutdown: Shutdown) -> &mut Self {
        self.shutdown = shutdown;
        self
    }

    /// A handle on the server's shutdown.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    fn shared(&self) -> Shared {
        let (handler, limits) = match (&self.handler, &self.limits) {
            (Some(h), Some(l)) => (h.clone(), l.clone()),
            (Some(h), None) => (h.clone(), h.limits().clone()),
            (None, Some(l)) => (Handler::builder().limits(l.clone()).build(), l.clone()),
            (None, None) => (Handler::new(), Limits::default()),
        };
        let mut parser = Config::new();
        parser
            .max_header_len(limits.get_max_head_len())
            .strict_marker(self.strict_marker);
        Shared {
            handler,
            limits,
            parser,
            errors: self.errors.clone(),
        }
    }

    /// Serves `app` on `listener` until the shutdown is triggered, one
    /// request per connection, each connection on its own task.
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
        let shared = Arc::new(self.shared());
        let max = shared.limits.get_max_connections();
        tracing::info!(addr = %listener.local_addr_string(), "SCGI server listening");
        let write_timeout = shared.limits.get_write_timeout();
        let refusal = gateway_core::server::Refusal::new(move |stream| {
            connection::refuse(stream, write_timeout)
        });
        gateway_core::server::serve(listener, max, self.shutdown.clone(), refusal, move |conn| {
            let shared = shared.clone();
            let app = app.clone();
            async move { connection::serve(&shared, conn, app).await }
        })
        .await
    }

    /// Binds `addr` (`HOST:PORT` or `unix:PATH`) and serves `app` until the
    /// shutdown is triggered or the process gets SIGTERM or SIGINT.
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn serve_addr<S, B>(&self, addr: &str, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        let listener = Listener::bind(addr).await?;
        self.shutdown.trigger_on(signal());
        self.serve(listener, app).await
    }

    /// Runs the server to the end on a new multi-threaded runtime: binds
    /// `addr` (`HOST:PORT` or `unix:PATH`; with `None`, the listening
    /// socket on file descriptor 0 that a process manager handed over),
    /// calls `ready` with the listener's address, and serves until SIGTERM
    /// or SIGINT. For `main` functions without a runtime of their own.
    ///
    /// # Errors
    ///
    /// The runtime cannot start, the address cannot be bound, or with
    /// `None` file descriptor 0 is not a listening socket.
    pub fn run<S, B>(&self, addr: Option<&str>, app: S, ready: impl FnOnce(&str)) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let listener = match addr {
                Some(addr) => Listener::bind(addr).await?,
                None => Listener::from_stdin()?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "no address given and file descriptor 0 is not a listening socket",
                    )
                })?,
            };
            ready(&listener.local_addr_string());
            self.shutdown.trigger_on(signal());
            self.serve(listener, app).await
        })
    }
}

/// Serves `app` over SCGI on `addr` (`HOST:PORT` or `unix:PATH`) with the
/// defaults, until SIGTERM or SIGINT:
///
/// ```no_run
/// # async fn doc() -> std::io::Result<()> {
/// let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("Hello\n".to_string()))
/// });
/// gateway_scgi::serve("127.0.0.1:4000", app).await
/// # }
/// ```
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve<S, B>(addr: &str, app: S) -> io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    Server::new().serve_addr(addr, app).await
}

//! The server builder.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use gateway_core::server::{self, Listener, Shutdown};
use gateway_core::{AppBody, Application, ErrorStream, Handler};
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;

use crate::conn::{Shared, serve_connection};
use crate::refuse;
use crate::stream::StreamExecutor;

const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The `Server` header and `SERVER_SOFTWARE` of this crate.
pub const SERVER_SOFTWARE: &str = concat!("gateway-http/", env!("CARGO_PKG_VERSION"));

/// An HTTP server: configure it, then [`serve`](Server::serve) an
/// application on a [`Listener`].
///
/// The [`Handler`]'s [`Limits`](gateway_core::Limits) set the protocol
/// limits:
///
/// | limit | how |
/// |---|---|
/// | `max_head_len` | hyper's `max_header_size` (request line + headers; over it: 431) |
/// | `max_headers` | hyper's `max_headers` (over it: 431) |
/// | `max_body_len` | a larger declared body: 413 before the application runs; one that grows larger (chunked, HTTP/2): a body error, answered 413 if the application fails with it before sending anything |
/// | `body_read_timeout` | each read of the request body; over it a body error, answered 408 if the application fails with it before sending anything |
/// | `head_read_timeout` | a new connection's first byte, then hyper's header read timeout: the connection is closed. hyper starts it as soon as the connection waits for a request, so it also bounds an idle HTTP/1 keep-alive connection |
/// | `write_timeout` | the client taking nothing written to it for this long: the connection is closed. HTTP/2: a response chunk waiting this long for the client's flow-control window resets its stream; a PING unanswered this long closes the connection |
/// | `idle_timeout` | a connection with no request for this long (to twice that) is closed gracefully (HTTP/2: GOAWAY); HTTP/2: a client silent this long gets a PING |
/// | `max_requests_per_connection` | HTTP/1.x: the last response says `Connection: close` and the connection closes after it |
/// | `max_connections` | past it, a new connection is answered at once: 503 with `Retry-After: 1` (HTTP/2 prior knowledge: GOAWAY with REFUSED_STREAM), then closed |
///
/// A graceful close (an idle HTTP/2 connection's GOAWAY, the server
/// stopping) lets the requests in flight finish; once none is left, the
/// client gets one to two seconds to finish the close, then the connection
/// is dropped. The crate's README has a table of every connection state and
/// the timeout that bounds it.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use gateway_core::server::{Listener, Shutdown, signal};
///
/// let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("hi\n".to_string()))
/// });
/// let shutdown = Shutdown::new();
/// shutdown.trigger_on(signal());
/// gateway_http::Server::new()
///     .shutdown(shutdown)
///     .serve(Listener::bind("127.0.0.1:8000").await?, app)
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    handler: Handler,
    shutdown: Shutdown,
    http2: bool,
    server_software: Option<Bytes>,
    errors: ErrorStream,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("handler", &self.handler)
            .field("http2", &self.http2)
            .field("server_software", &self.server_software)
            .finish_non_exhaustive()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// HTTP/1.1 and HTTP/2 (prior knowledge), the default [`Handler`] with
    /// [`SERVER_SOFTWARE`] as its `Server` header, a shutdown that nothing
    /// triggers.
    pub fn new() -> Self {
        Self {
            handler: Handler::builder()
                .server_software(SERVER_SOFTWARE)
                .http_version(http::Version::HTTP_11)
                .build(),
            shutdown: Shutdown::new(),
            http2: true,
            server_software: Some(Bytes::from_static(SERVER_SOFTWARE.as_bytes())),
            errors: ErrorStream::stderr(),
        }
    }

    /// The handler (error page, limits, mount prefix). Its
    /// `server_software` is not seen here: set [`server_software`](Server::server_software).
    pub fn handler(&mut self, handler: Handler) -> &mut Self {
        self.handler = handler;
        self
    }

    /// The `Server` response header and `SERVER_SOFTWARE`; `None` for none.
    pub fn server_software(&mut self, software: Option<Bytes>) -> &mut Self {
        self.server_software = software;
        self
    }

    /// Where each request's error stream (wsgi.errors) goes: application
    /// failures and validator messages. Default: standard error, as in
    /// wsgiref's `simple_server`.
    pub fn errors(&mut self, errors: ErrorStream) -> &mut Self {
        self.errors = errors;
        self
    }

    /// The shutdown that stops the server (stop accepting, finish in-flight
    /// requests, close idle connections).
    pub fn shutdown(&mut self, shutdown: Shutdown) -> &mut Self {
        self.shutdown = shutdown;
        self
    }

    /// Whether HTTP/2 with prior knowledge is accepted besides HTTP/1.x.
    pub fn http2(&mut self, yes: bool) -> &mut Self {
        self.http2 = yes;
        self
    }

    fn hyper_builder(&self) -> auto::Builder<StreamExecutor> {
        let limits = self.handler.limits();
        // HTTP/2 streams run on tasks of their own, each watched for a
        // response the client's flow control holds up past write_timeout.
        let mut b = auto::Builder::new(StreamExecutor {
            write_timeout: limits.get_write_timeout(),
        });
        if !self.http2 {
            b = b.http1_only();
        }
        let mut h1 = b.http1();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.get_head_read_timeout())
            .max_buf_size(limits.get_max_head_len().max(8192))
            .keep_alive(true)
            .half_close(false);
        // hyper's default is 100 header slots on the stack; any explicit
        // value moves them to the heap for every request.
        if limits.get_max_headers() != HYPER_DEFAULT_MAX_HEADERS {
            h1.max_headers(limits.get_max_headers());
        }
        // A client silent for `idle_timeout` gets a PING; one that does not
        // answer it within `write_timeout` is gone, and the connection (with
        // its streams) is closed.
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.get_max_head_len()).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(limits.get_idle_timeout()))
            .keep_alive_timeout(limits.get_write_timeout());
        b
    }

    /// Serves `app` on `listener` until the shutdown is triggered and the
    /// connections have finished (or its deadline passed).
    pub async fn serve<S, B>(&self, listener: Listener, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        let shared = Arc::new(Shared {
            app,
            handler: self.handler.clone(),
            builder: self.hyper_builder(),
            server_software: self.server_software.clone(),
            errors: self.errors.clone(),
        });
        let limits = self.handler.limits();
        let refusal = refuse::refusal(self.server_software.as_ref(), limits.get_write_timeout());
        server::serve(
            listener,
            limits.get_max_connections(),
            self.shutdown.clone(),
            refusal,
            move |conn| serve_connection(conn, shared.clone()),
        )
        .await
    }
}

//! The server's settings, and the server with its application.

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use gateway_core::server::{
    self, Connection, ConnectionCap, ListenAddr, Listener, MemoryRelease, Refusal, ServerOptions,
    Stream,
};
use gateway_core::{AppBody, Application, ErrorStream, Metrics};
#[cfg(doc)]
use gateway_core::{Handler, Limits, PathView};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;

use crate::conn::{FLAT_MAX_FRAME, Shared, serve_connection};
use crate::refuse::Refuser;
use crate::stream::StreamExecutor;

const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The default `Server` header and `SERVER_SOFTWARE`.
const SERVER_SOFTWARE: &str = concat!("gateway-http/", env!("CARGO_PKG_VERSION"));

/// An HTTP server's settings: configure it, then serve an application with
/// [`run`](Server::run) (the whole `main`: its own runtime, signals,
/// systemd), [`serve`](Server::serve) (on a [`Listener`], on the caller's
/// runtime) or [`connections`](Server::connections) (connection by
/// connection, for an accept loop of your own). The server holds no
/// application; one `Server` can serve several.
///
/// | setting | default |
/// |---|---|
/// | [`handler`](Server::handler): error page, base environ, limits, path view, failure summaries | [`Handler::new()`] |
/// | [`limits`](Server::limits), [`max_connections`](Server::max_connections): the handler's limits | [`Limits::default()`] |
/// | [`path_view`](Server::path_view): the path the application routes on | [`PathView::Full`] |
/// | [`server_software`](Server::server_software): the `Server` header and `SERVER_SOFTWARE` | `gateway-http/VERSION` |
/// | [`http2`](Server::http2): HTTP/2 with prior knowledge besides HTTP/1.x | on |
/// | [`extended_connect`](Server::extended_connect): HTTP/2 extended CONNECT (RFC 8441: WebSocket over HTTP/2) | on |
/// | [`error_stream`](Server::error_stream): each request's error stream | standard error |
/// | [`shutdown`](Server::shutdown), [`grace_period`](Server::grace_period): what stops the server, and the time in-flight requests then get | a new [`Shutdown`](gateway_core::server::Shutdown), 30 s |
/// | [`worker_threads`](Server::worker_threads): the threads of [`run`](Server::run)'s runtime | tokio's default |
///
/// The handler's [`Limits`] set the protocol limits:
///
/// | limit | how |
/// |---|---|
/// | `max_head_len` | hyper's `max_header_size` (request line + headers; over it: 431) |
/// | `max_headers` | hyper's `max_headers` (over it: 431) |
/// | `max_body_len` | a larger declared body: 413 before the application runs; one that grows larger (chunked, HTTP/2): a body error, answered 413 if the application fails with it before sending anything |
/// | `body_read_timeout` | each read of the request body; over it a body error, answered 408 if the application fails with it before sending anything |
/// | `head_read_timeout` | a new connection's first byte (and, with HTTP/2 on, the rest of the 24 bytes that tell HTTP/2 from HTTP/1), then the wait for each HTTP/1 request head: the connection is closed. It runs from when the connection starts waiting for a request (to within 0.4 s later, never earlier); a parked HTTP/1 connection (see below) starts it again when its next bytes come, and a head begun before the park keeps its deadline |
/// | `write_timeout` | the client taking nothing written to it for this long: the connection is closed. HTTP/2: a response chunk waiting this long for the client's flow-control window resets its stream; a PING unanswered this long closes the connection |
/// | `idle_timeout` | a connection with no request for this long (to twice that) is closed gracefully (HTTP/2: GOAWAY); HTTP/2: a client silent this long gets a PING. A parked HTTP/1 connection is closed this long after its last request (up to half a second later) |
/// | `max_requests_per_connection` | HTTP/1.x: the last response says `Connection: close` and the connection closes after it |
/// | `max_connections` | past it, a new connection is answered at once: 503 with `Retry-After: 1` (HTTP/2 prior knowledge: GOAWAY with REFUSED_STREAM), then closed |
/// | `listen_backlog` | the backlog of a socket [`run`](Server::run) or [`serve`](crate::serve()) binds |
/// | `reuse_port` | `SO_REUSEPORT` on a TCP socket [`run`](Server::run) or [`serve`](crate::serve()) binds |
///
/// A graceful close (an idle HTTP/2 connection's GOAWAY, the server
/// stopping) lets the requests in flight finish; once none is left, the
/// client gets one to two seconds to finish the close, then the connection
/// is dropped. The crate's README has a table of every connection state and
/// the timeout that bounds it.
///
/// An HTTP/1 keep-alive connection that has been quiet for 25 to 50 ms
/// after a request (no request in flight, its response written, no byte
/// received since) is parked: hyper's connection, with its read and write
/// buffers, is taken apart without closing the socket, and the connection
/// waits holding little more than its socket (about 2 kB instead of about
/// 22 kB) until its next bytes come; a new hyper connection then serves
/// them, bytes already received of the next request included. A parked
/// connection closes at once when the server stops. HTTP/2 connections,
/// and connections handed to the application (`Upgrade`), are never
/// parked.
///
/// hyper writes every response head: the status line (HTTP/1.1, or
/// HTTP/1.0 to an HTTP/1.0 client), `Date`, and the `Server` header of
/// [`server_software`](Server::server_software). The handler's own
/// origin-server settings (`HandlerBuilder::http_version`,
/// `HandlerBuilder::server_software`) are not used by this server, so any
/// [`Handler`] serves correct HTTP.
///
/// ```no_run
/// use std::time::Duration;
///
/// let app = tower::service_fn(|_req: http::Request<gateway_http::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("hi\n".to_string()))
/// });
/// let addr = "127.0.0.1:8000".parse().expect("a listen address");
/// gateway_http::Server::new()
///     .max_connections(256)
///     .grace_period(Duration::from_secs(10))
///     .run(&addr, app)
/// # .unwrap()
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    options: ServerOptions,
    http2: bool,
    extended_connect: bool,
    server_software: Option<Bytes>,
    errors: ErrorStream,
    vectored_writes: bool,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// The defaults (see [`Server`]): the shared [`ServerOptions`]
    /// defaults, HTTP/1.x and HTTP/2 with prior knowledge,
    /// `gateway-http/VERSION` as the `Server` header, the error stream on
    /// standard error.
    pub fn new() -> Self {
        Self {
            options: ServerOptions::new(),
            http2: true,
            extended_connect: true,
            server_software: Some(Bytes::from_static(SERVER_SOFTWARE.as_bytes())),
            errors: ErrorStream::stderr(),
            vectored_writes: false,
        }
    }

    gateway_core::server_options_setters!(
        options,
        "its connections, the connections refused past the connection limit, \
         and connections that ended on a request hyper could not parse, a head \
         too large, or a head not received in time"
    );

    /// Where each request's error stream (wsgi.errors) goes: application
    /// failures and validator messages. Default: standard error, as in
    /// wsgiref's `simple_server`.
    pub fn error_stream(&mut self, errors: ErrorStream) -> &mut Self {
        self.errors = errors;
        self
    }

    /// HTTP/1: how hyper writes a response (default: `false`).
    ///
    /// `false`: hyper copies the body into its write buffer after the
    /// head, and a response goes out in one plain `write` of one buffer.
    /// This costs the fewest instructions for the responses most
    /// applications send (up to some tens of kilobytes). A large body
    /// reaches hyper in frames of at most 16 KiB, so the buffer stays
    /// small, but each of its bytes is copied once more in the process.
    ///
    /// `true`: hyper keeps the body's buffers as they are and writes them
    /// after the head with vectored writes (`writev`): no copy of the
    /// body, and a little more work per response. Choose it for an
    /// application that mostly sends large bodies (downloads, media): on
    /// a 2-core machine, copying cost about 3 % less CPU per request than
    /// vectored writes for a 14-byte body, about the same at 4 KiB, and
    /// about 8 % more at 64 KiB.
    ///
    /// HTTP/2 connections are not affected.
    pub fn vectored_writes(&mut self, yes: bool) -> &mut Self {
        self.vectored_writes = yes;
        self
    }

    /// Whether HTTP/2 with prior knowledge is accepted besides HTTP/1.x
    /// (default: yes).
    pub fn http2(&mut self, yes: bool) -> &mut Self {
        self.http2 = yes;
        self
    }

    /// Whether HTTP/2 clients may open extended CONNECT streams (RFC 8441:
    /// the server sends `SETTINGS_ENABLE_CONNECT_PROTOCOL`), which is how a
    /// WebSocket runs over HTTP/2 (default: yes). Such a request reaches
    /// the application as `CONNECT` with hyper's `hyper::ext::Protocol`
    /// (`websocket`) and `OnUpgrade` in its extensions; a `2xx` answer with
    /// no body hands the stream over, as a `101` does on HTTP/1.1 (axum's
    /// `WebSocketUpgrade` does both: route it with `any`, or with `get`
    /// and `connect`). While a stream handed over may be open, its
    /// connection is not closed for being idle; once the server stops, it
    /// gets the grace period, then the connection is closed.
    pub fn extended_connect(&mut self, yes: bool) -> &mut Self {
        self.extended_connect = yes;
        self
    }

    /// The `Server` response header and the `SERVER_SOFTWARE` variable;
    /// `None` for no header and an empty `SERVER_SOFTWARE`. Default:
    /// `gateway-http/VERSION`. This is the only setting for both: the
    /// handler's `server_software` is not used by this server, and a
    /// `SERVER_SOFTWARE` in the handler's base environ is replaced. A
    /// `Server` header the application sets is kept.
    pub fn server_software(&mut self, software: Option<Bytes>) -> &mut Self {
        self.server_software = software;
        self
    }

    /// hyper's HTTP/1 settings.
    fn http1_builder(&self) -> http1::Builder {
        let limits = self.options.get_handler().limits();
        let mut h1 = http1::Builder::new();
        // No header timer of hyper's: the connection's watch keeps the
        // head read timeout (see `conn`), without a timer per request.
        h1.header_read_timeout(None)
            .max_buf_size(limits.get_max_head_len().max(8192))
            .keep_alive(true)
            .half_close(false)
            // See `vectored_writes`.
            .writev(self.vectored_writes);
        // hyper's default is 100 header slots on the stack; any explicit
        // value moves them to the heap for every request.
        if limits.get_max_headers() != HYPER_DEFAULT_MAX_HEADERS {
            h1.max_headers(limits.get_max_headers());
        }
        h1
    }

    /// hyper's HTTP/2 settings; `None` when HTTP/2 is off.
    fn http2_builder(&self) -> Option<http2::Builder<StreamExecutor>> {
        if !self.http2 {
            return None;
        }
        let limits = self.options.get_handler().limits();
        // HTTP/2 streams run on tasks of their own, each watched for a
        // response the client's flow control holds up past write_timeout.
        let mut h2 = http2::Builder::new(StreamExecutor {
            write_timeout: limits.get_write_timeout(),
        });
        // A client silent for `idle_timeout` gets a PING; one that does not
        // answer it within `write_timeout` is gone, and the connection (with
        // its streams) is closed.
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.get_max_head_len()).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(limits.get_idle_timeout()))
            .keep_alive_timeout(limits.get_write_timeout());
        if self.extended_connect {
            h2.enable_connect_protocol();
        }
        Some(h2)
    }

    /// This server with `app`: what serves connections one by one (see
    /// [`Connections`]). The settings are taken now; changing the server
    /// afterwards does not change them.
    pub fn connections<S, B>(&self, app: S) -> Connections<S, B>
    where
        S: Application<B>,
        B: AppBody,
    {
        let handler = self.options.get_handler();
        let limits = handler.limits();
        Connections {
            shared: Arc::new(Shared {
                app,
                handler: handler.clone(),
                http1: self.http1_builder(),
                http2: self.http2_builder(),
                server_software: self.server_software.clone(),
                errors: self.errors.clone(),
                shutdown: self.options.shutdown_handle(),
                parked: AtomicU64::new(0),
                max_frame: if self.vectored_writes {
                    usize::MAX
                } else {
                    FLAT_MAX_FRAME
                },
            }),
            refuser: Refuser::new(
                self.server_software.as_ref(),
                limits.get_write_timeout(),
                handler.metrics().cloned(),
            ),
            max_connections: limits.get_max_connections(),
            release: self.options.get_release_memory_after_bursts().clone(),
            _body: PhantomData,
        }
    }

    /// Serves `app` on `listener`, on the caller's runtime, until the
    /// shutdown is triggered and the connections have finished (or the
    /// grace period passed). Signals are the caller's business: see
    /// [`run`](Server::run) and [`serve`](crate::serve()) for servers that
    /// stop on SIGTERM. The same as `self.connections(app).serve(listener)`.
    ///
    /// # Errors
    ///
    /// None in practice: failed accepts are logged and the loop goes on.
    pub async fn serve<S, B>(&self, listener: Listener, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        self.connections(app).serve(listener).await
    }

    /// The whole `main` of an HTTP server: adopts the sockets systemd
    /// passed (first, before any thread starts), starts its threads (a
    /// single-threaded runtime per CPU by default; see
    /// [`worker_threads`](Server::worker_threads) and
    /// [`work_stealing`](Server::work_stealing)), opens `addr` (with the
    /// handler's [`Limits::listen_backlog`]), logs "HTTP server listening
    /// on ADDR" at info level, tells systemd it is ready, and serves `app`
    /// until SIGTERM or SIGINT (or the server's shutdown): then it tells
    /// systemd it is stopping, stops accepting, and lets the requests in
    /// flight finish within the [grace period](Server::grace_period).
    ///
    /// # Errors
    ///
    /// The runtime cannot be built, or `addr` cannot be opened.
    pub fn run<S, B>(&self, addr: &ListenAddr, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        let connections = self.connections(app);
        self.options.run("HTTP", addr, move |listener, cap| {
            cap.on_burst_end(crate::date::refresh);
            let connections = connections.clone();
            async move { connections.serve_capped(listener, cap).await }
        })
    }

    /// Opens `addr` and serves `app` until a signal or the shutdown.
    pub(crate) async fn serve_addr<S, B>(&self, addr: &ListenAddr, app: S) -> io::Result<()>
    where
        S: Application<B>,
        B: AppBody,
    {
        let connections = self.connections(app);
        server::serve_until_signal(
            "HTTP",
            addr,
            self.options.get_handler().limits(),
            &self.options.shutdown_handle(),
            |l| connections.serve(l),
        )
        .await
    }
}

/// The server with its application: serves accepted connections one by one,
/// for an accept loop of your own and for one socket serving several
/// protocols (tell a connection's protocol with
/// [`Connection::sniff`](gateway_core::server::Connection::sniff), then hand
/// it here). [`serve`](Connections::serve) is the whole accept loop. Cheap
/// to clone; made by [`Server::connections`].
pub struct Connections<S, B> {
    shared: Arc<Shared<S>>,
    refuser: Refuser,
    max_connections: usize,
    release: MemoryRelease,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> Clone for Connections<S, B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            refuser: self.refuser.clone(),
            max_connections: self.max_connections,
            release: self.release.clone(),
            _body: PhantomData,
        }
    }
}

impl<S, B> fmt::Debug for Connections<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("handler", &self.shared.handler)
            .field("server_software", &self.shared.server_software)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl<S, B> Connections<S, B>
where
    S: Application<B>,
    B: AppBody,
{
    /// Serves one accepted connection (HTTP/1.x, or HTTP/2 with prior
    /// knowledge) until it closes. Its stream may be any
    /// [`Stream`]: TCP, a Unix socket, or one whose first bytes were read
    /// already and are replayed ([`Stream::replay`]). It closes gracefully
    /// when its [`Connection::shutdown`] watch or the server's shutdown
    /// reports stopping, or after it has been idle (see [`Server`]).
    ///
    /// No connection cap is applied here: the accept loop counts.
    pub fn serve_connection(&self, conn: Connection) -> impl Future<Output = ()> + Send + 'static {
        let open = self.shared.handler.metrics().map(Metrics::connection);
        // Until its first bytes, and between requests, a connection holds
        // little more than its socket (see `conn`).
        serve_connection(conn, self.shared.clone(), open)
    }

    /// How many times a connection was parked (see `conn`).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> u64 {
        self.shared
            .parked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers a connection this server has no room for: reads the start of
    /// its request (at most 1 s and 8 KiB), answers
    /// `503 Service Unavailable` with `Retry-After: 1` (HTTP/2 with prior
    /// knowledge: GOAWAY with REFUSED_STREAM), and closes it with a
    /// lingering close. Each step is bounded; the whole takes a few
    /// seconds at most.
    pub async fn refuse(&self, stream: Stream) {
        self.refuser.refuse(stream).await;
    }

    /// [`refuse`](Connections::refuse) as a [`Refusal`], for
    /// [`gateway_core::server::serve`].
    pub fn refusal(&self) -> Refusal {
        self.refuser.refusal()
    }

    /// Accepts connections on `listener` and serves each on its own task
    /// until the server's shutdown is triggered, then lets them finish
    /// within the grace period. Past `max_connections` a new connection is
    /// [refused](Connections::refuse). This is
    /// [`gateway_core::server::serve`] with [`refusal`](Connections::refusal)
    /// and [`serve_connection`](Connections::serve_connection).
    ///
    /// # Errors
    ///
    /// None in practice: failed accepts are logged and the loop goes on.
    pub async fn serve(&self, listener: Listener) -> io::Result<()> {
        self.serve_capped(listener, self.connection_cap()).await
    }

    /// A new cap on connections for an accept loop serving these
    /// connections: at most [`Limits::max_connections`] at once, running
    /// the server's `release_memory_after_bursts` once a burst of
    /// connections has ended, when hyper also writes its cached `Date`
    /// afresh. [`serve`](Connections::serve) makes one
    /// per listener; give one to several accept loops of your own
    /// ([`gateway_core::server::serve`]) to cap them together.
    pub fn connection_cap(&self) -> ConnectionCap {
        let cap = ConnectionCap::new(self.max_connections)
            .release_memory_after_bursts(self.release.clone());
        cap.on_burst_end(crate::date::refresh);
        cap
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
        tracing::debug!("serving HTTP on {}", listener.local_addr_string());
        let this = self.clone();
        server::serve(
            listener,
            max_connections,
            self.shared.shutdown.clone(),
            self.refusal(),
            move |conn| {
                let this = this.clone();
                async move { this.serve_connection(conn).await }
            },
        )
        .await
    }
}

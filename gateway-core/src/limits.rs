//! Limits and timeouts shared by every backend.

use std::time::Duration;

/// Limits and timeouts, one type for every backend.
///
/// Each backend applies the ones that make sense for its protocol and
/// ignores the rest (a CGI program has no connections to count). The
/// defaults are safe for a server facing a web server on the same host;
/// raise them deliberately.
///
/// | limit | default | used by |
/// |---|---|---|
/// | [`max_head_len`](Limits::max_head_len) | 64 KiB | request head: FastCGI PARAMS, SCGI netstring, HTTP head |
/// | [`max_headers`](Limits::max_headers) | 100 | HTTP request header count, environ size |
/// | [`max_body_len`](Limits::max_body_len) | none | every backend: a larger declared body gets 413 |
/// | [`max_response_head_len`](Limits::max_response_head_len) | 64 KiB | the app's response head |
/// | [`head_read_timeout`](Limits::head_read_timeout) | 30 s | socket backends |
/// | [`body_read_timeout`](Limits::body_read_timeout) | 60 s | socket backends, per read |
/// | [`write_timeout`](Limits::write_timeout) | 60 s | socket backends, per write |
/// | [`idle_timeout`](Limits::idle_timeout) | 60 s | keep-alive connections |
/// | [`max_connections`](Limits::max_connections) | 1024 | socket servers: past it, new connections get a busy answer at once |
/// | [`listen_backlog`](Limits::listen_backlog) | 1024 | socket servers binding an address themselves |
/// | [`reuse_port`](Limits::reuse_port) | off | socket servers binding a TCP address themselves |
/// | [`max_requests_per_connection`](Limits::max_requests_per_connection) | none | keep-alive servers |
/// | [`app_timeout`](Limits::app_timeout) | none | every backend: the application's time to its response head |
/// | [`slow_request`](Limits::slow_request) | none | every backend: a request running longer is logged once |
///
/// ```
/// use gateway_core::Limits;
/// use std::time::Duration;
///
/// let mut limits = Limits::default();
/// limits.max_body_len(Some(10 << 20)).idle_timeout(Duration::from_secs(5));
/// assert_eq!(limits.get_max_body_len(), Some(10 << 20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    max_head_len: usize,
    max_headers: usize,
    max_body_len: Option<u64>,
    max_response_head_len: usize,
    head_read_timeout: Duration,
    body_read_timeout: Duration,
    write_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    listen_backlog: u32,
    reuse_port: bool,
    max_requests_per_connection: Option<u64>,
    app_timeout: Option<Duration>,
    slow_request: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_len: 64 * 1024,
            max_headers: 100,
            max_body_len: None,
            max_response_head_len: 64 * 1024,
            head_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            listen_backlog: 1024,
            reuse_port: false,
            max_requests_per_connection: None,
            app_timeout: None,
            slow_request: None,
        }
    }
}

macro_rules! limit {
    ($(#[$doc:meta])* $name:ident, $get:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&mut self, value: $ty) -> &mut Self {
            self.$name = value;
            self
        }

        #[doc = concat!("The current value of [`", stringify!($name), "`](Limits::", stringify!($name), ").")]
        pub fn $get(&self) -> $ty {
            self.$name
        }
    };
}

impl Limits {
    limit!(
        /// The largest request head in bytes (FastCGI PARAMS, SCGI header
        /// block, HTTP request line plus headers).
        max_head_len, get_max_head_len: usize
    );
    limit!(
        /// The most request header fields accepted: the HTTP server's parser
        /// refuses more (431); for the other backends the handler counts the
        /// `HTTP_*` variables the web server passed and answers 431 past it.
        max_headers, get_max_headers: usize
    );
    limit!(
        /// The largest request body in bytes; `None` for no limit. A request
        /// declaring more is answered 413 without calling the application; a
        /// body that turns out larger fails with a body error.
        max_body_len, get_max_body_len: Option<u64>
    );
    limit!(
        /// The largest response head the application may produce, in bytes
        /// (RFC 3875 sets none; web servers do, so a larger head is a 500).
        max_response_head_len, get_max_response_head_len: usize
    );
    limit!(
        /// How long a client may take to send the request head (slowloris).
        head_read_timeout, get_head_read_timeout: std::time::Duration
    );
    limit!(
        /// How long one read of the request body may wait.
        body_read_timeout, get_body_read_timeout: std::time::Duration
    );
    limit!(
        /// How long one write of the response may wait.
        write_timeout, get_write_timeout: std::time::Duration
    );
    limit!(
        /// How long a kept-alive connection may sit idle between requests.
        idle_timeout, get_idle_timeout: std::time::Duration
    );
    limit!(
        /// The most connections served at once. Past it, a new connection is
        /// accepted and answered at once with the protocol's busy reply
        /// (HTTP and SCGI: 503 with `Retry-After`; FastCGI: `END_REQUEST`
        /// with `FCGI_OVERLOADED`), then closed.
        max_connections, get_max_connections: usize
    );
    limit!(
        /// The listen backlog of a socket the server binds itself: how many
        /// connections the kernel holds before the server accepts them
        /// (capped by `net.core.somaxconn`). The server accepts at once and
        /// answers connections past `max_connections` with a busy reply, so
        /// the backlog only absorbs bursts.
        listen_backlog, get_listen_backlog: u32
    );
    limit!(
        /// Whether a TCP address the server binds itself gets
        /// `SO_REUSEPORT`, so that another process can listen on the same
        /// port at the same time: a new version starts listening before the
        /// old one stops (a rolling restart), and the kernel spreads new
        /// connections over every process on the port. Off by default, so a
        /// second server started by mistake on a port in use fails instead
        /// of sharing it. A socket handed over (systemd, fd 0) keeps the
        /// options it was created with.
        reuse_port, get_reuse_port: bool
    );
    limit!(
        /// The most requests served on one connection; `None` for no limit.
        max_requests_per_connection, get_max_requests_per_connection: Option<u64>
    );
    limit!(
        /// How long the application may take to produce its response head;
        /// `None` (the default) for no limit, since a response may
        /// legitimately wait (a long poll). Past it the application is
        /// dropped (cancelled) and the client gets 503 Service Unavailable,
        /// as Go's `http.TimeoutHandler` answers. A response whose head went
        /// out is bounded by `write_timeout` per write instead. Without it,
        /// the web server's own read timeout bounds the wait (nginx
        /// `fastcgi_read_timeout`, 60 s by default), after which it closes
        /// the connection and the server drops the application.
        app_timeout, get_app_timeout: Option<std::time::Duration>
    );
    limit!(
        /// How long a request may run before it is logged as slow; `None`
        /// (the default) logs none. A request still running past it — from
        /// the moment the handler calls the application to the end of the
        /// response — is logged once, at warn level (target
        /// `gateway_core::slow_request`, inside the request's span), with
        /// its method, URI, the time so far and what it is doing: `in the
        /// application` (no response head yet), `reading the request body`
        /// (the application waits for it), or `writing the response` (the
        /// body is being produced or sent). It is not stopped: see
        /// [`app_timeout`](Limits::app_timeout) for that. php-fpm's
        /// `request_slowlog_timeout`, without the stack dump. Needs a tokio
        /// runtime with the time driver.
        slow_request, get_slow_request: Option<std::time::Duration>
    );
}

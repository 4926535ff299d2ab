//! Facts about the gateway and connection (wsgiref's `wsgi.*` keys) and the
//! request's error stream.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::environ::Environ;

/// The protocol a request arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// CGI (RFC 3875), one process per request.
    Cgi,
    /// CGI under IIS, with its `PATH_INFO` quirk undone.
    IisCgi,
    /// FastCGI 1.0.
    FastCgi,
    /// SCGI.
    Scgi,
    /// Plain HTTP, this crate family being the origin server.
    Http,
    /// A backend from outside this workspace.
    Other(&'static str),
}

impl Protocol {
    /// A short lowercase name: `cgi`, `iis-cgi`, `fastcgi`, `scgi`, `http`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Cgi => "cgi",
            Protocol::IisCgi => "iis-cgi",
            Protocol::FastCgi => "fastcgi",
            Protocol::Scgi => "scgi",
            Protocol::Http => "http",
            Protocol::Other(name) => name,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway knows about how a request is served: wsgiref's
/// `wsgi.url_scheme`, `wsgi.multithread`, `wsgi.multiprocess`,
/// `wsgi.run_once`, plus the protocol, the form of the response head and the
/// socket addresses.
///
/// The handler puts one into every request's extensions, in its
/// [`RequestContext`]:
///
/// ```
/// # use gateway_core::RequestContext;
/// fn scheme(req: &http::Request<gateway_core::Body>) -> &'static str {
///     req.extensions()
///         .get::<RequestContext>()
///         .map_or("http", |cx| cx.info().url_scheme())
/// }
/// ```
///
/// A backend describes itself with one ([`Gateway::info`](crate::Gateway::info)),
/// built from [`GatewayInfo::new`] and the `with_*` methods; the handler
/// fills in the scheme (from the environ) and the request id:
///
/// ```
/// use gateway_core::{GatewayInfo, Protocol};
///
/// let info = GatewayInfo::new(Protocol::Scgi).with_multiprocess(false);
/// assert!(info.multithread() && !info.multiprocess() && !info.run_once());
/// assert!(!info.origin_server());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    pub(crate) https: bool,
    pub(crate) origin_server: bool,
    pub(crate) multithread: bool,
    pub(crate) multiprocess: bool,
    pub(crate) run_once: bool,
    pub(crate) protocol: Protocol,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) request_id: crate::logging::RequestId,
}

impl GatewayInfo {
    /// A backend of `protocol` with wsgiref's `BaseHandler` defaults:
    /// multithread, multiprocess, not run-once, a CGI-form head (not the
    /// origin server), no socket addresses.
    pub const fn new(protocol: Protocol) -> Self {
        Self {
            https: false,
            origin_server: false,
            multithread: true,
            multiprocess: true,
            run_once: false,
            protocol,
            peer_addr: None,
            local_addr: None,
            request_id: crate::logging::RequestId::NONE,
        }
    }

    /// Sets whether the backend is the origin server: it writes `HTTP/x.y`
    /// status lines (with `Date` and `Server` where the configuration asks)
    /// rather than a CGI `Status:` line.
    pub const fn with_origin_server(mut self, yes: bool) -> Self {
        self.origin_server = yes;
        self
    }

    /// Sets wsgi.multithread.
    pub const fn with_multithread(mut self, yes: bool) -> Self {
        self.multithread = yes;
        self
    }

    /// Sets wsgi.multiprocess.
    pub const fn with_multiprocess(mut self, yes: bool) -> Self {
        self.multiprocess = yes;
        self
    }

    /// Sets wsgi.run_once.
    pub const fn with_run_once(mut self, yes: bool) -> Self {
        self.run_once = yes;
        self
    }

    /// Sets the peer's and the local socket address, when known.
    pub const fn with_addrs(mut self, peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Self {
        self.peer_addr = peer;
        self.local_addr = local;
        self
    }

    /// Whether the response head is written in the origin form (`HTTP/x.y`
    /// status line) rather than the CGI form (`Status:`).
    pub fn origin_server(&self) -> bool {
        self.origin_server
    }

    /// `"https"` or `"http"` (wsgi.url_scheme, from `HTTPS`/`REQUEST_SCHEME`).
    pub fn url_scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// Whether the request came over TLS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Whether other requests may run at the same time in other threads of
    /// this process (wsgi.multithread).
    pub fn multithread(&self) -> bool {
        self.multithread
    }

    /// Whether other processes may serve the same application at the same
    /// time (wsgi.multiprocess).
    pub fn multiprocess(&self) -> bool {
        self.multiprocess
    }

    /// Whether this process serves only this one request (wsgi.run_once):
    /// true for CGI, so caches are pointless.
    pub fn run_once(&self) -> bool {
        self.run_once
    }

    /// The protocol the request arrived over.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The address of the peer (the web server, or the client for HTTP), when
    /// the backend knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The local address the request arrived on, when the backend knows it.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The request's id: what its `tracing` span and the lines the
    /// error-log layer writes for it show (see [`logging`](crate::logging)).
    pub fn request_id(&self) -> crate::logging::RequestId {
        self.request_id
    }
}

/// Where a request's diagnostics go (wsgiref's `wsgi.errors`): the CGI
/// process's stderr, FastCGI STDERR records, or a log.
///
/// Cheap to clone; every clone writes to the same place. The handler puts one
/// into every request's extensions (in its [`RequestContext`]) and writes
/// application failures to it.
///
/// ```
/// use gateway_core::ErrorStream;
///
/// let (stream, captured) = ErrorStream::capture();
/// stream.write(b"something odd\n");
/// assert_eq!(captured.contents(), b"something odd\n");
/// ```
#[derive(Clone)]
pub struct ErrorStream {
    sink: Arc<dyn ErrorSink>,
}

/// Where an [`ErrorStream`] writes: any `Fn(&[u8])`, or a type of its own
/// (see [`ErrorStream::from_shared`]).
pub trait ErrorSink: Send + Sync {
    /// Takes one message.
    fn write(&self, msg: &[u8]);
}

impl<F: Fn(&[u8]) + Send + Sync> ErrorSink for F {
    fn write(&self, msg: &[u8]) {
        self(msg)
    }
}

impl ErrorStream {
    /// An error stream that calls `sink` with each message.
    pub fn new(sink: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        Self {
            sink: Arc::new(sink),
        }
    }

    /// An error stream that writes to a sink the caller shares: no
    /// allocation of its own. A backend that keeps per-request state in an
    /// `Arc` anyway can make that state the request's error stream, and
    /// take the allocation back for the next request
    /// ([`Arc::get_mut`]) once every clone of the stream is gone.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use gateway_core::{ErrorSink, ErrorStream};
    ///
    /// struct Lines(Mutex<Vec<String>>);
    /// impl ErrorSink for Lines {
    ///     fn write(&self, msg: &[u8]) {
    ///         let line = String::from_utf8_lossy(msg).into_owned();
    ///         self.0.lock().unwrap().push(line);
    ///     }
    /// }
    ///
    /// let lines = Arc::new(Lines(Mutex::new(Vec::new())));
    /// let stream = ErrorStream::from_shared(lines.clone());
    /// stream.write(b"odd\n");
    /// drop(stream);
    /// let mut lines = lines;
    /// assert_eq!(Arc::get_mut(&mut lines).unwrap().0.get_mut().unwrap()[0], "odd\n");
    /// ```
    pub fn from_shared(sink: Arc<impl ErrorSink + 'static>) -> Self {
        Self { sink }
    }

    /// An error stream that writes to this process's standard error.
    pub fn stderr() -> Self {
        Self::new(|msg| {
            use std::io::Write;
            let _ = std::io::stderr().lock().write_all(msg);
        })
    }

    /// An error stream that discards everything.
    pub fn null() -> Self {
        Self::new(|_| {})
    }

    /// An error stream that sends messages to `tracing` at warn level.
    pub fn log() -> Self {
        Self::new(|msg| {
            let text = String::from_utf8_lossy(msg);
            tracing::warn!(target: "gateway::errors", "{}", text.trim_end());
        })
    }

    /// An error stream that keeps everything in memory, and a handle to read
    /// it back (for tests).
    pub fn capture() -> (Self, Captured) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let stream = Self::new(move |msg| {
            if let Ok(mut b) = sink.lock() {
                b.extend_from_slice(msg);
            }
        });
        (stream, Captured(buf))
    }

    /// Writes one message.
    pub fn write(&self, msg: &[u8]) {
        self.sink.write(msg)
    }
}

impl fmt::Debug for ErrorStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorStream")
    }
}

/// What an [`ErrorStream::capture`] stream has received.
#[derive(Debug, Clone)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Everything written so far, as lossy UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.contents()).into_owned()
    }
}

/// What the handler tells the application about its request, in the
/// request's extensions: the CGI meta-variables ([`Environ`]), the facts
/// about the gateway and connection ([`GatewayInfo`]) and the request's
/// error stream ([`ErrorStream`]), wsgiref's `environ` with its `wsgi.*`
/// keys.
///
/// One extension holds all three, which costs a request one entry in its
/// extensions instead of three.
///
/// ```
/// use gateway_core::RequestContext;
///
/// fn script_name(req: &http::Request<gateway_core::Body>) -> Vec<u8> {
///     req.extensions()
///         .get::<RequestContext>()
///         .map_or_else(Vec::new, |cx| cx.environ().script_name().to_vec())
/// }
/// ```
///
/// With axum, take it with the `Extension` extractor
/// (`Extension(cx): Extension<RequestContext>`).
#[derive(Debug, Clone)]
pub struct RequestContext {
    environ: Environ,
    info: GatewayInfo,
    errors: ErrorStream,
}

impl RequestContext {
    /// A context of these parts, for tests and for applications run by
    /// hand (the handler makes one for every request).
    pub fn new(environ: Environ, info: GatewayInfo, errors: ErrorStream) -> Self {
        Self {
            environ,
            info,
            errors,
        }
    }

    /// The request's CGI meta-variables.
    pub fn environ(&self) -> &Environ {
        &self.environ
    }

    /// The request's meta-variables, to change (middleware that adjusts
    /// what the application sees).
    pub fn environ_mut(&mut self) -> &mut Environ {
        &mut self.environ
    }

    /// Facts about the gateway and connection: the scheme, the protocol,
    /// the `wsgi.*` flags, the socket addresses, the request id.
    pub fn info(&self) -> &GatewayInfo {
        &self.info
    }

    /// The request's error stream (wsgi.errors).
    pub fn errors(&self) -> &ErrorStream {
        &self.errors
    }

    /// The three parts.
    pub fn into_parts(self) -> (Environ, GatewayInfo, ErrorStream) {
        (self.environ, self.info, self.errors)
    }
}

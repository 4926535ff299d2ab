//! One HTTP request as a [`Gateway`]: the environ derived from hyper's
//! request the way wsgiref's `simple_server` does, the request handed to the
//! application as hyper parsed it, the head and body chunks passed to the
//! response body hyper polls through a one-chunk [`Exchange`].

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use gateway_core::{
    Body, Environ, EnvironSource, Error, ErrorStream, Gateway, GatewayInfo, HeadFormat, Protocol,
    RequestFacts, ResponseHead,
};
use http::header::HeaderName;
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version, header, response};

/// What a request's handler hands the response body hyper polls: the head
/// once, then one chunk at a time.
///
/// The handler runs inside the response body (see `conn`), so producer and
/// consumer are polled by the same task: a write finding the slot taken
/// returns `Pending`, and the body polls the handler again as soon as it
/// has passed the chunk on. No waker, no channel.
#[derive(Default)]
pub(crate) struct Exchange {
    pub(crate) head: Option<response::Parts>,
    pub(crate) chunk: Option<Bytes>,
    /// The response failed after its head: end the body with an error.
    pub(crate) abort: Option<&'static str>,
    /// The `Content-Length` the core gave the response, kept out of the
    /// head: the response body offers it to hyper as its exact size, and
    /// hyper writes the field.
    pub(crate) length: Option<u64>,
}

/// The exchange of one request, shared by its gateway and response body.
#[derive(Clone, Default)]
pub(crate) struct SharedExchange(Arc<Mutex<Exchange>>);

impl SharedExchange {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Exchange> {
        // Nothing panics while holding the lock; a poisoned one is still
        // consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exchange for a connection's next request: `spare`, emptied, when
    /// no earlier request holds it any more (HTTP/1 answers one request
    /// after the other), else a new one, kept as the spare. One allocation
    /// per connection rather than per request.
    pub(crate) fn reuse(spare: &std::cell::Cell<Option<SharedExchange>>) -> SharedExchange {
        let x = match spare.take() {
            Some(x) if Arc::strong_count(&x.0) == 1 => {
                {
                    let mut left = x.lock();
                    // Usually empty: the last response took it all.
                    if left.head.is_some()
                        || left.chunk.is_some()
                        || left.abort.is_some()
                        || left.length.is_some()
                    {
                        *left = Exchange::default();
                    }
                }
                x
            }
            _ => SharedExchange::default(),
        };
        spare.set(Some(x.clone()));
        x
    }
}

/// A connection's addresses, formatted once for every request's environ,
/// and the `Server` header of its responses, checked once.
pub(crate) struct Addrs {
    server_header: Option<HeaderValue>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    local_ip: Bytes,
    local_port: Bytes,
    peer_ip: Bytes,
    peer_port: Bytes,
    /// The first request's `Host` and its authority: the requests after it
    /// on the connection name the same host, which is then not parsed
    /// again.
    first_host: OnceLock<(HeaderValue, Authority)>,
    /// The server's `SERVER_SOFTWARE`.
    server_software: Option<Bytes>,
    /// The server's error stream (the environ, which holds these addresses,
    /// never writes to it).
    errors: AssertUnwindSafe<ErrorStream>,
}

impl Addrs {
    pub(crate) fn new(
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        server_software: Option<&Bytes>,
        errors: &ErrorStream,
    ) -> Self {
        let ip = |a: Option<SocketAddr>| a.map(|a| Bytes::from(a.ip().to_string()));
        let port = |a: Option<SocketAddr>| a.map(|a| Bytes::from(a.port().to_string()));
        Self {
            server_header: server_software
                .and_then(|s| HeaderValue::from_maybe_shared(s.clone()).ok()),
            peer,
            local,
            local_ip: ip(local).unwrap_or_default(),
            local_port: port(local).unwrap_or_default(),
            peer_ip: ip(peer).unwrap_or_default(),
            peer_port: port(peer).unwrap_or_default(),
            first_host: OnceLock::new(),
            server_software: server_software.cloned(),
            errors: AssertUnwindSafe(errors.clone()),
        }
    }

    /// The authority of a request whose only `Host` field is `host`
    /// (`None`: not a valid authority).
    fn authority(&self, host: &HeaderValue) -> Option<Authority> {
        if let Some((first, authority)) = self.first_host.get()
            && first == host
        {
            return Some(authority.clone());
        }
        let authority =
            Authority::from_maybe_shared(Bytes::copy_from_slice(host.as_bytes())).ok()?;
        let _ = self.first_host.set((host.clone(), authority.clone()));
        Some(authority)
    }
}

/// One request on an HTTP connection.
pub(crate) struct HttpGateway {
    /// The request as hyper parsed it, until the application gets it.
    pub(crate) parts: Option<Parts>,
    pub(crate) body: Option<Body>,
    pub(crate) addrs: Arc<Addrs>,
    pub(crate) exchange: SharedExchange,
    pub(crate) head_sent: bool,
    /// The connection's last request (HTTP/1.x): the response says
    /// `Connection: close`.
    pub(crate) close: bool,
    /// The `Host` header (or HTTP/2 authority) as the environ holds it.
    pub(crate) host: Option<Bytes>,
    /// An HTTP/1.1 request: hyper hands the connection to the application
    /// after a 101.
    pub(crate) upgradable: bool,
    /// Neither `HEAD` nor `CONNECT`: a response body of known size goes
    /// out with the `Content-Length` hyper derives from it, so the core's
    /// length can be handed to hyper as the body's size.
    pub(crate) length_by_body: bool,
    /// What the pass that lists the fields for the environ found of the
    /// fields read for every request (no lookup in the map for them).
    pub(crate) seen: Option<Seen>,
    /// The copy of the head the environ is made from: the connection's
    /// spare one when it has one (see [`Captured`]).
    pub(crate) captured: Option<Arc<Captured>>,
}

/// The request head a deferred environ is made from: hyper's method and
/// version, the bytes of its request target and field values copied into
/// one buffer, the field names beside the offsets where their values end
/// (repeated names one after the other, as a `HeaderMap` iterates them).
///
/// A connection keeps one from a request to the next: once the request is
/// over and nothing holds it (the environ was dropped with the request),
/// it is filled again for the next request, so neither the buffer nor the
/// list is allocated for every request. Copying the bytes costs less than
/// sharing them with hyper's read buffer (a count taken and given back for
/// every value), and it holds nothing of hyper's.
#[derive(Default)]
pub(crate) struct Captured {
    method: Method,
    version: Version,
    /// The target's path and query (`/` without one), its path, its query,
    /// its authority, then the field values, one after the other.
    bytes: Vec<u8>,
    /// Where in `bytes` the target, the path, the query and the authority
    /// end (the path starts at 0 when the target starts with it).
    raw_end: usize,
    path: (usize, usize),
    query: Option<(usize, usize)>,
    authority: Option<(usize, usize)>,
    /// Where the first value starts.
    values: usize,
    fields: Vec<(HeaderName, usize)>,
    /// The connection's addresses (set by the first request).
    addrs: Option<Arc<Addrs>>,
    /// The environ made from it, once something read it.
    made: OnceLock<Environ>,
}

/// The deferred environ of a request holds the connection's captured head
/// itself (a reference count, no allocation per request).
impl EnvironSource for Captured {
    fn environ(&self) -> &Environ {
        self.made.get_or_init(|| {
            let mut env = Environ::new();
            if let Some(addrs) = &self.addrs {
                derive_environ(
                    &mut env,
                    &self.head(),
                    addrs,
                    addrs.server_software.as_ref(),
                );
            }
            env
        })
    }
}

impl Captured {
    /// Fills it from `parts`; returns what the pass found of the fields
    /// read for every request.
    fn fill(&mut self, parts: &Parts) -> Seen {
        self.method.clone_from(&parts.method);
        self.version = parts.version;
        let uri = &parts.uri;
        let bytes = &mut self.bytes;
        bytes.clear();
        let raw = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes();
        bytes.extend_from_slice(raw);
        self.raw_end = raw.len();
        // The path and query are slices of the target (found by where they
        // are, not by comparing bytes); one that is not (the `/` of an
        // empty path) is copied.
        let raw_at = raw.as_ptr() as usize;
        let mut place = |b: &[u8]| {
            let start = (b.as_ptr() as usize).wrapping_sub(raw_at);
            if start <= raw.len() && b.len() <= raw.len() - start {
                return (start, start + b.len());
            }
            let start = bytes.len();
            bytes.extend_from_slice(b);
            (start, bytes.len())
        };
        self.path = place(uri.path().as_bytes());
        self.query = uri.query().map(|q| place(q.as_bytes()));
        self.authority = uri.authority().map(|a| {
            let start = bytes.len();
            bytes.extend_from_slice(a.as_str().as_bytes());
            (start, bytes.len())
        });
        self.values = bytes.len();
        let headers = &parts.headers;
        let fields = &mut self.fields;
        fields.reserve(headers.len().saturating_sub(fields.len()));
        let mut seen = Seen::default();
        let mut count = 0;
        for (n, v) in headers {
            seen.note(n, v);
            bytes.extend_from_slice(v.as_bytes());
            // A connection's requests mostly carry the same fields in the
            // same order: the name the last request had here is kept when
            // it is the same. (A clone of a name that is not one of the
            // standard ones makes its bytes shared: an allocation, freed
            // with the last clone.)
            match fields.get_mut(count) {
                Some((name, end)) if *name == *n => *end = bytes.len(),
                Some(field) => *field = (n.clone(), bytes.len()),
                None => fields.push((n.clone(), bytes.len())),
            }
            count += 1;
        }
        fields.truncate(count);
        seen
    }

    fn head(&self) -> Head<'_> {
        let at = |(start, end): (usize, usize)| self.bytes.get(start..end).unwrap_or_default();
        Head {
            method: &self.method,
            version: self.version,
            raw: at((0, self.raw_end)),
            path: at(self.path),
            query: self.query.map(at),
            authority: self.authority.map(at),
            values: self.bytes.get(self.values..).unwrap_or_default(),
            values_start: self.values,
            fields: &self.fields,
        }
    }
}

/// The fields read for every request, as one pass over the request's
/// fields finds them.
#[derive(Default)]
pub(crate) struct Seen {
    /// The first `Host`, and whether there are more.
    host: Option<HeaderValue>,
    more_hosts: bool,
    /// How many `Content-Length` fields (0, 1 or 2 for more).
    lengths: u8,
    transfer_coding: bool,
}

impl HttpGateway {
    /// Ends the response body with an error, so hyper closes the connection
    /// without a clean end (no chunked terminator, a short Content-Length
    /// body; an HTTP/2 stream reset): the client sees truncation.
    pub(crate) fn abort(&mut self, why: &'static str) {
        self.exchange.lock().abort = Some(why);
    }

    /// The captured head, for the connection's next request to fill again;
    /// `None` while something still holds it (an environ the application
    /// kept).
    pub(crate) fn release(&mut self) -> Option<Arc<Captured>> {
        let mut captured = self.captured.take()?;
        // Emptied when filled again.
        Arc::get_mut(&mut captured)?;
        Some(captured)
    }
}

impl Gateway for HttpGateway {
    const LENGTH_APART: bool = true;

    fn write(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send {
        let exchange = &self.exchange;
        let mut data = Some(data);
        std::future::poll_fn(move |_| {
            let mut x = exchange.lock();
            if x.chunk.is_some() {
                // The response body takes the chunk, then polls this again.
                return Poll::Pending;
            }
            x.chunk = data.take();
            Poll::Ready(Ok(()))
        })
    }

    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        // hyper flushes whenever the body would block.
        std::future::ready(Ok(()))
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        self.body.take().unwrap_or_default()
    }

    fn stderr(&self) -> ErrorStream {
        self.addrs.errors.0.clone()
    }

    /// The environ is deferred: made from a copy of the request head the
    /// first time something reads it (most applications never do), unless
    /// the handler's base environ is not empty. The copy is one buffer of
    /// the target's and values' bytes and one list of names, both reused
    /// from request to request of the connection, not a second header map.
    fn add_cgi_vars(&mut self, env: &mut Environ) {
        let Some(parts) = &self.parts else {
            return;
        };
        let mut captured = self.captured.take().unwrap_or_default();
        if Arc::get_mut(&mut captured).is_none() {
            // Still held by an earlier request's environ.
            captured = Arc::default();
        }
        if let Some(c) = Arc::get_mut(&mut captured) {
            self.seen = Some(c.fill(parts));
            // The environ the last request made from it is its own no more.
            c.made.take();
            if c.addrs.is_none() {
                c.addrs = Some(self.addrs.clone());
            }
        }
        if !env.is_empty() {
            self.host = derive_environ(
                env,
                &captured.head(),
                &self.addrs,
                self.addrs.server_software.as_ref(),
            );
            self.captured = Some(captured);
            return;
        }
        let head = captured.clone();
        self.captured = Some(captured);

        // The handler asks `request_facts` for what it reads of every
        // request: nothing of the environ is needed up front.
        env.defer_to(head);
    }

    /// The request as hyper parsed it (headers as they arrived, repeated
    /// fields separate), with the scheme and authority filled in from
    /// `Host` as every other backend gives them.
    fn request(&mut self, environ: &Environ, body: Body) -> Result<Request<Body>, Error> {
        let Some(parts) = self.parts.take() else {
            return gateway_core::request::build_request(environ, body);
        };
        // Made first and mended in place: one copy of the head less.
        let mut req = Request::from_parts(parts, body);
        if req.uri().authority().is_some() {
            return Ok(req);
        }
        let authority = match self.host.take() {
            // Derived with the environ (repeated fields joined).
            Some(host) if host.is_empty() => return Ok(req),
            Some(host) => Authority::from_maybe_shared(host).ok(),
            None => {
                let seen = match self.seen.take() {
                    Some(seen) => seen,
                    None => Seen::of(req.headers()),
                };
                match (seen.host, seen.more_hosts) {
                    (None, _) => return Ok(req),
                    (Some(h), false) if h.is_empty() => return Ok(req),
                    // The usual case: one `Host`, the same on every
                    // request of the connection.
                    (Some(h), false) => self.addrs.authority(&h),
                    (Some(_), true) => match host_of(req.headers()) {
                        Some(host) => Authority::from_maybe_shared(host).ok(),
                        None => return Ok(req),
                    },
                }
            }
        };
        let Some(authority) = authority else {
            // An invalid Host: the shared rule makes it a 400.
            return gateway_core::request::build_request(environ, req.into_body());
        };
        let mut uri = std::mem::take(req.uri_mut()).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        match Uri::from_parts(uri) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return gateway_core::request::build_request(environ, req.into_body()),
        }
        Ok(req)
    }

    /// HTTP/1.1: hyper hands the connection to the application (through
    /// the `OnUpgrade` in the request's extensions) once the 101 is out.
    fn supports_upgrade(&self) -> bool {
        self.upgradable
    }

    /// From hyper's request, with the values the environ gives them
    /// (repeated `Content-Length` fields joined with `,`); hyper applied the
    /// cap on header fields.
    fn request_facts(&self) -> Option<RequestFacts> {
        let parts = self.parts.as_ref()?;
        let computed;
        let seen = match &self.seen {
            Some(seen) => seen,
            None => {
                computed = Seen::of(&parts.headers);
                &computed
            }
        };
        // Looked up only when there is one (most requests have none).
        let first = match seen.lengths {
            0 => None,
            _ => parts
                .headers
                .get(header::CONTENT_LENGTH)
                .map(HeaderValue::as_bytes),
        };
        // Repeated fields (rare): joined with `,`, as the environ has them.
        let joined = (seen.lengths > 1).then(|| {
            let mut j = Vec::new();
            for (i, v) in parts
                .headers
                .get_all(header::CONTENT_LENGTH)
                .iter()
                .enumerate()
            {
                if i > 0 {
                    j.push(b',');
                }
                j.extend_from_slice(v.as_bytes());
            }
            j
        });
        Some(RequestFacts::new(
            &parts.method,
            parts.version,
            joined.as_deref().or(first),
            seen.transfer_coding,
        ))
    }

    fn info(&self) -> GatewayInfo {
        GatewayInfo::new(Protocol::Http)
            .with_origin_server(true)
            .with_multiprocess(false)
            .with_addrs(self.addrs.peer, self.addrs.local)
    }

    /// Not used: the head is taken whole (see `take_head`).
    fn write_head(
        &mut self,
        _head: &mut ResponseHead<'_>,
        _format: &HeadFormat,
        _buf: &mut BytesMut,
    ) {
    }

    const TAKES_HEAD: bool = true;

    /// Hands the head to hyper (which writes the status line and adds
    /// `Date`) as the application made it: its headers are not copied, and
    /// no second head is made.
    fn take_head(&mut self, head: response::Parts, content_length: Option<u64>) {
        if self.head_sent {
            return;
        }
        self.head_sent = true;
        let mut parts = head;
        // What hyper is given besides the status and headers is as it
        // always was: HTTP/1.1 (hyper answers an HTTP/1.0 request in
        // kind), and no extension but the reason phrase.
        parts.version = Version::HTTP_11;
        let reason = parts.extensions.remove::<gateway_core::ReasonPhrase>();
        parts.extensions.clear();
        if let Some(v) = &self.addrs.server_header
            && !has_field(&parts.headers, &header::SERVER)
        {
            // Added in place, after the application's headers: the map is
            // not rebuilt.
            parts.headers.append(header::SERVER, v.clone());
        }
        if self.close && parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(reason) = reason
            && let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason.0)
        {
            parts.extensions.insert(r);
        }
        // The core's length goes to hyper as the body's exact size (hyper
        // writes the field), save where hyper would not write it from the
        // size: an empty body (HTTP/2 sends none) and a HEAD or CONNECT
        // answer. There it stays a field of the head.
        let mut length = None;
        match content_length {
            Some(n) if n > 0 && self.length_by_body => length = Some(n),
            Some(n) => {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {}
        }
        let mut x = self.exchange.lock();
        x.head = Some(parts);
        x.length = length;
    }
}

/// The CGI meta-variables for an HTTP request, as wsgiref's
/// `WSGIRequestHandler.get_environ` makes them: `SCRIPT_NAME` is
/// empty, `PATH_INFO` the percent-decoded path, `QUERY_STRING` raw,
/// `CONTENT_TYPE`/`CONTENT_LENGTH` only when the request has them (no
/// `text/plain` default), `HTTP_*` with repeated fields joined by `,`.
/// Header names holding `_` are left out of the environ (as `simple_server`
/// does, so `X_Forwarded_For` cannot pose as `X-Forwarded-For`); the
/// application still sees every header in the request.
pub(crate) fn derive_environ(
    env: &mut Environ,
    parts: &Head<'_>,
    addrs: &Addrs,
    software: Option<&Bytes>,
) -> Option<Bytes> {
    let headers = parts.fields();
    let raw = parts.raw;

    // Every value copied from the request goes into one buffer, and each
    // environ entry is a slice of it: one allocation, not one per value.
    let mut size = 2 * raw.len() + parts.authority.map_or(0, <[u8]>::len);
    for (name, value) in headers.clone() {
        size += value.len() + name.as_str().len() + 6;
    }
    let mut arena = Arena(BytesMut::with_capacity(size));

    // The names below are distinct (header names are unique in the map, and
    // all of them get the `HTTP_` prefix), so a fresh environ takes them
    // without a lookup each.
    let fresh = env.is_empty();
    env.reserve(14 + parts.fields.len());
    let set = |env: &mut Environ, name: Bytes, value: Bytes| {
        if fresh {
            env.push(name, value);
        } else {
            env.insert(name, value);
        }
    };
    let var = |name: &'static str| Bytes::from_static(name.as_bytes());
    set(
        env,
        var("SERVER_SOFTWARE"),
        software.cloned().unwrap_or_default(),
    );
    set(env, var("GATEWAY_INTERFACE"), var("CGI/1.1"));
    set(env, var("SERVER_PROTOCOL"), var(version_str(parts.version)));
    set(env, var("REQUEST_METHOD"), method_bytes(parts.method));
    set(env, var("SCRIPT_NAME"), Bytes::new());
    set(env, var("PATH_INFO"), arena.decoded(parts.path));
    set(
        env,
        var("QUERY_STRING"),
        arena.copy(parts.query.unwrap_or_default()),
    );
    set(env, var("REQUEST_URI"), arena.copy(raw));

    // One pass over the headers: repeated fields come one after the other
    // and are joined with `,`.
    let mut host: Option<Bytes> = None;
    let mut current: Option<(&HeaderName, Bytes)> = None;
    for (name, value) in headers {
        if let Some((prev, _)) = &current
            && *prev == name
        {
            arena.0.extend_from_slice(b",");
            arena.0.extend_from_slice(value);
            continue;
        }
        if let Some((prev, key)) = current.take() {
            let value = arena.take();
            if *prev == header::HOST {
                host = Some(value.clone());
            }
            set(env, key, value);
        }
        let key = if *name == header::CONTENT_TYPE {
            var("CONTENT_TYPE")
        } else if *name == header::CONTENT_LENGTH {
            var("CONTENT_LENGTH")
        } else if name.as_str().contains('_') {
            continue;
        } else {
            arena.env_name(name.as_str())
        };
        arena.0.extend_from_slice(value);
        current = Some((name, key));
    }
    if let Some((prev, key)) = current {
        let value = arena.take();
        if *prev == header::HOST {
            host = Some(value.clone());
        }
        set(env, key, value);
    }
    if host.is_none()
        && let Some(a) = parts.authority
    {
        // HTTP/2 carries the host in :authority.
        let a = arena.copy(a);
        set(env, var("HTTP_HOST"), a.clone());
        host = Some(a);
    }

    // SERVER_NAME/PORT: the Host the client asked for, else the socket.
    let (host_name, host_port) = match &host {
        Some(h) => {
            let (name, port) = split_host(h);
            (Some(name).filter(|n| !n.is_empty()), port)
        }
        None => (None, None),
    };
    let name = match (host_name, addrs.local) {
        (Some(h), _) => h,
        (None, Some(_)) => addrs.local_ip.clone(),
        (None, None) => var("localhost"),
    };
    set(env, var("SERVER_NAME"), name);
    let port = match (addrs.local, host_port) {
        (Some(_), _) => addrs.local_port.clone(),
        (None, Some(p)) => p,
        (None, None) => var("80"),
    };
    set(env, var("SERVER_PORT"), port);
    if addrs.peer.is_some() {
        set(env, var("REMOTE_ADDR"), addrs.peer_ip.clone());
        set(env, var("REMOTE_PORT"), addrs.peer_port.clone());
    }
    host
}

/// The request head an environ is derived from (see [`Captured`]).
pub(crate) struct Head<'a> {
    method: &'a Method,
    version: Version,
    /// The request target's path and query (`/` without one).
    raw: &'a [u8],
    path: &'a [u8],
    query: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
    /// The field values, one after the other, starting at `values_start`
    /// of the offsets in `fields`.
    values: &'a [u8],
    values_start: usize,
    /// The field names and where their values end, repeated names one
    /// after the other (as a `HeaderMap` iterates them).
    fields: &'a [(HeaderName, usize)],
}

impl<'a> Head<'a> {
    /// The fields: names and values.
    fn fields(&self) -> impl Iterator<Item = (&'a HeaderName, &'a [u8])> + Clone + use<'a> {
        let (values, base) = (self.values, self.values_start);
        let mut start = base;
        self.fields.iter().map(move |(name, end)| {
            let value = values.get(start - base..end - base).unwrap_or_default();
            start = *end;
            (name, value)
        })
    }
}

impl Seen {
    /// The fields of `headers` read for every request.
    fn of(headers: &HeaderMap) -> Seen {
        let mut seen = Seen::default();
        for (n, v) in headers {
            seen.note(n, v);
        }
        seen
    }

    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if *name == header::HOST {
            if self.host.is_some() {
                self.more_hosts = true;
            } else {
                self.host = Some(value.clone());
            }
        } else if *name == header::CONTENT_LENGTH {
            self.lengths = self.lengths.saturating_add(1).min(2);
        } else if *name == header::TRANSFER_ENCODING {
            self.transfer_coding = true;
        }
    }
}

/// Whether `headers` has a field `name`: a look at each name of a small
/// map (most responses have a few fields), which costs less than hashing
/// the name; a lookup in a larger one.
fn has_field(headers: &HeaderMap, name: &HeaderName) -> bool {
    if headers.keys_len() <= 8 {
        headers.keys().any(|k| k == name)
    } else {
        headers.contains_key(name)
    }
}

/// The `Host` the environ's `HTTP_HOST` holds (repeated fields joined with
/// `,`; the `:authority` of an HTTP/2 request is not taken here, the
/// request's URI has it already).
fn host_of(headers: &HeaderMap) -> Option<Bytes> {
    let mut host = Joined::default();
    for value in headers.get_all(header::HOST) {
        host.add(value);
    }
    host.get()
}

/// A field's value as the environ holds it: repeated fields joined with
/// `,`.
#[derive(Default)]
struct Joined(Option<Bytes>, Option<BytesMut>);

impl Joined {
    fn add(&mut self, v: &HeaderValue) {
        match (&self.0, &mut self.1) {
            (None, _) => self.0 = Some(Bytes::copy_from_slice(v.as_bytes())),
            (Some(first), None) => {
                let mut j = BytesMut::from(&first[..]);
                j.extend_from_slice(b",");
                j.extend_from_slice(v.as_bytes());
                self.1 = Some(j);
            }
            (Some(_), Some(j)) => {
                j.extend_from_slice(b",");
                j.extend_from_slice(v.as_bytes());
            }
        }
    }

    fn get(self) -> Option<Bytes> {
        match self {
            Joined(_, Some(j)) => Some(j.freeze()),
            Joined(first, None) => first,
        }
    }
}

/// The buffer an environ's values are cut from.
struct Arena(BytesMut);

impl Arena {
    /// What was written since the last cut.
    fn take(&mut self) -> Bytes {
        self.0.split().freeze()
    }

    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.is_empty() {
            return Bytes::new();
        }
        self.0.extend_from_slice(bytes);
        self.take()
    }

    /// Percent-decodes a path (an invalid escape stays as it is).
    fn decoded(&mut self, s: &[u8]) -> Bytes {
        percent_decode_into(&mut self.0, s);
        self.take()
    }

    /// `user-agent` → `HTTP_USER_AGENT` (common names without copying).
    fn env_name(&mut self, name: &str) -> Bytes {
        if let Some(known) = known_env_name(name) {
            return Bytes::from_static(known.as_bytes());
        }
        self.0.extend_from_slice(b"HTTP_");
        self.0.extend(name.bytes().map(|b| {
            if b == b'-' {
                b'_'
            } else {
                b.to_ascii_uppercase()
            }
        }));
        self.take()
    }
}

/// The environ names of the most common request headers.
fn known_env_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "host" => "HTTP_HOST",
        "user-agent" => "HTTP_USER_AGENT",
        "accept" => "HTTP_ACCEPT",
        "accept-encoding" => "HTTP_ACCEPT_ENCODING",
        "accept-language" => "HTTP_ACCEPT_LANGUAGE",
        "connection" => "HTTP_CONNECTION",
        "cookie" => "HTTP_COOKIE",
        "referer" => "HTTP_REFERER",
        "authorization" => "HTTP_AUTHORIZATION",
        _ => return None,
    })
}

fn method_bytes(m: &Method) -> Bytes {
    let known: &'static str = match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => return Bytes::copy_from_slice(m.as_str().as_bytes()),
    };
    Bytes::from_static(known.as_bytes())
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `host:port` → (`host`, `port`), keeping `[v6]` hosts whole.
fn split_host(h: &Bytes) -> (Bytes, Option<Bytes>) {
    let close = h.iter().rposition(|&b| b == b']');
    match h.iter().rposition(|&b| b == b':') {
        Some(i) if close.is_none_or(|c| i > c) => (h.slice(..i), Some(h.slice(i + 1..))),
        _ => (h.clone(), None),
    }
}

/// Percent-decodes a path into `out` (an invalid escape stays as it is).
fn percent_decode_into(out: &mut BytesMut, s: &[u8]) {
    if !s.contains(&b'%') {
        out.extend_from_slice(s);
        return;
    }
    out.reserve(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| (c as char).to_digit(16)),
                s.get(i + 2).and_then(|&c| (c as char).to_digit(16)),
            )
        {
            out.extend_from_slice(&[(h * 16 + l) as u8]);
            i += 3;
            continue;
        }
        out.extend_from_slice(&[b]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_paths() {
        let mut arena = Arena(BytesMut::new());
        assert_eq!(&arena.decoded(b"/p%61th/%2F%zz%4")[..], b"/path//%zz%4");
        assert_eq!(&arena.decoded(b"/plain")[..], b"/plain");
    }

    #[test]
    fn env_names_and_methods() {
        let mut arena = Arena(BytesMut::new());
        assert_eq!(&arena.env_name("user-agent")[..], b"HTTP_USER_AGENT");
        assert_eq!(&arena.env_name("x-test-header")[..], b"HTTP_X_TEST_HEADER");
        assert_eq!(&method_bytes(&Method::HEAD)[..], b"HEAD");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(&method_bytes(&odd)[..], b"PROPFIND");
    }

    /// The environ of a request target, made from a captured head.
    fn environ_of(method: &str, target: &str, fields: &[(&str, &str)]) -> Environ {
        let mut req = Request::builder().method(method).uri(target);
        for (n, v) in fields {
            req = req.header(*n, *v);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let mut captured = Captured::default();
        // Filled twice: what the first request left does not show.
        let (first, ()) = Request::builder()
            .uri("/earlier/path?q=1")
            .header("x-earlier", "a long value of an earlier request")
            .body(())
            .unwrap()
            .into_parts();
        captured.fill(&first);
        captured.fill(&parts);
        let addrs = Addrs::new(None, None, None, &ErrorStream::new(|_| {}));
        let mut env = Environ::new();
        derive_environ(&mut env, &captured.head(), &addrs, None);
        env
    }

    /// A connection's heads, one after the other, each with the fields of
    /// its own request: the same names as the last one, one changed, more,
    /// fewer, none, and others again.
    #[test]
    fn captured_fields_are_each_requests_own() {
        let heads: [&[(&str, &str)]; 7] = [
            &[
                ("host", "a"),
                ("sec-fetch-mode", "navigate"),
                ("x-one", "1"),
            ],
            &[("host", "b"), ("sec-fetch-mode", "cors"), ("x-one", "2")],
            &[
                ("host", "c"),
                ("sec-fetch-site", "none"),
                ("x-one", "3"),
                ("x-two", "4"),
            ],
            &[("host", "d")],
            &[],
            &[("x-two", "5"), ("host", "e"), ("x-two", "6")],
            &[("x-two", "7"), ("sec-fetch-site", "same-origin")],
        ];
        let mut captured = Captured::default();
        for fields in heads {
            let mut req = Request::builder().uri("/");
            for (n, v) in fields {
                req = req.header(*n, *v);
            }
            let (parts, ()) = req.body(()).unwrap().into_parts();
            captured.fill(&parts);
            let got: Vec<(String, String)> = captured
                .head()
                .fields()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            // The map's order: a name's values together, at its first place.
            let want: Vec<(String, String)> = parts
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn captured_heads_give_the_target_and_fields() {
        let get =
            |env: &Environ, n: &str| env.get(n).map(|v| String::from_utf8_lossy(v).into_owned());
        let env = environ_of(
            "GET",
            "/p%20q?a=1&b",
            &[
                ("host", "h:81"),
                ("accept", "a"),
                ("accept", "b"),
                ("x-y", "z"),
            ],
        );
        assert_eq!(get(&env, "PATH_INFO").as_deref(), Some("/p q"));
        assert_eq!(get(&env, "QUERY_STRING").as_deref(), Some("a=1&b"));
        assert_eq!(get(&env, "REQUEST_URI").as_deref(), Some("/p%20q?a=1&b"));
        assert_eq!(get(&env, "HTTP_ACCEPT").as_deref(), Some("a,b"));
        assert_eq!(get(&env, "HTTP_X_Y").as_deref(), Some("z"));
        assert_eq!(get(&env, "SERVER_NAME").as_deref(), Some("h"));
        assert_eq!(get(&env, "HTTP_X_EARLIER"), None);

        let env = environ_of("GET", "/a?", &[]);
        assert_eq!(get(&env, "PATH_INFO").as_deref(), Some("/a"));
        assert_eq!(get(&env, "QUERY_STRING").as_deref(), Some(""));
        assert_eq!(get(&env, "REQUEST_URI").as_deref(), Some("/a?"));

        let env = environ_of("OPTIONS", "*", &[]);
        assert_eq!(get(&env, "PATH_INFO").as_deref(), Some("*"));
        assert_eq!(get(&env, "REQUEST_URI").as_deref(), Some("*"));

        // Authority-form (CONNECT): no path; the host from the authority.
        let env = environ_of("CONNECT", "example.com:443", &[]);
        assert_eq!(get(&env, "PATH_INFO").as_deref(), Some(""));
        assert_eq!(get(&env, "REQUEST_URI").as_deref(), Some("/"));
        assert_eq!(get(&env, "HTTP_HOST").as_deref(), Some("example.com:443"));

        // Absolute-form: the path and query of the target.
        let env = environ_of("GET", "http://example.com/x?y", &[]);
        assert_eq!(get(&env, "PATH_INFO").as_deref(), Some("/x"));
        assert_eq!(get(&env, "QUERY_STRING").as_deref(), Some("y"));
        assert_eq!(get(&env, "REQUEST_URI").as_deref(), Some("/x?y"));
        assert_eq!(get(&env, "HTTP_HOST").as_deref(), Some("example.com"));
    }

    #[test]
    fn finds_fields_in_small_and_large_maps() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("a"));
        assert!(!has_field(&headers, &header::SERVER));
        headers.append(header::SERVER, HeaderValue::from_static("app/1"));
        assert!(has_field(&headers, &header::SERVER));
        for i in 0..20 {
            let name = HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap();
            headers.insert(name, HeaderValue::from_static("v"));
        }
        assert!(headers.keys_len() > 8);
        assert!(has_field(&headers, &header::SERVER));
        assert!(has_field(&headers, &HeaderName::from_static("x-19")));
        assert!(!has_field(&headers, &header::ETAG));
    }

    #[test]
    fn splits_hosts() {
        let split = |h: &'static [u8]| split_host(&Bytes::from_static(h));
        assert_eq!(split(b"a:80"), (Bytes::from("a"), Some(Bytes::from("80"))));
        assert_eq!(split(b"[::1]"), (Bytes::from("[::1]"), None));
        assert_eq!(
            split(b"[::1]:8"),
            (Bytes::from("[::1]"), Some(Bytes::from("8")))
        );
    }
}

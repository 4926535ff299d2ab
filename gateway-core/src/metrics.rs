//! Server metrics and the status page: what php-fpm's status page and
//! uWSGI's stats server report, for every backend.
//!
//! A [`Metrics`] is a set of counters shared by everything that serves with
//! it: give the same handle to a server (`Server::metrics` on the FastCGI,
//! SCGI and HTTP servers, `Builder::metrics` on the `gateway` facade, or
//! [`HandlerBuilder::metrics`](crate::HandlerBuilder::metrics) for a
//! handler of your own) and mount one of its services where you like:
//!
//! - [`Metrics::status_service`]: the status page, as JSON;
//! - [`Metrics::metrics_service`]: the same figures in the OpenMetrics text
//!   format (what Prometheus scrapes);
//! - [`Metrics::service`]: either, chosen by the request's `Accept` header
//!   (`application/openmetrics-text` or `application/json`), else by its
//!   path (a path ending in `metrics` gets OpenMetrics, any other JSON).
//!
//! The services are plain [`tower::Service`]s over [`http`] types, so they
//! mount in an axum `Router` (`route_service`) or answer on their own.
//!
//! ```
//! use gateway_core::{Handler, Metrics};
//!
//! let metrics = Metrics::new();
//! let handler = Handler::builder().metrics(&metrics).build();
//! # let _ = handler;
//! // Mount it, e.g. with axum:
//! // Router::new().route_service("/_gateway/metrics", metrics.metrics_service())
//! let text = metrics.snapshot().to_openmetrics();
//! assert!(text.contains("# TYPE gateway_requests counter"));
//! assert!(text.ends_with("# EOF\n"));
//! ```
//!
//! # What is counted
//!
//! | figure | what |
//! |---|---|
//! | start time, uptime | when the handle was made |
//! | connections accepted | connections a server took in (refused ones not included) |
//! | connections open | connections being served now |
//! | connections active / idle | open connections running a request / waiting for one (open connections less requests in flight: an estimate when one connection runs several requests at once, as multiplexed FastCGI and HTTP/2 do) |
//! | max open connections | the most open at once since the start |
//! | requests | requests ended, by the class of the status sent (`1xx` … `5xx`, or `none` when no head went out) |
//! | requests in flight, max in flight | requests running now, and the most at once |
//! | slow requests | requests that ran longer than [`Limits::slow_request`](crate::Limits::slow_request), counted when they end |
//! | bytes in / out | request body bytes read (by the application, or whole by the backend before it), response body bytes sent |
//! | failures | by [`Failure`] kind |
//!
//! # Cost
//!
//! Every counter is an atomic updated with relaxed ordering: a request
//! costs a handful of atomic additions and no lock. A server without a
//! `Metrics` pays one branch per request.

use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::outcome::Outcome;

/// The media type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a request or a connection failed, as [`Metrics`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// The web server or client broke the protocol: a malformed record,
    /// netstring or request head, a bad request (400), a malformed or
    /// incomplete request body.
    Protocol,
    /// A timeout ran out: the request head or body did not arrive in time
    /// (`head_read_timeout`, `body_read_timeout`), or the application did
    /// not answer in time (`app_timeout`).
    Timeout,
    /// A limit refused the request: a body or head too large (413, 431), a
    /// request past the server's cap on requests at once.
    Limit,
    /// The application failed (an error, a panic, an invalid response)
    /// before anything was sent: the error page went out.
    App,
    /// The response failed after its head was sent and was cut short.
    Aborted,
    /// The client (or the web server) went away before the response was
    /// sent in full.
    ClientGone,
    /// Writing the response failed for another reason (a write timeout).
    Write,
    /// A connection past [`Limits::max_connections`](crate::Limits::max_connections)
    /// was refused with the protocol's busy answer.
    Refused,
}

impl Failure {
    /// Every kind, in the order they are reported.
    pub const ALL: [Failure; 8] = [
        Failure::Protocol,
        Failure::Timeout,
        Failure::Limit,
        Failure::App,
        Failure::Aborted,
        Failure::ClientGone,
        Failure::Write,
        Failure::Refused,
    ];

    /// The name used in the reports (`protocol_error`, `timeout`, `limit`,
    /// `app_error`, `aborted`, `client_gone`, `write_error`, `refused`).
    pub fn name(self) -> &'static str {
        match self {
            Failure::Protocol => "protocol_error",
            Failure::Timeout => "timeout",
            Failure::Limit => "limit",
            Failure::App => "app_error",
            Failure::Aborted => "aborted",
            Failure::ClientGone => "client_gone",
            Failure::Write => "write_error",
            Failure::Refused => "refused",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The status classes requests are counted by.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// One counter on its own cache line, so that counters bumped by different
/// threads do not contend for one line.
#[derive(Default)]
#[repr(align(64))]
struct Line(AtomicU64);

impl Line {
    #[inline]
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

struct Inner {
    started: SystemTime,
    started_at: Instant,
    accepted: Line,
    open: Line,
    max_open: AtomicU64,
    in_flight: Line,
    max_in_flight: AtomicU64,
    by_class: [Line; 6],
    slow: AtomicU64,
    bytes_in: Line,
    bytes_out: Line,
    failures: [AtomicU64; 8],
}

/// Server metrics: connections, requests, bytes and failures, counted with
/// relaxed atomics and rendered as JSON or OpenMetrics text. Cheap to
/// clone: clones share the counters. See the [module](self) for what is
/// counted and how to serve them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh counters; the start time is now.
    pub fn new() -> Self {
        Metrics {
            inner: Arc::new(Inner {
                started: SystemTime::now(),
                started_at: Instant::now(),
                accepted: Line::default(),
                open: Line::default(),
                max_open: AtomicU64::new(0),
                in_flight: Line::default(),
                max_in_flight: AtomicU64::new(0),
                by_class: Default::default(),
                slow: AtomicU64::new(0),
                bytes_in: Line::default(),
                bytes_out: Line::default(),
                failures: Default::default(),
            }),
        }
    }

    /// Counts a connection a server accepted and serves: open until the
    /// guard drops. Servers call it for each connection they serve.
    pub fn connection(&self) -> ConnectionGuard {
        let m = &*self.inner;
        m.accepted.add(1);
        let open = m.open.0.fetch_add(1, Relaxed) + 1;
        raise(&m.max_open, open);
        ConnectionGuard {
            metrics: self.clone(),
        }
    }

    /// Counts a failure. Servers call it for what only they see (protocol
    /// errors, head timeouts, refused connections); the handler counts the
    /// rest.
    pub fn failure(&self, kind: Failure) {
        self.inner.failures[kind.index()].fetch_add(1, Relaxed);
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let m = &*self.inner;
        let open = m.open.get();
        let in_flight = m.in_flight.get();
        let by_class = std::array::from_fn(|i| m.by_class[i].get());
        Snapshot {
            start_time: m.started.duration_since(UNIX_EPOCH).unwrap_or_default(),
            uptime: m.started_at.elapsed(),
            connections_accepted: m.accepted.get(),
            connections_open: open,
            connections_active: open.min(in_flight),
            connections_idle: open.saturating_sub(in_flight),
            connections_max_open: m.max_open.load(Relaxed),
            requests: by_class.iter().sum(),
            requests_by_class: by_class,
            requests_in_flight: in_flight,
            requests_max_in_flight: m.max_in_flight.load(Relaxed),
            requests_slow: m.slow.load(Relaxed),
            bytes_in: m.bytes_in.get(),
            bytes_out: m.bytes_out.get(),
            failures: std::array::from_fn(|i| m.failures[i].load(Relaxed)),
        }
    }

    /// A service answering every request with the status page or the
    /// OpenMetrics text: by the `Accept` header when it names
    /// `application/openmetrics-text` or `application/json`, else by the
    /// path (one ending in `metrics` gets OpenMetrics, any other JSON).
    pub fn service(&self) -> MetricsService {
        MetricsService {
            metrics: self.clone(),
            format: Format::Auto,
        }
    }

    /// A service answering every request with the status page, as JSON.
    pub fn status_service(&self) -> MetricsService {
        MetricsService {
            metrics: self.clone(),
            format: Format::Json,
        }
    }

    /// A service answering every request with the OpenMetrics text.
    pub fn metrics_service(&self) -> MetricsService {
        MetricsService {
            metrics: self.clone(),
            format: Format::OpenMetrics,
        }
    }

    /// Starts counting a request (the handler calls it).
    #[inline]
    pub(crate) fn request(&self, slow: Option<Duration>) -> RequestGuard<'_> {
        let m = &*self.inner;
        let now = m.in_flight.0.fetch_add(1, Relaxed) + 1;
        raise(&m.max_in_flight, now);
        RequestGuard {
            inner: m,
            slow: slow.map(|t| (t, Instant::now())),
            finished: false,
        }
    }

    /// Counts request body bytes read.
    #[inline]
    pub(crate) fn body_read(&self, n: u64) {
        self.inner.bytes_in.add(n);
    }

    /// Counts the failure an error before the response was sent stands for.
    pub(crate) fn error(&self, err: &crate::Error) {
        use crate::error::Kind;
        let kind = match err.kind {
            Kind::BadRequest(_)
            | Kind::IncompleteBody
            | Kind::MalformedBody
            | Kind::LengthRequired => Failure::Protocol,
            Kind::BodyTooLarge => Failure::Limit,
            Kind::BodyTimeout => Failure::Timeout,
            Kind::Disconnected => Failure::ClientGone,
            Kind::Io => Failure::Write,
            Kind::InvalidResponse(_) | Kind::App | Kind::Panic | Kind::ShortBody => Failure::App,
        };
        self.failure(kind);
    }
}

/// Raises a high-water mark to `now`; a plain load first, so that the
/// common case (no new high) writes nothing.
#[inline]
fn raise(max: &AtomicU64, now: u64) {
    if now > max.load(Relaxed) {
        max.fetch_max(now, Relaxed);
    }
}

/// Counts [`Option<&Metrics>`] failures: a no-op without metrics.
pub fn note(metrics: Option<&Metrics>, kind: Failure) {
    if let Some(m) = metrics {
        m.failure(kind);
    }
}

/// An open connection, counted until dropped (see [`Metrics::connection`]).
pub struct ConnectionGuard {
    metrics: Metrics,
}

impl fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGuard").finish_non_exhaustive()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.inner.open.0.fetch_sub(1, Relaxed);
    }
}

/// A request in flight; [`finish`](RequestGuard::finish) records how it
/// ended. Dropped unfinished (the request's future was cancelled: the web
/// server aborted it or the connection went away), it counts a client that
/// went away.
pub(crate) struct RequestGuard<'m> {
    inner: &'m Inner,
    slow: Option<(Duration, Instant)>,
    finished: bool,
}

impl RequestGuard<'_> {
    #[inline]
    pub(crate) fn finish(mut self, outcome: &Outcome) {
        self.finished = true;
        let m = self.inner;
        let class = match outcome.status() {
            Some(s) => usize::from(s.as_u16() / 100).clamp(1, 5) - 1,
            None => 5,
        };
        m.by_class[class].add(1);
        let sent = outcome.bytes_sent();
        if sent > 0 {
            m.bytes_out.add(sent);
        }
        let failed = if outcome.is_aborted() {
            Some(Failure::Aborted)
        } else if outcome.is_disconnected() {
            Some(Failure::ClientGone)
        } else if outcome.is_failed() {
            Some(Failure::Write)
        } else {
            None
        };
        if let Some(kind) = failed {
            m.failures[kind.index()].fetch_add(1, Relaxed);
        }
        if let Some((threshold, start)) = self.slow
            && start.elapsed() > threshold
        {
            m.slow.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for RequestGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let m = self.inner;
        m.in_flight.0.fetch_sub(1, Relaxed);
        if !self.finished {
            m.by_class[5].add(1);
            m.failures[Failure::ClientGone.index()].fetch_add(1, Relaxed);
        }
    }
}

/// The figures of a [`Metrics`] at one moment. Render them with
/// [`to_json`](Snapshot::to_json) or
/// [`to_openmetrics`](Snapshot::to_openmetrics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// When the metrics started, since the Unix epoch.
    pub start_time: Duration,
    /// How long since they started.
    pub uptime: Duration,
    /// Connections accepted and served.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Open connections running a request (an estimate, see the module).
    pub connections_active: u64,
    /// Open connections waiting for a request (an estimate, see the module).
    pub connections_idle: u64,
    /// The most connections open at once.
    pub connections_max_open: u64,
    /// Requests ended.
    pub requests: u64,
    /// Requests ended by status class: `1xx`, `2xx`, `3xx`, `4xx`, `5xx`,
    /// and no head sent.
    pub requests_by_class: [u64; 6],
    /// Requests running now.
    pub requests_in_flight: u64,
    /// The most requests running at once.
    pub requests_max_in_flight: u64,
    /// Requests that ran longer than the slow-request threshold.
    pub requests_slow: u64,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Failures, in the order of [`Failure::ALL`].
    pub failures: [u64; 8],
}

impl Snapshot {
    /// The count of one kind of failure.
    pub fn failure(&self, kind: Failure) -> u64 {
        self.failures[kind.index()]
    }

    /// The status page, as a JSON object.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(768);
        let _ = write!(
            s,
            "{{\"start_time\":{},\"uptime_seconds\":{},\
             \"connections\":{{\"accepted\":{},\"open\":{},\"active\":{},\"idle\":{},\"max_open\":{},\"refused\":{}}},\
             \"requests\":{{\"total\":{},\"in_flight\":{},\"max_in_flight\":{},\"slow\":{},\"by_status\":{{",
            self.start_time.as_secs(),
            self.uptime.as_secs(),
            self.connections_accepted,
            self.connections_open,
            self.connections_active,
            self.connections_idle,
            self.connections_max_open,
            self.failure(Failure::Refused),
            self.requests,
            self.requests_in_flight,
            self.requests_max_in_flight,
            self.requests_slow,
        );
        for (i, (class, n)) in CLASSES.iter().zip(self.requests_by_class).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(s, "{sep}\"{class}\":{n}");
        }
        let _ = write!(
            s,
            "}}}},\"bytes\":{{\"in\":{},\"out\":{}}},\"failures\":{{",
            self.bytes_in, self.bytes_out
        );
        for (i, kind) in Failure::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(s, "{sep}\"{}\":{}", kind.name(), self.failure(*kind));
        }
        s.push_str("}}\n");
        s
    }

    /// The figures in the OpenMetrics text format: counters as `_total`
    /// samples, units in the names, `# EOF` at the end.
    pub fn to_openmetrics(&self) -> String {
        let mut s = String::with_capacity(2048);
        let mut family = |name: &str, kind: &str, unit: Option<&str>, help: &str| {
            let _ = writeln!(s, "# TYPE {name} {kind}");
            if let Some(unit) = unit {
                let _ = writeln!(s, "# UNIT {name} {unit}");
            }
            let _ = writeln!(s, "# HELP {name} {help}");
        };
        family(
            "gateway_start_time_seconds",
            "gauge",
            Some("seconds"),
            "When the metrics started, since the Unix epoch.",
        );
        let _ = writeln!(
            s,
            "gateway_start_time_seconds {}.{:03}",
            self.start_time.as_secs(),
            self.start_time.subsec_millis()
        );
        let counter = |s: &mut String, name: &str, unit: Option<&str>, help: &str, v: u64| {
            let _ = writeln!(s, "# TYPE {name} counter");
            if let Some(unit) = unit {
                let _ = writeln!(s, "# UNIT {name} {unit}");
            }
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "{name}_total {v}");
        };
        let gauge = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {v}");
        };
        counter(
            &mut s,
            "gateway_connections_accepted",
            None,
            "Connections accepted and served.",
            self.connections_accepted,
        );
        gauge(
            &mut s,
            "gateway_connections_open",
            "Connections open now.",
            self.connections_open,
        );
        gauge(
            &mut s,
            "gateway_connections_active",
            "Open connections running a request.",
            self.connections_active,
        );
        gauge(
            &mut s,
            "gateway_connections_idle",
            "Open connections waiting for a request.",
            self.connections_idle,
        );
        gauge(
            &mut s,
            "gateway_connections_max_open",
            "The most connections open at once.",
            self.connections_max_open,
        );
        let _ = writeln!(
            s,
            "# TYPE gateway_requests counter\n# HELP gateway_requests Requests ended, by status class."
        );
        for (class, n) in CLASSES.iter().zip(self.requests_by_class) {
            let _ = writeln!(s, "gateway_requests_total{{status=\"{class}\"}} {n}");
        }
        gauge(
            &mut s,
            "gateway_requests_in_flight",
            "Requests running now.",
            self.requests_in_flight,
        );
        gauge(
            &mut s,
            "gateway_requests_max_in_flight",
            "The most requests running at once.",
            self.requests_max_in_flight,
        );
        counter(
            &mut s,
            "gateway_slow_requests",
            None,
            "Requests that ran longer than the slow-request threshold.",
            self.requests_slow,
        );
        counter(
            &mut s,
            "gateway_request_body_bytes",
            Some("bytes"),
            "Request body bytes read by the application.",
            self.bytes_in,
        );
        counter(
            &mut s,
            "gateway_response_body_bytes",
            Some("bytes"),
            "Response body bytes sent.",
            self.bytes_out,
        );
        let _ = writeln!(
            s,
            "# TYPE gateway_failures counter\n# HELP gateway_failures Failures, by kind."
        );
        for kind in Failure::ALL {
            let _ = writeln!(
                s,
                "gateway_failures_total{{kind=\"{}\"}} {}",
                kind.name(),
                self.failure(kind)
            );
        }
        s.push_str("# EOF\n");
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Auto,
    Json,
    OpenMetrics,
}

/// The [`tower::Service`] that answers with a [`Metrics`]' figures: see
/// [`Metrics::service`], [`Metrics::status_service`] and
/// [`Metrics::metrics_service`]. `GET` and `HEAD` are answered 200 (not
/// cached); other methods 405.
#[derive(Clone, Debug)]
pub struct MetricsService {
    metrics: Metrics,
    format: Format,
}

impl MetricsService {
    /// The answer to `req`, at once.
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = Response::new(Full::new(Bytes::from_static(b"Method Not Allowed\n")));
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let openmetrics = match self.format {
            Format::Json => false,
            Format::OpenMetrics => true,
            Format::Auto => wants_openmetrics(req),
        };
        let snap = self.metrics.snapshot();
        let (body, kind) = if openmetrics {
            (snap.to_openmetrics(), OPENMETRICS_CONTENT_TYPE)
        } else {
            (snap.to_json(), "application/json")
        };
        let mut res = Response::new(Full::new(Bytes::from(body)));
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    for media in accept {
        match media.as_str() {
            "application/openmetrics-text" => return true,
            "application/json" => return false,
            _ => {}
        }
    }
    req.uri().path().trim_end_matches('/').ends_with("metrics")
}

impl<B> tower::Service<Request<B>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(&req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Metrics, ConnectionGuard) {
        let m = Metrics::new();
        let c = m.connection();
        let c2 = m.connection();
        drop(c);
        m.failure(Failure::Protocol);
        m.failure(Failure::Refused);
        m.failure(Failure::Refused);
        (m, c2)
    }

    #[test]
    fn connections_open_and_close() {
        let (m, _open) = sample();
        let s = m.snapshot();
        assert_eq!(s.connections_accepted, 2);
        assert_eq!(s.connections_open, 1);
        assert_eq!(s.connections_max_open, 2);
        assert_eq!(s.connections_idle, 1);
        assert_eq!(s.connections_active, 0);
        assert_eq!(s.failure(Failure::Protocol), 1);
        assert_eq!(s.failure(Failure::Refused), 2);
    }

    #[test]
    fn requests_by_outcome() {
        let m = Metrics::new();
        let g = m.request(None);
        assert_eq!(m.snapshot().requests_in_flight, 1);
        g.finish(&Outcome {
            status: Some(StatusCode::OK),
            bytes_sent: 14,
            kind: crate::outcome::OutcomeKind::Complete,
        });
        let g = m.request(Some(Duration::ZERO));
        let _other = m.request(None);
        std::thread::sleep(Duration::from_millis(2));
        g.finish(&Outcome {
            status: Some(StatusCode::INTERNAL_SERVER_ERROR),
            bytes_sent: 3,
            kind: crate::outcome::OutcomeKind::Aborted,
        });
        drop(_other); // cancelled
        let s = m.snapshot();
        assert_eq!(s.requests, 3);
        assert_eq!(s.requests_by_class, [0, 1, 0, 0, 1, 1]);
        assert_eq!(s.requests_in_flight, 0);
        assert_eq!(s.requests_max_in_flight, 2);
        assert_eq!(s.requests_slow, 1);
        assert_eq!(s.bytes_out, 17);
        assert_eq!(s.failure(Failure::Aborted), 1);
        assert_eq!(s.failure(Failure::ClientGone), 1);
    }

    #[test]
    fn json_is_valid_and_complete() {
        let (m, _open) = sample();
        let json = m.snapshot().to_json();
        assert!(json.ends_with("}\n"), "{json}");
        // Balanced braces, no trailing commas.
        let opens = json.matches('{').count();
        assert_eq!(opens, json.matches('}').count(), "{json}");
        assert!(!json.contains(",}") && !json.contains("{,"), "{json}");
        assert!(json.contains("\"accepted\":2"), "{json}");
        assert!(json.contains("\"refused\":2"), "{json}");
        assert!(json.contains("\"protocol_error\":1"), "{json}");
        assert!(json.contains("\"by_status\":{\"1xx\":0,"), "{json}");
        for kind in Failure::ALL {
            assert!(json.contains(&format!("\"{}\":", kind.name())), "{json}");
        }
    }

    #[test]
    fn openmetrics_follows_the_text_format() {
        let text = sample().0.snapshot().to_openmetrics();
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        let mut typed = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{name} twice"
                );
                assert!(!name.ends_with("_total"), "{name}");
            } else if let Some(rest) = line.strip_prefix("# UNIT ") {
                let (name, unit) = rest.split_once(' ').unwrap();
                assert!(name.ends_with(&format!("_{unit}")), "{line}");
            } else if line.starts_with('#') {
                assert!(line.starts_with("# HELP ") || line == "# EOF", "{line}");
            } else {
                let (sample, value) = line.rsplit_once(' ').unwrap();
                let name = sample.split('{').next().unwrap();
                value.parse::<f64>().unwrap();
                let family = name.strip_suffix("_total").unwrap_or(name);
                let kind = typed
                    .get(family)
                    .unwrap_or_else(|| panic!("{name} untyped"));
                // Counters' samples end in _total, gauges' do not.
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            }
        }
        assert!(
            text.contains("gateway_connections_accepted_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_failures_total{kind=\"refused\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_requests_total{status=\"2xx\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn service_chooses_the_format() {
        let (m, _open) = sample();
        let get = |path: &str, accept: Option<&str>| {
            let mut req = Request::get(path);
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            let res = m.service().respond(&req.body(()).unwrap());
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(get("/_gateway/metrics", None), OPENMETRICS_CONTENT_TYPE);
        assert_eq!(get("/_gateway/status", None), "application/json");
        assert_eq!(get("/_gateway/status", Some("*/*")), "application/json");
        assert_eq!(
            get(
                "/_gateway/status",
                Some("application/openmetrics-text;version=1.0.0;q=0.75,text/plain;q=0.5")
            ),
            OPENMETRICS_CONTENT_TYPE
        );
        assert_eq!(
            get("/metrics", Some("application/json")),
            "application/json"
        );
        let post = Request::post("/").body(()).unwrap();
        let res = m.status_service().respond(&post);
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        let res = m
            .metrics_service()
            .respond(&Request::get("/x").body(()).unwrap());
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            OPENMETRICS_CONTENT_TYPE
        );
    }
}

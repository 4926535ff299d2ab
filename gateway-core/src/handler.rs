//! The handler: runs an application over a [`Gateway`] (wsgiref's
//! `BaseHandler.run`).

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version, header};
use tower::Service;

use crate::body::Body;
use crate::environ::{BodyLength, Environ};
use crate::error::{BoxError, Error, Kind};
use crate::gateway::{Gateway, RequestFacts};
use crate::head::HeadFormat;
use crate::limits::Limits;
use crate::logging::{self, RequestId};
use crate::outcome::{Outcome, OutcomeKind};
use crate::pipeline::{self, RequestCtx, Sent, panic_message};
use crate::repeats::{Repeats, in_app};
use crate::request::version_of;

/// The default error page body (wsgiref's `error_body`).
pub const DEFAULT_ERROR_BODY: &str = "A server error occurred.  Please contact the administrator.";

/// The default interval of [`HandlerBuilder::repeat_summary`].
pub const DEFAULT_REPEAT_SUMMARY: Duration = Duration::from_secs(10);

type ErrorResponder = dyn Fn(&Error) -> Response<Bytes> + Send + Sync;

struct Config {
    base_environ: Environ,
    error_status: StatusCode,
    error_headers: HeaderMap,
    error_body: Bytes,
    error_responder: Option<Arc<ErrorResponder>>,
    traceback_limit: usize,
    http_version: Version,
    server_software: Option<Bytes>,
    limits: Limits,
    path_view: PathView,
    repeat_summary: Duration,
    quiet_panics: bool,
    accel_hint: bool,
    metrics: Option<crate::Metrics>,
    /// Made by `build` from the two above.
    repeats: Repeats,
}

/// Which path the application routes on.
///
/// Web servers split the path a client asked for into `SCRIPT_NAME` (where
/// the program is mounted) and `PATH_INFO` (the rest), each their own way.
/// The view decides what the request's URI path is:
///
/// - [`Full`](PathView::Full) (the default): the whole path the client
///   asked for, `SCRIPT_NAME` + `PATH_INFO` (as Go's `net/http/cgi` does).
///   Right for an application that knows its own URLs, and for nginx's
///   stock configuration, whose `SCRIPT_NAME` is the whole path.
/// - [`ScriptRelative`](PathView::ScriptRelative): the path below
///   `SCRIPT_NAME`, as WSGI and Plack applications see it: a CGI program
///   at `/cgi-bin/app` routes `/cgi-bin/app/users/1` as `/users/1`,
///   wherever it is installed. Needs a web server that splits the path
///   (Apache `ScriptAlias`, lighttpd, nginx with `fastcgi_split_path_info`).
/// - [`Mount`](PathView::Mount): a fixed prefix stripped from the full path,
///   whatever the web server put in `SCRIPT_NAME`. A path outside the prefix
///   is left alone.
///
/// `SCRIPT_NAME` stays in the [`Environ`] for building links; the environ is
/// never changed. When the application answers 404 while `SCRIPT_NAME` is
/// not empty, a debug-level log line names the path it saw and this
/// setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathView {
    /// The whole path the client asked for.
    #[default]
    Full,
    /// The path below `SCRIPT_NAME` (`/` when nothing is below it).
    ScriptRelative,
    /// The full path with this prefix (no trailing `/`) stripped.
    Mount(Bytes),
}

/// Runs applications over a [`Gateway`]: builds the request from the
/// environ, calls the application, sends the response through the pipeline
/// (validation, lazy head, Content-Length rules, write coalescing) and
/// applies the error policy. Cheap to clone; configure it with
/// [`Handler::builder`].
///
/// The error policy (wsgiref's `error_output`): an application error, a
/// panic, or an invalid response head while nothing has been sent gives the
/// error page (500 `text/plain`, [`DEFAULT_ERROR_BODY`]), never the error's
/// text. After the head has gone out the response is aborted: see
/// [`Outcome`]. Every failure is logged once, to `tracing` at error level and
/// to the request's error stream, with at most `traceback_limit` causes. A
/// client that went away is not an error: it is logged at debug level.
///
/// Repeated failures are summarised, so that a route that fails on every
/// request cannot flood the log: the first failure is logged in full;
/// identical ones (same kind and message) within the interval of
/// [`HandlerBuilder::repeat_summary`] (10 s by default) are only counted;
/// the first identical one after the interval is logged as one line with
/// the count, such as `gateway: 12345 more identical failures in the last
/// 10 s: application panicked: boom` (or in full again if none was
/// counted), and starts a new interval. There is no timer: counts are
/// reported when the failure happens again, so the repeats of a failure
/// that stops are reported with its next occurrence. At most 256 distinct
/// failures are told apart at a time; past that they share one count until
/// older ones expire. Both the `tracing` event and the error stream follow
/// this policy; so do write failures and bodies longer than their
/// `Content-Length`.
///
/// Panics in the application are also reported by the process's panic hook
/// (by default the "thread '…' panicked at …" message on standard error).
/// Building a handler wraps that hook, once per process: a panic raised
/// while the handler polls the application or its response body reaches
/// the previous hook at most once per interval for each location and
/// message; every other panic reaches it unchanged. Turn this off with
/// [`HandlerBuilder::quiet_repeated_panics`].
#[derive(Clone)]
pub struct Handler {
    config: Arc<Config>,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("error_status", &self.config.error_status)
            .field("http_version", &self.config.http_version)
            .field("server_software", &self.config.server_software)
            .field("limits", &self.config.limits)
            .field("repeat_summary", &self.config.repeat_summary)
            .field("quiet_repeated_panics", &self.config.quiet_panics)
            .field("accel_buffering_hint", &self.config.accel_hint)
            .finish_non_exhaustive()
    }
}

impl Default for Handler {
    fn default() -> Self {
        HandlerBuilder::new().build()
    }
}

/// Configures a [`Handler`] (wsgiref's `BaseHandler` class attributes).
pub struct HandlerBuilder {
    config: Config,
}

impl fmt::Debug for HandlerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerBuilder").finish_non_exhaustive()
    }
}

impl Default for HandlerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HandlerBuilder {
    /// The defaults: wsgiref's error page, HTTP/1.0 status lines in the
    /// origin form, no `Server` header, default [`Limits`].
    pub fn new() -> Self {
        let mut error_headers = HeaderMap::new();
        error_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Self {
            config: Config {
                base_environ: Environ::new(),
                error_status: StatusCode::INTERNAL_SERVER_ERROR,
                error_headers,
                error_body: Bytes::from_static(DEFAULT_ERROR_BODY.as_bytes()),
                error_responder: None,
                traceback_limit: 16,
                http_version: Version::HTTP_10,
                server_software: None,
                limits: Limits::default(),
                path_view: PathView::Full,
                repeat_summary: DEFAULT_REPEAT_SUMMARY,
                quiet_panics: true,
                accel_hint: true,
                metrics: None,
                repeats: Repeats::new(Duration::ZERO, false),
            },
        }
    }

    /// Variables every request's environ starts from, before the backend's
    /// (wsgiref's `os_environ`; empty by default, so nothing leaks).
    pub fn base_environ(&mut self, env: Environ) -> &mut Self {
        self.config.base_environ = env;
        self
    }

    /// The error page's status (wsgiref's `error_status`).
    pub fn error_status(&mut self, status: StatusCode) -> &mut Self {
        self.config.error_status = status;
        self
    }

    /// The error page's headers (wsgiref's `error_headers`).
    pub fn error_headers(&mut self, headers: HeaderMap) -> &mut Self {
        self.config.error_headers = headers;
        self
    }

    /// The error page's body (wsgiref's `error_body`).
    pub fn error_body(&mut self, body: impl Into<Bytes>) -> &mut Self {
        self.config.error_body = body.into();
        self
    }

    /// A function that makes the error response instead of the fixed page
    /// (it sees the error; it must not leak its text to the client).
    pub fn error_responder(
        &mut self,
        f: impl Fn(&Error) -> Response<Bytes> + Send + Sync + 'static,
    ) -> &mut Self {
        self.config.error_responder = Some(Arc::new(f));
        self
    }

    /// How many causes of an error are logged (wsgiref's `traceback_limit`).
    pub fn traceback_limit(&mut self, n: usize) -> &mut Self {
        self.config.traceback_limit = n;
        self
    }

    /// The version on origin-form status lines (wsgiref's `http_version`).
    pub fn http_version(&mut self, version: Version) -> &mut Self {
        self.config.http_version = version;
        self
    }

    /// The `Server` header of origin-form heads, also set as
    /// `SERVER_SOFTWARE` when the environ has none (wsgiref's
    /// `server_software`).
    pub fn server_software(&mut self, software: impl Into<Bytes>) -> &mut Self {
        self.config.server_software = Some(software.into());
        self
    }

    /// Limits (the handler applies `max_body_len` and
    /// `max_response_head_len`; backends the rest).
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.config.limits = limits;
        self
    }

    /// Which path the application routes on: the full path (the default),
    /// the path below `SCRIPT_NAME`, or the full path less a fixed prefix;
    /// see [`PathView`].
    pub fn path_view(&mut self, view: PathView) -> &mut Self {
        self.config.path_view = match view {
            PathView::Mount(p) => mount_view(p),
            v => v,
        };
        self
    }

    /// A mount prefix stripped from the request path before the application
    /// sees it: with `/app`, a request for `/app/users/1` reaches the
    /// application as `/users/1`, whatever way the web server split
    /// `SCRIPT_NAME` and `PATH_INFO` (nginx and Apache put the whole path in
    /// `SCRIPT_NAME` by default). A path outside the prefix is left alone.
    /// The environ is never changed. The same as
    /// `path_view(PathView::Mount(prefix))`.
    pub fn mount(&mut self, prefix: impl Into<Bytes>) -> &mut Self {
        self.config.path_view = mount_view(prefix.into());
        self
    }

    /// How long identical failures are counted before they are logged
    /// again, as one line with the count (default
    /// [`DEFAULT_REPEAT_SUMMARY`], 10 s). [`Duration::ZERO`] logs every
    /// failure in full. See [`Handler`] for the policy.
    pub fn repeat_summary(&mut self, interval: Duration) -> &mut Self {
        self.config.repeat_summary = interval;
        self
    }

    /// Whether panics raised in the application repeat on the process's
    /// panic hook at most once per [`repeat_summary`] interval for each
    /// location and message (default true).
    ///
    /// When true and the interval is not zero, [`build`] replaces the
    /// process's panic hook, once per process, with one that filters those
    /// panics and passes everything to the hook that was installed before
    /// (the default one prints "thread '…' panicked at …"). Panics outside
    /// the application, or in applications run by a handler built with
    /// `false`, reach the previous hook unchanged. A hook set later with
    /// [`std::panic::set_hook`] replaces the filter.
    ///
    /// [`repeat_summary`]: HandlerBuilder::repeat_summary
    /// [`build`]: HandlerBuilder::build
    pub fn quiet_repeated_panics(&mut self, quiet: bool) -> &mut Self {
        self.config.quiet_panics = quiet;
        self
    }

    /// Whether a streamed response asks the web server in front not to
    /// buffer it (default true).
    ///
    /// nginx buffers what a FastCGI, SCGI, uwsgi or proxied backend sends
    /// (`fastcgi_buffering on` and its siblings are the stock settings),
    /// so a body written bit by bit — server-sent events, progress output,
    /// a long poll — reaches the client only once nginx's buffer fills or
    /// the response ends. nginx turns that off for one response that
    /// carries `X-Accel-Buffering: no`. When this is on, the pipeline adds
    /// that header to every response whose head goes out before its body
    /// has ended without a `Content-Length` (a streamed body), and to every
    /// `text/event-stream` response, on every backend (nginx honours it
    /// with `proxy_pass` too); it never replaces an `X-Accel-Buffering`
    /// the application set (`yes` keeps nginx's buffering for that
    /// response). A response whose size is known is left alone: buffering
    /// it costs the client nothing and frees the application sooner.
    ///
    /// nginx does not pass the header on to the client; other web servers
    /// ignore it and pass it on, so turn this off when nothing in front
    /// reads it and you would rather not send it. Apache httpd and
    /// lighttpd are told to stream in their own configuration (see the
    /// web-server examples of the workspace).
    pub fn accel_buffering_hint(&mut self, on: bool) -> &mut Self {
        self.config.accel_hint = on;
        self
    }

    /// Counts this handler's requests in `metrics` (requests, status
    /// classes, bytes, failures, requests in flight): see
    /// [`Metrics`](crate::Metrics). None by default.
    pub fn metrics(&mut self, metrics: &crate::Metrics) -> &mut Self {
        self.config.metrics = Some(metrics.clone());
        self
    }

    /// The handler. Wraps the process's panic hook unless told not to (see
    /// [`quiet_repeated_panics`](HandlerBuilder::quiet_repeated_panics)).
    pub fn build(&mut self) -> Handler {
        let mut config = std::mem::replace(&mut self.config, HandlerBuilder::new().config);
        config.repeats = Repeats::new(config.repeat_summary, config.quiet_panics);
        if config.repeats.panic_mark().is_some() {
            crate::repeats::install_panic_filter();
        }
        Handler {
            config: Arc::new(config),
        }
    }
}

impl Handler {
    /// A handler with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder to configure one.
    pub fn builder() -> HandlerBuilder {
        HandlerBuilder::new()
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// The configured path view.
    pub fn path_view(&self) -> &PathView {
        &self.config.path_view
    }

    /// The metrics this handler counts in, if any (servers count their
    /// connections and protocol failures there too).
    pub fn metrics(&self) -> Option<&crate::Metrics> {
        self.config.metrics.as_ref()
    }

    /// A builder holding this handler's settings, to make a changed copy
    /// (a server's `limits` setter uses it).
    ///
    /// ```
    /// use gateway_core::{Handler, Limits};
    ///
    /// let h = Handler::builder().error_body("oops").build();
    /// let mut limits = Limits::default();
    /// limits.max_connections(8);
    /// let h2 = h.to_builder().limits(limits).build();
    /// assert_eq!(h2.limits().get_max_connections(), 8);
    /// ```
    pub fn to_builder(&self) -> HandlerBuilder {
        let c = &*self.config;
        HandlerBuilder {
            config: Config {
                base_environ: c.base_environ.clone(),
                error_status: c.error_status,
                error_headers: c.error_headers.clone(),
                error_body: c.error_body.clone(),
                error_responder: c.error_responder.clone(),
                traceback_limit: c.traceback_limit,
                http_version: c.http_version,
                server_software: c.server_software.clone(),
                limits: c.limits.clone(),
                path_view: c.path_view.clone(),
                repeat_summary: c.repeat_summary,
                quiet_panics: c.quiet_panics,
                accel_hint: c.accel_hint,
                metrics: c.metrics.clone(),
                repeats: Repeats::new(std::time::Duration::ZERO, false),
            },
        }
    }

    /// Serves one request from `gateway` with `app` (wsgiref's `run`).
    ///
    /// `app` is any `tower::Service` over `http` types, such as an axum
    /// `Router`; pass a clone per request. It is driven to readiness and
    /// called once; a panic in it or in its body is caught.
    pub async fn run<G, S, B>(&self, gateway: &mut G, app: S) -> Outcome
    where
        G: Gateway,
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: http_body::Body,
        B::Data: Buf,
        B::Error: Into<BoxError>,
    {
        let cfg = &*self.config;
        let counted = (cfg.metrics.as_ref()).map(|m| m.request(cfg.limits.get_slow_request()));
        let outcome = self.serve(gateway, app).await;
        if let Some(counted) = counted {
            counted.finish(&outcome);
        }
        outcome
    }

    async fn serve<G, S, B>(&self, gateway: &mut G, app: S) -> Outcome
    where
        G: Gateway,
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: http_body::Body,
        B::Data: Buf,
        B::Error: Into<BoxError>,
    {
        let cfg = &*self.config;
        // An empty base (the default) is not cloned: a new environ is the
        // same.
        let mut env = if cfg.base_environ.is_empty() {
            Environ::new()
        } else {
            cfg.base_environ.clone()
        };
        gateway.add_cgi_vars(&mut env);
        let mut info = gateway.info();
        let origin = info.origin_server;
        if origin && let Some(s) = &cfg.server_software {
            env.set_default("SERVER_SOFTWARE", s.clone());
        }
        let errors = gateway.stderr();
        // What is read of the environ below: from the backend when it knows
        // it, else found in one pass over the environ (without making a
        // deferred environ).
        // The backend that knows them applied the cap on header fields.
        let (facts, fields) = match gateway.request_facts() {
            Some(facts) => (facts, 0),
            None => {
                let known = env.known_now();
                let facts = RequestFacts {
                    is_head: known.request_method() == Some(b"HEAD"),
                    version: version_of(known.server_protocol()),
                    body_length: known.body_length(),
                    https: known.https(),
                    script_name: known
                        .script_name
                        .filter(|v| !v.is_empty())
                        .map(|v| v.to_shared()),
                };
                (facts, known.http_fields)
            }
        };
        let body_length = facts.body_length;
        let content_length = body_length.map(|b| match b {
            BodyLength::Known(n) => Some(n),
            _ => None,
        });
        let https = facts.https;
        let mut ctx = RequestCtx {
            head_format: if origin {
                HeadFormat::Origin {
                    version: cfg.http_version,
                    server_software: cfg.server_software.clone(),
                }
            } else {
                HeadFormat::Cgi
            },
            request_version: facts.version,
            is_head: facts.is_head,
            max_response_head_len: cfg.limits.get_max_response_head_len(),
            errors: errors.clone(),
            traceback_limit: cfg.traceback_limit,
            body_fault: None,
            repeats: &cfg.repeats,
            accel_hint: cfg.accel_hint,
            upgrades: gateway.supports_upgrade(),
        };

        // Too many header fields: the web server passes what the client
        // sent, so the cap on headers is applied here for every backend (a
        // deferred environ's backend parsed the request and applied it).
        let max_headers = cfg.limits.get_max_headers();
        if fields > max_headers {
            tracing::debug!(fields, max_headers, "too many request header fields");
            crate::metrics::note(cfg.metrics.as_ref(), crate::Failure::Limit);
            let res = plain(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large\n",
            );
            return Box::pin(self.finish_plain(gateway, res, &ctx)).await;
        }
        let script_name = facts.script_name;

        // Refuse a declared body over the limit before reading any of it.
        if let Some(max) = cfg.limits.get_max_body_len()
            && let Ok(Some(n)) = content_length
            && n > max
        {
            tracing::debug!(length = n, max, "request body over the limit");
            crate::metrics::note(cfg.metrics.as_ref(), crate::Failure::Limit);
            let res = plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n");
            return Box::pin(self.finish_plain(gateway, res, &ctx)).await;
        }

        let mut body = gateway.stdin(&env);
        if let Some(max) = cfg.limits.get_max_body_len()
            && body_length == Ok(BodyLength::Unknown)
        {
            // No length to check up front: the body fails past the limit.
            body = body.cap(max);
        }
        ctx.body_fault = body.watch_faults(cfg.metrics.as_ref());
        let phase = cfg
            .limits
            .get_slow_request()
            .map(|_| Arc::new(crate::slow::Phase::default()));
        if let Some(phase) = &phase {
            body = crate::slow::watch_body(body, phase.clone());
        }
        // The request goes straight into the call, where it stays until
        // the application takes it; the call is pinned here and `respond`
        // holds only a reference, so neither is moved again.
        let mut call = std::pin::pin!(AppCall {
            app,
            req: match gateway.request(&env, body) {
                Ok(req) => Some(req),
                Err(e) => {
                    tracing::debug!(error = %e, "bad request");
                    crate::metrics::note(cfg.metrics.as_ref(), crate::Failure::Protocol);
                    let res = plain(StatusCode::BAD_REQUEST, "Bad Request\n");
                    return Box::pin(self.finish_plain(gateway, res, &ctx)).await;
                }
            },
            called: None,
            mark: cfg.repeats.panic_mark(),
        });
        let Some(req) = call.as_mut().project().req.as_mut() else {
            // Not reached: the request was just put there.
            return Outcome {
                status: None,
                bytes_sent: 0,
                kind: OutcomeKind::Failed,
            };
        };
        let id = RequestId::next();
        let span = logging::request_span(
            id,
            req.method(),
            req.uri().path(),
            &errors,
            &env,
            info.protocol,
        );
        let slow = cfg
            .limits
            .get_slow_request()
            .zip(phase.clone())
            .map(|(threshold, phase)| {
                let uri = req.uri();
                crate::slow::SlowLog {
                    threshold,
                    phase,
                    method: req.method().clone(),
                    uri: uri
                        .path_and_query()
                        .map_or(uri.path(), |pq| pq.as_str())
                        .to_owned(),
                }
            });
        match &cfg.path_view {
            PathView::Full => {}
            PathView::Mount(prefix) => strip_mount(req, prefix),
            PathView::ScriptRelative => {
                if let Some(sn) = &script_name {
                    let sn = crate::request::quote_path(sn);
                    strip_mount(req, sn.strip_suffix(b"/").unwrap_or(&sn));
                }
            }
        }
        // What the 404 hint below needs, kept only when it can be logged.
        let seen_path = (tracing::enabled!(tracing::Level::DEBUG) && script_name.is_some())
            .then(|| req.uri().path().to_owned());
        info.https = https;
        info.request_id = id;
        req.extensions_mut()
            .insert(crate::RequestContext::new(env, info, errors));

        // Pinned where it is made: the wrappers hold only a reference, so
        // the large future is not moved again.
        let respond = std::pin::pin!(self.respond(gateway, call, &ctx, seen_path, phase));
        logging::InSpan::new(crate::slow::Watch::new(respond, slow), span).await
    }

    /// Calls the application and sends its response (or the error page).
    ///
    /// An `async` block rather than an `async fn`: the block's future uses
    /// the request where it holds it, where an `async fn` would copy it to
    /// a local of its own first.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` copies its arguments once more"
    )]
    fn respond<G, S, B>(
        &self,
        gateway: &mut G,
        call: std::pin::Pin<&mut AppCall<S, Request<Body>, S::Future>>,
        ctx: &RequestCtx<'_>,
        seen_path: Option<String>,
        phase: Option<Arc<crate::slow::Phase>>,
    ) -> impl Future<Output = Outcome>
    where
        G: Gateway,
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: http_body::Body,
        B::Data: Buf,
        B::Error: Into<BoxError>,
    {
        async move {
            let cfg = &*self.config;
            let called = match cfg.limits.get_app_timeout() {
                None => call.await,
                // Boxed: the timer lives on the heap only when there is one,
                // which keeps the future of every request small.
                Some(limit) => match Box::pin(tokio::time::timeout(limit, call)).await {
                    Ok(called) => called,
                    Err(_) => {
                        tracing::warn!(?limit, "the application did not answer in time; cancelled");
                        crate::metrics::note(cfg.metrics.as_ref(), crate::Failure::Timeout);
                        let res = plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
                        return Box::pin(self.finish_plain(gateway, res, ctx)).await;
                    }
                },
            };
            if let Some(phase) = phase {
                phase.writing();
            }
            let failure = match called {
                Ok(Ok(res)) if res.status() == StatusCode::SWITCHING_PROTOCOLS && !ctx.upgrades => {
                    // The application switched protocols where the backend has
                    // no connection to hand over: say so rather than send a
                    // 101 nothing follows.
                    drop(res);
                    tracing::warn!(
                        "the application answered 101 Switching Protocols, which this backend \
                         cannot carry out; answering 501"
                    );
                    let res = plain(
                        StatusCode::NOT_IMPLEMENTED,
                        "Protocol upgrades are not supported here\n",
                    );
                    return Box::pin(self.finish_plain(gateway, res, ctx)).await;
                }
                Ok(Ok(res)) => {
                    if res.status() == StatusCode::NOT_FOUND
                        && let Some(path) = &seen_path
                    {
                        tracing::debug!(
                            path = %path,
                            view = ?cfg.path_view,
                            "the application answered 404 for this path while SCRIPT_NAME is set; \
                             HandlerBuilder::path_view chooses the path it routes on \
                             (full, below SCRIPT_NAME, or less a mount prefix)"
                        );
                    }
                    match pipeline::send(gateway, res, ctx).await {
                        Sent::Done(outcome) => return outcome,
                        Sent::NothingSent(err) => err,
                    }
                }
                Ok(Err(e)) => ctx.app_failure(e),
                Err(panic) => Error::with(Kind::Panic, panic_message(&*panic)),
            };
            // The rare path lives in its own allocation, which keeps the future
            // of every request small.
            Box::pin(self.error_page(gateway, failure, ctx)).await
        }
    }

    /// Sends the error page for a failure that happened before anything
    /// reached the client.
    async fn error_page<G: Gateway>(
        &self,
        gateway: &mut G,
        failure: Error,
        ctx: &RequestCtx<'_>,
    ) -> Outcome {
        pipeline::log_failure(&failure, ctx);
        if let Some(m) = &self.config.metrics {
            m.error(&failure);
        }
        let page = match failure.client_status() {
            // The client's fault: say so, not "server error".
            Some(status) => client_response(status),
            None => self.error_response(&failure),
        };
        match pipeline::send(gateway, page, ctx).await {
            Sent::Done(mut outcome) => {
                if outcome.kind == OutcomeKind::Complete {
                    outcome.kind = OutcomeKind::ErrorPage;
                }
                outcome
            }
            Sent::NothingSent(e) => {
                tracing::error!(error = %e, "the error page could not be sent");
                Outcome {
                    status: None,
                    bytes_sent: 0,
                    kind: OutcomeKind::Failed,
                }
            }
        }
    }

    async fn finish_plain<G: Gateway>(
        &self,
        gateway: &mut G,
        res: Response<Bytes>,
        ctx: &RequestCtx<'_>,
    ) -> Outcome {
        match pipeline::send(gateway, res.map(http_body_util::Full::new), ctx).await {
            Sent::Done(o) => o,
            Sent::NothingSent(_) => Outcome {
                status: None,
                bytes_sent: 0,
                kind: OutcomeKind::Failed,
            },
        }
    }

    fn error_response(&self, err: &Error) -> Response<http_body_util::Full<Bytes>> {
        let cfg = &*self.config;
        let res = match &cfg.error_responder {
            Some(f) => f(err),
            None => {
                let mut res = Response::new(cfg.error_body.clone());
                *res.status_mut() = cfg.error_status;
                *res.headers_mut() = cfg.error_headers.clone();
                res
            }
        };
        res.map(http_body_util::Full::new)
    }
}

pin_project_lite::pin_project! {
    /// The application's answer to one request: `poll_ready`, then `call`,
    /// then the future `call` returned, in one future that holds the request
    /// until the call (it is not moved from wrapper to wrapper). Every poll
    /// is marked as the application's (see `in_app`), and a panic in any of
    /// them is caught and returned.
    struct AppCall<S, R, F> {
        app: S,
        req: Option<R>,
        #[pin]
        called: Option<F>,
        mark: Option<Duration>,
    }
}

impl<S, R> Future for AppCall<S, R, S::Future>
where
    S: Service<R>,
{
    type Output = Result<Result<S::Response, S::Error>, Box<dyn std::any::Any + Send>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mark = *this.mark;
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            in_app(mark, || {
                if this.called.is_none() {
                    match this.app.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    // Never polled again once it has answered: the request
                    // is there until the call.
                    let Some(req) = this.req.take() else {
                        return Poll::Pending;
                    };
                    this.called.set(Some(this.app.call(req)));
                }
                match this.called.as_mut().as_pin_mut() {
                    Some(called) => called.poll(cx),
                    None => Poll::Pending,
                }
            })
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(answer)) => Poll::Ready(Ok(answer)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The answer to a client fault found after the application was called.
fn client_response(status: StatusCode) -> Response<http_body_util::Full<Bytes>> {
    let body: &'static str = match status {
        StatusCode::REQUEST_TIMEOUT => "Request Timeout\n",
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large\n",
        StatusCode::LENGTH_REQUIRED => "Length Required\n",
        _ => "Bad Request\n",
    };
    plain(status, body).map(http_body_util::Full::new)
}

fn plain(status: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from_static(body.as_bytes()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

/// `Mount` without trailing slashes; an empty prefix is the full view.
fn mount_view(mut p: Bytes) -> PathView {
    while p.ends_with(b"/") {
        p.truncate(p.len() - 1);
    }
    if p.is_empty() {
        PathView::Full
    } else {
        PathView::Mount(p)
    }
}

fn strip_mount(req: &mut Request<Body>, prefix: &[u8]) {
    let uri = req.uri();
    let path = uri.path().as_bytes();
    let rest = match path.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with(b"/") => rest,
        _ => return,
    };
    let mut pq = Vec::with_capacity(rest.len() + 1);
    if rest.is_empty() {
        pq.push(b'/');
    }
    pq.extend_from_slice(rest);
    if let Some(q) = uri.query() {
        pq.push(b'?');
        pq.extend_from_slice(q.as_bytes());
    }
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = http::uri::PathAndQuery::from_maybe_shared(Bytes::from(pq)) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

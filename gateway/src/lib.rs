//! Run a tower or axum application behind any web server, started any way
//! a web server or service manager starts programs.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let app = tower::service_fn(|_req: http::Request<gateway::Body>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new("Hello, world!\n".to_string()))
//!     });
//!     gateway::run(app)
//! }
//! ```
//!
//! The same binary then works:
//!
//! | started as | serves |
//! |---|---|
//! | `./hello` from a shell | HTTP on 127.0.0.1:8000 (`GATEWAY_ADDR` or `PORT` change it) |
//! | a CGI program (Apache, lighttpd, IIS, nginx + fcgiwrap) | that one CGI request |
//! | lighttpd `bin-path`, `spawn-fcgi` (a listening socket on fd 0) | FastCGI, SCGI or HTTP, told per connection |
//! | systemd socket activation | each socket: the protocol it is named after (`fastcgi`, `scgi`, `http`), or told per connection |
//! | `GATEWAY_PROTOCOL=fastcgi GATEWAY_ADDR=unix:/run/app.sock ./hello` | what it says |
//!
//! [`run`] decides in this order, and logs the decision at info level:
//!
//! 1. an explicit choice: [`Builder::protocol`], else `GATEWAY_PROTOCOL`
//!    (`cgi`, `iis-cgi`, `fastcgi`, `scgi`, `http`);
//! 2. sockets systemd passed to this very process (`LISTEN_PID`);
//! 3. a listening socket on fd 0;
//! 4. `GATEWAY_INTERFACE=CGI/…`: CGI (IIS-CGI when `SERVER_SOFTWARE` starts
//!    with `Microsoft-IIS`). A *connected* socket on fd 0, as Apache's
//!    `mod_cgid` gives a CGI program, is CGI's stdin, not a server socket;
//! 5. HTTP on `GATEWAY_ADDR`, else `0.0.0.0:$PORT`, else 127.0.0.1:8000.
//!
//! A start that cannot work (an unknown `GATEWAY_PROTOCOL`, an address or
//! port that does not parse, CGI chosen outside a CGI request) prints one
//! line and exits with status 2. See [`decide`] for the details. A closed
//! fd 0 is no such case: Rust's runtime reopens it on `/dev/null` before
//! `main`, so the program starts as with `</dev/null` (HTTP, unless
//! something else says otherwise).
//!
//! Where a socket's protocol is not named, each connection's is told by its
//! first bytes: a FastCGI record header, an SCGI netstring's digits, an
//! HTTP method. So one socket serves all three. A connection that is none
//! of them is closed (logged at debug level).
//!
//! Under systemd the server says `READY=1` once it listens and
//! `STOPPING=1` when it stops (`Type=notify` units), and stops gracefully
//! on SIGTERM. Example unit and socket files are in `examples/systemd/`.
//!
//! [`Builder::metrics`] counts connections, requests, bytes and failures
//! in a [`Metrics`] whose services render them as JSON or OpenMetrics text
//! (mount them in the application), and [`Builder::status_addr`] serves
//! them on an address of their own.
//!
//! Features `cgi`, `fastcgi`, `scgi` and `http` (all on by default) choose
//! the protocols built in; a start that needs one left out is an error.

mod detect;
mod serve;

use std::process::ExitCode;

use gateway_core::logging::is_request_span;
use tracing_subscriber::layer::Context;

pub use detect::{Facts, Protocol, Socket, Start, StartError, Stdin, UnknownProtocol, decide};
pub use gateway_core::server::{ListenAddr, ServerOptions, Shutdown};
pub use gateway_core::{AppBody, Application, Body, BoxError, Handler, Limits, Metrics, PathView};

/// Serves `app` the way the program was started (see the crate docs), with
/// the default settings. Returns the exit status for `main`.
pub fn run<S, B>(app: S) -> ExitCode
where
    S: Application<B>,
    B: AppBody,
{
    Builder::new().run(app)
}

/// Settings for [`run`]; every one is optional.
///
/// The settings every socket server shares ([`ServerOptions`]) have the
/// same setters here as on the servers. Serving one protocol on one
/// address, the program runs that protocol's server; serving several
/// sockets (systemd) or a socket whose connections each show their
/// protocol, it serves them all the same way: on threads of their own,
/// each with a single-threaded runtime and a copy of every socket (half
/// the CPUs, a thread per CPU when every socket is HTTP;
/// [`worker_threads`](Builder::worker_threads) to choose), or with
/// [`work_stealing`](Builder::work_stealing) on one multi-threaded
/// runtime.
#[derive(Debug, Clone)]
pub struct Builder {
    protocol: Option<Protocol>,
    addr: Option<ListenAddr>,
    options: ServerOptions,
    logging: bool,
    error_log: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The defaults: decide from how the program was started, the default
    /// handler, the servers' default threads (see [`Builder`]), a 30 s
    /// grace period on shutdown, and a log subscriber to stderr.
    pub fn new() -> Self {
        Self {
            protocol: None,
            addr: None,
            options: ServerOptions::new(),
            logging: true,
            error_log: true,
        }
    }

    /// Serves this protocol whatever else the environment says (as
    /// `GATEWAY_PROTOCOL` would).
    pub fn protocol(&mut self, protocol: Protocol) -> &mut Self {
        self.protocol = Some(protocol);
        self
    }

    /// Listens here (as `GATEWAY_ADDR` would), for a socket protocol.
    pub fn addr(&mut self, addr: ListenAddr) -> &mut Self {
        self.addr = Some(addr);
        self
    }

    gateway_core::server_options_setters!(
        options,
        "what the server of the protocol served counts (its connections, the \
         connections refused past the connection limit, protocol errors); \
         under CGI each process counts only its own request, and only the \
         handler's settings apply"
    );

    /// Whether to install a log subscriber writing to stderr (filtered by
    /// `RUST_LOG`; default level info for socket servers, warn for CGI,
    /// whose stderr is the web server's error log). Nothing is installed
    /// when the program set one up already.
    pub fn logging(&mut self, yes: bool) -> &mut Self {
        self.logging = yes;
        self
    }

    /// Whether what the application logs while a request runs (warnings
    /// and errors) goes to that request's error stream, so it lands in the
    /// web server's error log with the request's id, method and path
    /// (default: yes; through `gateway_core::logging::ErrorLogLayer`). Such
    /// events then leave the process's own log, so nothing is written
    /// twice; events outside requests stay there. Under IIS nothing is
    /// written to the error stream (IIS turns it into a 500). Only with
    /// [`logging`](Builder::logging).
    pub fn error_log(&mut self, yes: bool) -> &mut Self {
        self.error_log = yes;
        self
    }

    /// Decides what to serve, then serves `app` until the request (CGI) or
    /// the server (SIGTERM, SIGINT) is done. Returns the exit status.
    pub fn run<S, B>(&self, app: S) -> ExitCode
    where
        S: Application<B>,
        B: AppBody,
    {
        // Before any thread: adopting systemd's sockets edits the
        // environment.
        let facts = Facts::gather();
        let start = decide(&facts, self.protocol, self.addr.as_ref());
        if self.logging {
            let cgi = matches!(&start, Ok(s) if s.socket.is_none());
            init_logging(if cgi { "warn" } else { "info" }, self.error_log);
        }
        let start = match start {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gateway: cannot start: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!("starting {start} ({})", start.reason);
        match serve::start(self, &start, app) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gateway: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(default: &str, error_log: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // With every level off (`RUST_LOG=off`) no event is written, so the
    // error log has nothing to route and requests are not given a span.
    let off = tracing_subscriber::Layer::<tracing_subscriber::Registry>::max_level_hint(&filter)
        == Some(tracing::level_filters::LevelFilter::OFF);
    if !error_log || off {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(stderr)
            .try_init();
        return;
    }
    // The request span must get through the filter for the error-log layer
    // to know which request an event belongs to.
    let filter = match "gateway_core::request=info".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let outside = OutsideRequests(stderr);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(outside)
        .with(gateway_core::logging::ErrorLogLayer::new().outside_requests(false))
        .try_init();
}

/// The process's own log beside the error-log layer: a layer (`fmt`'s)
/// given the events outside requests only, and never the request span.
/// Events in a request go to its error stream instead; and the span, whose
/// fields such a layer would format anew for every request, would show
/// only in front of those events.
struct OutsideRequests<L>(L);

impl<S, L> tracing_subscriber::Layer<S> for OutsideRequests<L>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    L: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.register_callsite(meta)
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        if !is_request_span(attrs.metadata()) {
            self.0.on_new_span(attrs, id, cx);
        }
    }

    fn on_record(
        &self,
        span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        if cx.metadata(span).is_some_and(|m| !is_request_span(m)) {
            self.0.on_record(span, values, cx);
        }
    }

    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.0.on_follows_from(span, follows, cx);
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn on_event(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) {
        // In a request: the event's span or one of its parents is a
        // request span.
        let in_request = cx
            .event_scope(event)
            .is_some_and(|scope| scope.into_iter().any(|s| is_request_span(s.metadata())));
        if !in_request {
            self.0.on_event(event, cx);
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx);
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx);
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx);
    }

    fn on_id_change(&self, old: &tracing::span::Id, new: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_id_change(old, new, cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_go_to_the_handler_and_survive_other_settings() {
        let metrics = Metrics::new();
        let mut b = Builder::new();
        b.metrics(&metrics).limits(Limits::default());
        let counted = b.options.get_handler().metrics().expect("metrics set");
        counted.failure(gateway_core::Failure::Timeout);
        assert_eq!(
            metrics.snapshot().failure(gateway_core::Failure::Timeout),
            1
        );

        let mut b = Builder::new();
        assert!(b.options.get_handler().metrics().is_none());
        b.status_addr("127.0.0.1:0".parse().unwrap());
        assert!(
            b.options.get_handler().metrics().is_some(),
            "status_addr brings metrics"
        );
        assert!(b.options.get_status_addr().is_some());
    }
}

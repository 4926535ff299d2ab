//! Request context for `tracing`, and (with the `tracing-layer` feature)
//! a layer that sends what the application logs to the web server's error
//! log.
//!
//! # The request span
//!
//! The [`Handler`](crate::Handler) runs each request — the application, its
//! reading of the request body, the sending of the response — inside a
//! span:
//!
//! | | |
//! |---|---|
//! | name | `request` |
//! | target | `gateway_core::request` |
//! | level | INFO |
//! | fields | `id` (the [`RequestId`]), `method`, `path` (the path the client asked for, without the query) |
//!
//! Any subscriber shows it as the context of the application's events
//! (`tracing_subscriber::fmt` prints `request{id=7 method=GET path=/x}:`
//! before them). A subscriber or filter that leaves out INFO spans of that
//! target gets no span and pays nothing for it: the span is made only when
//! some subscriber is interested. Work the application spawns onto other
//! tasks is outside the span unless it carries it along
//! (`tracing::Instrument::in_current_span`).
//!
//! The same id is in the request's [`GatewayInfo`](crate::GatewayInfo)
//! ([`GatewayInfo::request_id`](crate::GatewayInfo::request_id)), so an
//! application can print it (on an error page, say) for a user to quote.
//!
//! # The web server's error log
//!
//! With the `tracing-layer` feature, `ErrorLogLayer` is a
//! `tracing_subscriber` layer that writes each event emitted inside a
//! request span, at or above its level (WARN by default), to that request's
//! [`ErrorStream`]: FCGI_STDERR records under FastCGI,
//! which nginx, Apache httpd and lighttpd put in their error logs, and the
//! process's standard error under CGI, which the web server logs too.
//! Events outside any request go to the process's standard error. One
//! event is one line, headed by the request's context:
//!
//! ```text
//! WARN request{id=7 method=GET path=/fcgi/app/upload}: app::upload: quota exceeded user=42
//! ```
//!
//! Line breaks and other control characters in the message are written as
//! escapes (`\n`), so one event cannot forge log lines, and each line is
//! cut to `ErrorLogLayer::max_line_len` bytes (1 KiB by
//! default; nginx cuts what an application writes to its error stream at
//! about 2 KiB, including its own context).
//!
//! ```
//! # #[cfg(feature = "tracing-layer")] {
//! use gateway_core::logging::ErrorLogLayer;
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry()
//!     .with(ErrorLogLayer::new())
//!     .init();
//! # }
//! ```
//!
//! The layer sees the request span only if no filter in front of it drops
//! INFO spans of `gateway_core::request`: with a global filter such as
//! `EnvFilter`, allow them (`warn,gateway_core::request=info`), and do not
//! put a per-layer filter on the layer itself (it filters by level on its
//! own). Without the span, an event is written to the process's standard
//! error like one outside any request.
//!
//! Some lines are left out: the handler's own failure reports (target
//! `gateway_core::pipeline`), which it already writes to the error stream
//! itself, and the lines of [`ErrorStream::log`],
//! which sends error-stream writes back to `tracing`. Where the error
//! stream is itself the process's standard error or the log (the HTTP and
//! SCGI servers by default), the layer adds little over a plain `fmt`
//! layer: it is meant for FastCGI and CGI.
//!
//! # Where standard error costs a response
//!
//! IIS turns any output on a FastCGI application's standard error into a
//! 500 response unless the application's `stderrMode` says otherwise
//! (`ReturnStdErrIn500` is its default). So under IIS — `SERVER_SOFTWARE`
//! starting with `Microsoft-IIS`, or a request served by the IIS mode of
//! the CGI backend — the layer writes nothing for a request, unless
//! `ErrorLogLayer::under_iis` turns it on (with
//! `stderrMode="IgnoreAndReturn200"`, for example).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::environ::Environ;
use crate::info::{ErrorStream, Protocol};

/// The target of the request span.
pub const REQUEST_SPAN_TARGET: &str = "gateway_core::request";

/// Whether `meta` describes the request span (its name and
/// [target](REQUEST_SPAN_TARGET)): for a layer or filter of one's own that
/// treats what happens inside requests apart.
pub fn is_request_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.name() == "request" && meta.target() == REQUEST_SPAN_TARGET
}

/// A number that tells a request apart from the others this process serves
/// (counted from 1), in the request's [`GatewayInfo`](crate::GatewayInfo)
/// and its `tracing` span.
///
/// ```
/// # use gateway_core::RequestContext;
/// fn id(req: &http::Request<gateway_core::Body>) -> Option<u64> {
///     req.extensions()
///         .get::<RequestContext>()
///         .map(|cx| cx.info().request_id().get())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// No request yet: the id of a [`GatewayInfo`](crate::GatewayInfo) a
    /// backend made, before the handler gives it the request's.
    pub(crate) const NONE: Self = RequestId(0);

    /// The next id of this process.
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        RequestId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The span a request runs in (`Span::none()` when no subscriber wants
/// it). With the layer compiled in and one made, the request's error
/// stream and the line head for its events are handed to it while the span
/// is made.
pub(crate) fn request_span(
    id: RequestId,
    method: &http::Method,
    path: &str,
    errors: &ErrorStream,
    environ: &Environ,
    protocol: Protocol,
) -> tracing::Span {
    if !tracing::level_enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
    #[cfg(feature = "tracing-layer")]
    let handed = layer::in_use();
    #[cfg(feature = "tracing-layer")]
    if handed {
        layer::hand_over(
            errors,
            under_iis(environ, protocol),
            layer::Head::new(id, method, path),
        );
    }
    #[cfg(not(feature = "tracing-layer"))]
    let _ = (errors, environ, protocol);
    let span = tracing::info_span!(
        target: "gateway_core::request",
        "request",
        id = id.0,
        method = %method,
        path = %path,
    );
    #[cfg(feature = "tracing-layer")]
    if handed {
        layer::take_back();
    }
    span
}

pin_project_lite::pin_project! {
    /// A request's future, polled inside its span.
    ///
    /// `tracing::Instrumented` also enters the span to drop the future it
    /// holds, so that what the drop logs is in context. The handler's
    /// future here holds only a reference to the request's work (pinned,
    /// and dropped, in the handler's own frame) and logs nothing when it is
    /// dropped, so that enter and exit, about 260 instructions with a
    /// subscriber, would buy nothing.
    pub(crate) struct InSpan<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
    }
}

impl<F> InSpan<F> {
    pub(crate) fn new(inner: F, span: tracing::Span) -> Self {
        InSpan { inner, span }
    }
}

impl<F: std::future::Future> std::future::Future for InSpan<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll(cx)
    }
}

#[cfg_attr(not(feature = "tracing-layer"), allow(dead_code))]
fn under_iis(environ: &Environ, protocol: Protocol) -> bool {
    match protocol {
        Protocol::IisCgi => true,
        // IIS serves HTTP itself and speaks no SCGI: a request that came
        // over either is not IIS's, and its environ (the HTTP server's is
        // made only when read) is not looked at.
        Protocol::Http | Protocol::Scgi => false,
        // Found where the environ noted its known variables: no scan.
        _ => environ
            .known()
            .server_software()
            .is_some_and(|s| s.starts_with(b"Microsoft-IIS")),
    }
}

#[cfg(feature = "tracing-layer")]
pub use layer::ErrorLogLayer;

#[cfg(feature = "tracing-layer")]
mod layer {
    use std::cell::{Cell, RefCell};
    use std::fmt::{self, Write as _};
    use std::sync::atomic::{AtomicBool, Ordering};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    use crate::info::ErrorStream;

    /// What the handler hands the layer for the span being made.
    struct Handover {
        errors: ErrorStream,
        under_iis: bool,
        head: Head,
    }

    /// What a request's lines are headed with, kept as the values: the
    /// text (`request{id=7 method=GET path=/x}`) is written only for a
    /// line, and most requests log none.
    pub(super) struct Head {
        id: super::RequestId,
        method: http::Method,
        path: PathCopy,
    }

    impl Head {
        pub(super) fn new(id: super::RequestId, method: &http::Method, path: &str) -> Self {
            Head {
                id,
                method: method.clone(),
                path: PathCopy::new(path),
            }
        }

        fn text(&self) -> String {
            head(self.id, self.method.as_str(), self.path.as_str())
        }
    }

    /// The most bytes of a path kept without an allocation of its own.
    /// The record the layer keeps per request span is allocated, and with
    /// this it stays small enough for glibc's per-thread cache to serve it
    /// every time: with 54 bytes it did not, and cost 300 instructions a
    /// request more (`scripts/instructions-per-request.sh run-http`).
    const SHORT_PATH: usize = 38;

    /// A copy of a request's path: in place when short (most are).
    enum PathCopy {
        Short(u8, [u8; SHORT_PATH]),
        Long(Box<str>),
    }

    impl PathCopy {
        fn new(path: &str) -> Self {
            let mut bytes = [0; SHORT_PATH];
            match (bytes.get_mut(..path.len()), u8::try_from(path.len())) {
                (Some(place), Ok(len)) => {
                    place.copy_from_slice(path.as_bytes());
                    PathCopy::Short(len, bytes)
                }
                _ => PathCopy::Long(path.into()),
            }
        }

        fn as_str(&self) -> &str {
            match self {
                // A whole `str` copied: valid UTF-8.
                PathCopy::Short(len, bytes) => {
                    std::str::from_utf8(bytes.get(..usize::from(*len)).unwrap_or_default())
                        .unwrap_or_default()
                }
                PathCopy::Long(path) => path,
            }
        }
    }

    /// Whether an [`ErrorLogLayer`] was ever made: until then the handler
    /// hands nothing over.
    static IN_USE: AtomicBool = AtomicBool::new(false);

    pub(super) fn in_use() -> bool {
        IN_USE.load(Ordering::Relaxed)
    }

    /// The request span's fields as one line's context, written as
    /// `tracing`'s field formatting shows them (`request{id=7 method=GET
    /// path=/x}`), from the values themselves: no formatting machinery
    /// for every request.
    fn head(id: super::RequestId, method: &str, path: &str) -> String {
        const PARTS: &str = "request{id= method= path=}";
        let mut head = String::with_capacity(PARTS.len() + 20 + method.len() + path.len());
        head.push_str("request{id=");
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = id.get();
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || at == 0 {
                break;
            }
        }
        for &d in digits.get(at..).unwrap_or_default() {
            head.push(char::from(d));
        }
        head.push_str(" method=");
        head.push_str(method);
        head.push_str(" path=");
        head.push_str(path);
        head.push('}');
        head
    }

    thread_local! {
        static HANDOVER: RefCell<Option<Handover>> = const { RefCell::new(None) };
        /// Set while the layer writes, so that an error stream that logs
        /// through `tracing` cannot loop.
        static WRITING: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn hand_over(errors: &ErrorStream, under_iis: bool, head: Head) {
        HANDOVER.with(|h| {
            *h.borrow_mut() = Some(Handover {
                errors: errors.clone(),
                under_iis,
                head,
            })
        });
    }

    pub(super) fn take_back() {
        HANDOVER.with(|h| h.borrow_mut().take());
    }

    /// A request span's context, kept in the span's extensions.
    struct RequestLog {
        errors: ErrorStream,
        under_iis: bool,
        head: Head,
    }

    /// A `tracing_subscriber` layer that writes events to the error stream
    /// of the request they happen in; see the [module docs](super).
    #[derive(Debug, Clone)]
    pub struct ErrorLogLayer {
        level: Level,
        max_line_len: usize,
        outside_requests: bool,
        under_iis: bool,
    }

    impl Default for ErrorLogLayer {
        fn default() -> Self {
            Self::new()
        }
    }

    impl ErrorLogLayer {
        /// The defaults: WARN and above, lines of at most 1 KiB, events
        /// outside requests to standard error, nothing under IIS.
        pub fn new() -> Self {
            IN_USE.store(true, Ordering::Relaxed);
            Self {
                level: Level::WARN,
                max_line_len: 1024,
                outside_requests: true,
                under_iis: false,
            }
        }

        /// The least severe level written (WARN by default).
        pub fn level(mut self, level: Level) -> Self {
            self.level = level;
            self
        }

        /// The longest line written, in bytes with its line break (1024 by
        /// default, at least 64); a longer one is cut and ends in `...`.
        pub fn max_line_len(mut self, n: usize) -> Self {
            self.max_line_len = n.max(64);
            self
        }

        /// Whether events outside any request go to the process's standard
        /// error (default true).
        pub fn outside_requests(mut self, yes: bool) -> Self {
            self.outside_requests = yes;
            self
        }

        /// Whether requests served by IIS get their events on their error
        /// stream (default false: IIS answers 500 for a FastCGI response
        /// with anything on standard error unless `stderrMode` says
        /// otherwise).
        pub fn under_iis(mut self, yes: bool) -> Self {
            self.under_iis = yes;
            self
        }

        /// One line for `event`, with `head` as its context.
        fn line(&self, event: &Event<'_>, head: Option<&str>) -> String {
            let meta = event.metadata();
            let mut text = String::with_capacity(128);
            let _ = write!(text, "{} ", meta.level());
            if let Some(head) = head {
                text.push_str(head);
                text.push_str(": ");
            }
            let _ = write!(text, "{}: ", meta.target());
            let mut fields = Fields::default();
            event.record(&mut fields);
            text.push_str(&fields.message);
            if !fields.rest.is_empty() {
                if !fields.message.is_empty() {
                    text.push(' ');
                }
                text.push_str(&fields.rest);
            }
            let mut line = escape(&text);
            cut(&mut line, self.max_line_len - 1);
            line.push('\n');
            line
        }
    }

    /// Control characters as escapes: one event, one line.
    fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out
    }

    /// Cuts `line` to at most `max` bytes, on a character boundary, ending
    /// in `...` when anything was cut.
    fn cut(line: &mut String, max: usize) {
        if line.len() <= max {
            return;
        }
        let mut at = max.saturating_sub(3);
        while !line.is_char_boundary(at) {
            at -= 1;
        }
        line.truncate(at);
        line.push_str("...");
    }

    #[derive(Default)]
    struct Fields {
        message: String,
        rest: String,
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.message, "{value:?}");
            } else {
                if !self.rest.is_empty() {
                    self.rest.push(' ');
                }
                let _ = write!(self.rest, "{}={value:?}", field.name());
            }
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.message.push_str(value);
            } else {
                self.record_debug(field, &value);
            }
        }
    }

    impl<S> Layer<S> for ErrorLogLayer
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if !super::is_request_span(attrs.metadata()) {
                return;
            }
            let Some(handover) = HANDOVER.with(|h| h.borrow_mut().take()) else {
                return;
            };
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(RequestLog {
                    errors: handover.errors,
                    under_iis: handover.under_iis,
                    head: handover.head,
                });
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let meta = event.metadata();
            // Less severe levels compare greater.
            if *meta.level() > self.level
                || meta.target() == "gateway_core::pipeline"
                || meta.target() == "gateway::errors"
                || WRITING.with(Cell::get)
            {
                return;
            }
            let request = ctx.event_scope(event).and_then(|scope| {
                scope.into_iter().find_map(|span| {
                    span.extensions()
                        .get::<RequestLog>()
                        .map(|r| (r.errors.clone(), r.under_iis, r.head.text()))
                })
            });
            WRITING.with(|w| w.set(true));
            match request {
                Some((_, true, _)) if !self.under_iis => {}
                Some((errors, _, head)) => errors.write(self.line(event, Some(&head)).as_bytes()),
                None if self.outside_requests => {
                    use std::io::Write;
                    let line = self.line(event, None);
                    let _ = std::io::stderr().lock().write_all(line.as_bytes());
                }
                None => {}
            }
            WRITING.with(|w| w.set(false));
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// What `tracing`'s field formatting makes of the request span's
        /// fields, which the head must read the same as.
        struct Formatted(String);

        impl Visit for Formatted {
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                if !self.0.ends_with('{') {
                    self.0.push(' ');
                }
                let _ = write!(self.0, "{}={value:?}", field.name());
            }
        }

        #[test]
        fn the_head_reads_as_the_spans_fields_do() {
            use tracing_subscriber::prelude::*;
            struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
            impl<S: Subscriber> Layer<S> for Capture {
                fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
                    let mut f = Formatted(String::from("request{"));
                    attrs.record(&mut f);
                    f.0.push('}');
                    self.0.lock().unwrap().push(f.0);
                }
            }
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
            let cases = [
                (0, http::Method::GET, "/"),
                (7, http::Method::POST, "/a b/%C3%A9"),
                (u64::MAX, http::Method::from_bytes(b"PURGE").unwrap(), "*"),
                // Kept in place up to 38 bytes, then on the heap.
                (
                    38,
                    http::Method::GET,
                    "/thirty-eight/bytes/kept/in/place/xyzw",
                ),
                (
                    39,
                    http::Method::GET,
                    "/thirty-nine/bytes/on/the/heap/é/xyzwv",
                ),
            ];
            tracing::subscriber::with_default(subscriber, || {
                for (id, method, path) in &cases {
                    let _span = tracing::info_span!(
                        target: "gateway_core::request",
                        "request",
                        id = id,
                        method = %method,
                        path = %path,
                    );
                }
            });
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), cases.len());
            for ((id, method, path), formatted) in cases.iter().zip(seen.iter()) {
                let head = Head::new(super::super::RequestId(*id), method, path).text();
                assert_eq!(&head, formatted);
            }
            assert_eq!(seen[1], "request{id=7 method=POST path=/a b/%C3%A9}");
            assert!(matches!(PathCopy::new(cases[3].2), PathCopy::Short(38, _)));
            assert!(matches!(PathCopy::new(cases[4].2), PathCopy::Long(_)));
        }

        #[test]
        fn lines_are_escaped_and_cut_on_character_boundaries() {
            assert_eq!(escape("a\nb\r\tc\u{1b}"), "a\\nb\\r\\tc\\u{1b}");
            let mut s = "é".repeat(40);
            cut(&mut s, 64);
            assert!(s.len() <= 64 && s.ends_with("..."), "{s}");
            let mut short = "abc".to_owned();
            cut(&mut short, 64);
            assert_eq!(short, "abc");
        }
    }
}

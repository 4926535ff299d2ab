//! Repeated failures are summarised: the first in full, identical ones
//! within the interval only counted, then one line with the count, so a
//! route that fails on every request cannot flood the log.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use gateway_core::{Body, BoxError, ErrorStream, Handler, Outcome, StreamGateway};
use http::{Request, Response};
use tower::Service;

/// An app that panics with `msg` when called.
fn panicking(
    msg: &'static str,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(move |_req: Request<Body>| async move {
        if !msg.is_empty() {
            panic!("{msg}");
        }
        Ok::<_, Infallible>(Response::new(Body::empty()))
    })
}

/// Runs `app` `n` times with `handler`, every run writing to `errors`.
async fn run_many<S, B>(handler: &Handler, errors: &ErrorStream, n: usize, app: S) -> Vec<Outcome>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Data: bytes::Buf,
    B::Error: Into<BoxError>,
{
    let mut outcomes = Vec::with_capacity(n);
    for _ in 0..n {
        let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), errors.clone(), testing_env());
        outcomes.push(handler.run(&mut gw, app.clone()).await);
        assert_eq!(gw.writer(), ERROR_PAGE, "every request still gets the page");
    }
    outcomes
}

/// A `tracing` subscriber that counts error events on this thread.
struct ErrorEvents(Arc<AtomicUsize>);

impl tracing::Subscriber for ErrorEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// 1,000 identical panics: the error stream gets the failure once (and at
/// most a few count lines on a very slow machine), the `tracing` log one
/// error event, and every request its error page.
#[tokio::test]
async fn identical_panics_are_logged_once() {
    let handler = Handler::new();
    let (errors, captured) = ErrorStream::capture();
    let events = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(ErrorEvents(events.clone()));
    let outcomes = run_many(&handler, &errors, 1000, panicking("boom")).await;
    assert!(outcomes.iter().all(Outcome::is_error_page));
    let text = captured.text();
    assert!(
        text.starts_with("gateway: application panicked: boom\n"),
        "{text}"
    );
    assert!(text.lines().count() <= 3, "{text}");
    assert!(text.len() <= 400, "{} bytes:\n{text}", text.len());
    assert!(events.load(Ordering::SeqCst) <= 3, "{events:?}");
}

/// The same for a response body that panics after its first chunk (the
/// response is aborted each time).
#[tokio::test]
async fn identical_body_panics_are_logged_once() {
    let handler = Handler::new();
    let (errors, captured) = ErrorStream::capture();
    let body = Scripted::new([data(b"partial"), Step::Pending, Step::Panic("late boom")]);
    let app = respond(move || Response::new(body.clone()));
    for _ in 0..1000 {
        let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), errors.clone(), testing_env());
        assert!(handler.run(&mut gw, app.clone()).await.is_aborted());
    }
    let text = captured.text();
    assert!(
        text.starts_with("gateway: application panicked: late boom\n"),
        "{text}"
    );
    assert!(text.lines().count() <= 3, "{text}");
}

/// Distinct failures are each logged in full, however they interleave.
#[tokio::test]
async fn distinct_failures_are_each_logged() {
    let handler = Handler::new();
    let (errors, captured) = ErrorStream::capture();
    for _ in 0..100 {
        run_many(&handler, &errors, 1, panicking("first failure")).await;
        run_many(&handler, &errors, 1, panicking("second failure")).await;
    }
    let text = captured.text();
    assert_eq!(
        text.matches("gateway: application panicked: first failure\n")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("gateway: application panicked: second failure\n")
            .count(),
        1,
        "{text}"
    );
    assert!(text.lines().count() <= 6, "{text}");
}

/// After the interval, the next identical failure is reported as one line
/// with the count of those not logged, itself included.
#[tokio::test]
async fn after_the_interval_a_count_line() {
    let interval = Duration::from_millis(500);
    let handler = Handler::builder().repeat_summary(interval).build();
    let (errors, captured) = ErrorStream::capture();
    run_many(&handler, &errors, 5, panicking("boom")).await;
    assert_eq!(captured.text(), "gateway: application panicked: boom\n");
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    run_many(&handler, &errors, 1, panicking("boom")).await;
    let text = captured.text();
    let (first, line) = text.split_once('\n').unwrap();
    assert_eq!(first, "gateway: application panicked: boom");
    let line = line.strip_suffix('\n').unwrap();
    let rest = line
        .strip_prefix("gateway: 5 more identical failures in the last ")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(rest.ends_with(" ms: application panicked: boom"), "{text}");
    // The count line starts a new interval: the next one is counted again.
    run_many(&handler, &errors, 1, panicking("boom")).await;
    assert_eq!(captured.text(), text);
}

/// A zero interval logs every failure in full.
#[tokio::test]
async fn zero_interval_logs_every_failure() {
    let handler = Handler::builder().repeat_summary(Duration::ZERO).build();
    let (errors, captured) = ErrorStream::capture();
    run_many(&handler, &errors, 50, panicking("boom")).await;
    assert_eq!(
        captured.text(),
        "gateway: application panicked: boom\n".repeat(50)
    );
}

/// Handlers keep their own counts.
#[tokio::test]
async fn each_handler_counts_its_own() {
    let (errors, captured) = ErrorStream::capture();
    run_many(&Handler::new(), &errors, 3, panicking("boom")).await;
    run_many(&Handler::new(), &errors, 3, panicking("boom")).await;
    assert_eq!(
        captured.text(),
        "gateway: application panicked: boom\n".repeat(2)
    );
}

/// Other failures an app repeats on every request are summarised too: a
/// body longer than its Content-Length.
#[tokio::test]
async fn a_repeated_overlong_body_is_logged_once() {
    let handler = Handler::new();
    let (errors, captured) = ErrorStream::capture();
    let app = respond(|| response(Body::from("too long"), &[("content-length", "3")]));
    for _ in 0..100 {
        let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), errors.clone(), testing_env());
        handler.run(&mut gw, app.clone()).await;
        assert!(gw.writer().ends_with(b"\r\n\r\ntoo"));
    }
    assert_eq!(
        captured.text(),
        "gateway: response body longer than its Content-Length; truncated\n"
    );
}

/// Client faults stay out of the error log, repeated or not.
#[tokio::test]
async fn client_faults_are_not_logged() {
    let handler = Handler::new();
    let (errors, captured) = ErrorStream::capture();
    for _ in 0..10 {
        let env = env_with(&[("CONTENT_LENGTH", "10")]);
        let mut gw = StreamGateway::cgi(&b"short"[..], Vec::new(), errors.clone(), env);
        let app = tower::service_fn(|req: Request<Body>| async move {
            use http_body_util::BodyExt;
            req.into_body().collect().await?;
            Ok::<_, BoxError>(Response::new(Body::empty()))
        });
        handler.run(&mut gw, app).await;
    }
    assert_eq!(captured.text(), "");
}

/// Write failures that repeat on every request are summarised too.
#[tokio::test]
async fn a_repeated_write_failure_is_logged_once() {
    let handler = Handler::new();
    let (errors, captured) = ErrorStream::capture();
    let app = respond(|| Response::new(Body::from("data")));
    for _ in 0..100 {
        let writer = FailingWriter::new(std::io::ErrorKind::Other, 0);
        let mut gw = StreamGateway::cgi(&b""[..], writer, errors.clone(), testing_env());
        assert!(handler.run(&mut gw, app.clone()).await.is_failed());
    }
    assert_eq!(
        captured.text(),
        "gateway: writing the response failed: test writer failure\n"
    );
}

//! `Limits::slow_request`: a request still running past the threshold is
//! logged once at warn level, with its method, URI, time so far and phase.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::{Body, Environ, ErrorStream, Handler, Limits, StreamGateway};
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Every event, as `LEVEL target: field=value ...`.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn slow(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.contains("gateway_core::slow_request"))
            .cloned()
            .collect()
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
}

fn handler(threshold: Option<Duration>) -> Handler {
    let mut limits = Limits::default();
    limits.slow_request(threshold);
    Handler::builder().limits(limits).build()
}

fn env(method: &str, length: Option<&str>) -> Environ {
    let mut env = Environ::new();
    env.setup_testing_defaults();
    env.insert("REQUEST_METHOD", method.to_owned());
    env.insert("PATH_INFO", "/work");
    env.insert("QUERY_STRING", "n=1");
    if let Some(n) = length {
        env.insert("CONTENT_LENGTH", n.to_owned());
    }
    env
}

/// Runs `fut` on a current-thread runtime with paused time, under a
/// subscriber that records events.
fn with_events(fut: impl std::future::Future<Output = ()>) -> Events {
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(fut)
    });
    events
}

#[test]
fn a_slow_application_is_logged_once_in_the_application() {
    let events = with_events(async {
        let app = tower::service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new("late".to_string()))
        });
        let mut gw =
            StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), env("GET", None));
        let outcome = handler(Some(Duration::from_secs(1)))
            .run(&mut gw, app)
            .await;
        assert!(outcome.is_complete());
    });
    let slow = events.slow();
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert!(
        slow[0].starts_with("WARN gateway_core::slow_request:"),
        "{}",
        slow[0]
    );
    for part in [
        "message=slow request",
        "method=GET",
        "uri=/work?n=1",
        "elapsed_ms=1000",
        "phase=in the application",
    ] {
        assert!(slow[0].contains(part), "{part}: {}", slow[0]);
    }
}

#[test]
fn fast_requests_and_no_threshold_log_nothing() {
    let events = with_events(async {
        for threshold in [Some(Duration::from_secs(1)), None] {
            let app = tower::service_fn(move |_req: Request<Body>| async move {
                if threshold.is_none() {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, Infallible>(Response::new("ok".to_string()))
            });
            let mut gw =
                StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), env("GET", None));
            handler(threshold).run(&mut gw, app).await;
        }
    });
    assert_eq!(events.slow(), Vec::<String>::new());
}

#[test]
fn an_application_waiting_for_the_body_is_reading_it() {
    let events = with_events(async {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            client.write_all(b"0123456789").await.unwrap();
        });
        let app = tower::service_fn(|req: Request<Body>| async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(body)))
        });
        let mut gw = StreamGateway::cgi(
            server,
            Vec::new(),
            ErrorStream::null(),
            env("POST", Some("10")),
        );
        let outcome = handler(Some(Duration::from_secs(1)))
            .run(&mut gw, app)
            .await;
        assert!(outcome.is_complete());
        assert!(gw.writer().ends_with(b"0123456789"));
    });
    let slow = events.slow();
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert!(slow[0].contains("method=POST"), "{}", slow[0]);
    assert!(
        slow[0].contains("phase=reading the request body"),
        "{}",
        slow[0]
    );
}

/// A body that yields one chunk, then waits, then another.
struct Slow {
    left: u8,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Slow {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        use std::future::Future;
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        if self.left == 1 {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_secs(4))));
            if sleep.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
    }
}

#[test]
fn a_slow_response_body_is_writing() {
    let events = with_events(async {
        let app = tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Slow {
                left: 2,
                sleep: None,
            }))
        });
        let mut gw =
            StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), env("GET", None));
        let outcome = handler(Some(Duration::from_secs(2)))
            .run(&mut gw, app)
            .await;
        assert!(outcome.is_complete());
        assert!(gw.writer().ends_with(b"xx"));
    });
    let slow = events.slow();
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert!(
        slow[0].contains("phase=writing the response"),
        "{}",
        slow[0]
    );
    assert!(slow[0].contains("elapsed_ms=2000"), "{}", slow[0]);
}

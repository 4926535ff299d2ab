//! `ErrorLogLayer`: events logged while a request runs reach that
//! request's error stream, one capped line each, with the request's
//! context.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use gateway_core::logging::ErrorLogLayer;
use gateway_core::{Body, Environ, ErrorStream, Handler, StreamGateway};
use http::{Request, Response};
use tracing_subscriber::prelude::*;

/// Runs one GET request for `path` whose application calls `log`, under a
/// registry with `layer`, and returns the request's id and what reached
/// its error stream.
fn run(
    layer: ErrorLogLayer,
    env_extra: &[(&'static str, &'static str)],
    errors: Option<ErrorStream>,
    log: impl Fn() + Send + Sync + 'static,
) -> (u64, String) {
    let (stream, captured) = ErrorStream::capture();
    let errors = errors.unwrap_or(stream);
    let seen = Arc::new(Mutex::new(0));
    let seen_in_app = seen.clone();
    let log = Arc::new(log);
    let app = tower::service_fn(move |req: Request<Body>| {
        let id = req
            .extensions()
            .get::<gateway_core::RequestContext>()
            .map(|cx| cx.info().request_id().get());
        *seen_in_app.lock().unwrap() = id.unwrap_or(0);
        let log = log.clone();
        async move {
            log();
            Ok::<_, Infallible>(Response::new("ok".to_string()))
        }
    });
    let mut env = Environ::new();
    env.setup_testing_defaults();
    env.insert("PATH_INFO", "/report");
    env.insert("SCRIPT_NAME", "/app");
    env.insert("QUERY_STRING", "secret=1");
    for (k, v) in env_extra {
        env.insert(*k, *v);
    }
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), errors, env);
            Handler::new().run(&mut gw, app).await;
        });
    });
    let id = *seen.lock().unwrap();
    (id, captured.text())
}

#[test]
fn a_warning_reaches_the_error_stream_with_the_request_context() {
    let (id, text) = run(ErrorLogLayer::new(), &[], None, || {
        tracing::info!(target: "app", "not at the default level");
        tracing::warn!(target: "app", user = 42, "quota exceeded");
        let inner = tracing::info_span!("inner", step = 2);
        let _g = inner.enter();
        tracing::error!(target: "app::db", "inside a nested span");
    });
    assert!(id > 0);
    assert_eq!(
        text,
        format!(
            "WARN request{{id={id} method=GET path=/app/report}}: app: quota exceeded user=42\n\
             ERROR request{{id={id} method=GET path=/app/report}}: app::db: inside a nested span\n"
        )
    );
}

#[test]
fn the_level_is_configurable() {
    let (_, text) = run(
        ErrorLogLayer::new().level(tracing::Level::INFO),
        &[],
        None,
        || {
            tracing::debug!(target: "app", "not shown");
            tracing::info!(target: "app", "shown");
        },
    );
    assert!(text.ends_with(": app: shown\n"), "{text:?}");
    assert_eq!(text.lines().count(), 1, "{text:?}");
}

#[test]
fn one_event_is_one_capped_line() {
    let (_, text) = run(ErrorLogLayer::new(), &[], None, || {
        tracing::warn!(target: "app", "first\nsecond\r\n\u{1b}[31m");
        tracing::warn!(target: "app", "{}", "ü".repeat(3000));
    });
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert!(
        lines[0].ends_with(": app: first\\nsecond\\r\\n\\u{1b}[31m\n"),
        "{:?}",
        lines[0]
    );
    assert!(lines[1].len() <= 1024, "{}", lines[1].len());
    assert!(lines[1].ends_with("...\n"), "{:?}", &lines[1][1000..]);

    let (_, text) = run(ErrorLogLayer::new().max_line_len(100), &[], None, || {
        tracing::warn!(target: "app", "{}", "x".repeat(500));
    });
    assert_eq!(text.len(), 100, "{text:?}");
}

/// Under IIS nothing is written unless asked for.
#[test]
fn nothing_under_iis_by_default() {
    let iis = [("SERVER_SOFTWARE", "Microsoft-IIS/10.0")];
    let (_, text) = run(ErrorLogLayer::new(), &iis, None, || {
        tracing::warn!(target: "app", "would be a 500");
    });
    assert_eq!(text, "");
    let (_, text) = run(ErrorLogLayer::new().under_iis(true), &iis, None, || {
        tracing::warn!(target: "app", "asked for");
    });
    assert!(text.ends_with(": app: asked for\n"), "{text:?}");
}

/// The handler's own failure report is written once, not again through the
/// layer.
#[test]
fn failures_are_not_written_twice() {
    let (stream, captured) = ErrorStream::capture();
    let app = tower::service_fn(|_req: Request<Body>| async {
        Err::<Response<String>, _>(std::io::Error::other("boom"))
    });
    let mut env = Environ::new();
    env.setup_testing_defaults();
    let subscriber = tracing_subscriber::registry().with(ErrorLogLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), stream, env);
            Handler::builder()
                .repeat_summary(std::time::Duration::ZERO)
                .build()
                .run(&mut gw, app)
                .await;
        });
    });
    assert_eq!(captured.text(), "gateway: application error: boom\n");
}

/// An error stream that logs through `tracing` does not loop.
#[test]
fn an_error_stream_that_logs_does_not_loop() {
    let (_, text) = run(
        ErrorLogLayer::new(),
        &[],
        Some(ErrorStream::log()),
        || tracing::warn!(target: "app", "once"),
    );
    assert_eq!(text, "");
}

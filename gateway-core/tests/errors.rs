//! The error policy: the error page while nothing has been sent, an aborted
//! response after, panics, client disconnects, write failures, and the
//! configurable page (CHECKLIST C10, C14, C16–C18, C36, C37, C39).

mod common;

use std::convert::Infallible;
use std::fmt;
use std::io;

use common::*;
use gateway_core::{Body, BoxError, ErrorStream, Handler, ReasonPhrase, StreamGateway};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

/// An app whose call fails with `msg`.
fn failing(
    msg: &'static str,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone {
    tower::service_fn(move |_req: Request<Body>| async move {
        Err::<Response<Body>, BoxError>(io::Error::other(msg).into())
    })
}

/// An app whose response body is `body`.
fn with_body(
    body: Scripted,
) -> impl tower::Service<Request<Body>, Response = Response<Scripted>, Error = Infallible> + Clone {
    respond(move || Response::new(body.clone()))
}

/// C10: an app error before any body gives the error page, byte for byte;
/// the error's text goes to the error stream and never to the client.
#[tokio::test]
async fn c10_app_error_gives_error_page() {
    let r = run_cgi(failing("secret database password")).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.outcome.is_error_page());
    assert!(r.outcome.is_complete());
    assert_eq!(r.outcome.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(
        r.errors.contains("secret database password"),
        "{}",
        r.errors
    );
    assert!(!r.text().contains("secret"));
}

/// C10: a panicking app is caught and gives the same page; the panic
/// message is logged.
#[tokio::test]
async fn c10_panic_gives_error_page() {
    let app = tower::service_fn(|_req: Request<Body>| async move {
        if true {
            panic!("kaboom in the app");
        }
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    let r = run_cgi(app).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.outcome.is_error_page());
    assert!(r.errors.contains("kaboom in the app"), "{}", r.errors);
}

/// C10/C28: a body that fails before its first chunk still gets the page
/// (the head is held until the first non-empty chunk).
#[tokio::test]
async fn c10_body_error_before_first_chunk_gives_page() {
    let body = Scripted::new([Step::Error("body broke early")]);
    let flag = body.drop_flag();
    let r = run_cgi(with_body(body)).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.outcome.is_error_page());
    assert!(r.errors.contains("body broke early"), "{}", r.errors);
    assert!(flag.is_set());
}

/// C10: a body that panics before its first chunk also gets the page.
#[tokio::test]
async fn c10_body_panic_before_first_chunk_gives_page() {
    let body = Scripted::new([Step::Pending, Step::Panic("body panicked")]);
    let r = run_cgi(with_body(body)).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.errors.contains("body panicked"), "{}", r.errors);
}

/// C10/C11/C14: a body that fails after its first chunk: the chunk goes
/// out, no page is added, the response is aborted, the error is logged and
/// the body is dropped.
#[tokio::test]
async fn c14_body_error_after_first_chunk_aborts_and_drops() {
    let body = Scripted::new([data(b"partial"), Step::Error("body broke late")]);
    let flag = body.drop_flag();
    let r = run_cgi(with_body(body)).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\npartial"
    );
    assert!(r.outcome.is_aborted());
    assert_eq!(r.outcome.bytes_sent(), 7);
    assert!(r.errors.contains("body broke late"), "{}", r.errors);
    assert!(flag.is_set(), "the failed body must be dropped");
}

/// C14: the same with a panic in the body after its first chunk.
#[tokio::test]
async fn c14_body_panic_after_first_chunk_aborts() {
    let body = Scripted::new([data(b"partial"), Step::Pending, Step::Panic("late panic")]);
    let flag = body.drop_flag();
    let r = run_cgi(with_body(body)).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\npartial"
    );
    assert!(r.outcome.is_aborted());
    assert!(r.errors.contains("late panic"), "{}", r.errors);
    assert!(flag.is_set());
}

/// C16/C37: a client that went away (each of the three errors) is not an
/// error: the outcome says so, nothing is logged, the body is dropped.
#[tokio::test]
async fn c16_client_disconnect_is_quiet() {
    for kind in [
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::ConnectionAborted,
    ] {
        let body = Scripted::new([data(b"hello")]).exact(5);
        let flag = body.drop_flag();
        let (errors, captured) = ErrorStream::capture();
        let writer = FailingWriter::new(kind, 0);
        let mut gw = StreamGateway::origin(&b""[..], writer, errors, testing_env());
        let outcome = Handler::new().run(&mut gw, with_body(body)).await;
        assert!(outcome.is_disconnected(), "{kind:?}: {outcome:?}");
        assert_eq!(captured.text(), "", "{kind:?}");
        assert!(flag.is_set(), "{kind:?}");
    }
}

/// C37: a disconnect in the middle of a streamed body drops the body
/// before its end, and logs nothing.
#[tokio::test]
async fn c37_disconnect_mid_stream_drops_body() {
    let body = Scripted::new([
        data(b"one"),
        Step::Pending,
        data(b"two"),
        Step::Pending,
        data(b"three"),
    ]);
    let flag = body.drop_flag();
    let (errors, captured) = ErrorStream::capture();
    // The first write (head + "one", flushed because the body waits)
    // succeeds; the next fails.
    let writer = FailingWriter::new(io::ErrorKind::BrokenPipe, 1);
    let mut gw = StreamGateway::cgi(&b""[..], writer, errors, testing_env());
    let outcome = Handler::new().run(&mut gw, with_body(body)).await;
    assert!(outcome.is_disconnected(), "{outcome:?}");
    assert_eq!(captured.text(), "");
    assert!(flag.is_set());
    assert_eq!(
        gw.into_writer().out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\none"
    );
}

/// C17: another write error is logged to the error stream, the outcome is
/// failed, and no error page follows what was already sent.
#[tokio::test]
async fn c17_other_write_error_logged_no_page() {
    let body = Scripted::new([data(b"one"), Step::Pending, data(b"two")]);
    let (errors, captured) = ErrorStream::capture();
    let writer = FailingWriter::new(io::ErrorKind::PermissionDenied, 1);
    let mut gw = StreamGateway::cgi(&b""[..], writer, errors, testing_env());
    let outcome = Handler::new().run(&mut gw, with_body(body)).await;
    assert!(outcome.is_failed(), "{outcome:?}");
    // The state is not reset: the outcome still reports the head sent.
    assert_eq!(outcome.status(), Some(StatusCode::OK));
    assert!(
        captured.text().contains("test writer failure"),
        "{}",
        captured.text()
    );
    assert_eq!(
        gw.into_writer().out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\none"
    );
}

/// C17: the same when the very first write fails: logged, failed, nothing
/// more attempted.
#[tokio::test]
async fn c17_first_write_error() {
    let (errors, captured) = ErrorStream::capture();
    let writer = FailingWriter::new(io::ErrorKind::Other, 0);
    let mut gw = StreamGateway::cgi(&b""[..], writer, errors, testing_env());
    let app = respond(|| Response::new(Body::from("data")));
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_failed(), "{outcome:?}");
    assert!(captured.text().contains("test writer failure"));
    assert_eq!(gw.into_writer().out, b"");
}

/// C18/B7: a reason phrase with a control character is refused: the page.
#[tokio::test]
async fn c18_control_character_in_reason_phrase() {
    let app = respond(|| {
        let mut res = Response::new(Body::from("x"));
        res.extensions_mut()
            .insert(ReasonPhrase(bytes::Bytes::from_static(b"O\r\nK")));
        res
    });
    let r = run_cgi(app).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.errors.contains("control character"), "{}", r.errors);
}

/// C18: `http` itself refuses the names and values wsgiref's regexes
/// refuse (so an app cannot even build them), and allows HTAB in values.
#[test]
fn c18_http_types_refuse_control_characters() {
    for name in [&b"X\x00A"[..], b"X\x1fA", b"X\x7fA", b"X A"] {
        assert!(http::HeaderName::from_bytes(name).is_err(), "{name:?}");
    }
    for value in [
        &b"a\x00b"[..],
        b"a\x08b",
        b"a\nb",
        b"a\rb",
        b"a\x1fb",
        b"a\x7fb",
    ] {
        assert!(HeaderValue::from_bytes(value).is_err(), "{value:?}");
    }
    assert!(HeaderValue::from_bytes(b"a\tb").is_ok());
}

/// A response Content-Length that is not a number is an invalid head: the
/// page.
#[tokio::test]
async fn c30_invalid_content_length_from_app() {
    let app = respond(|| response(Body::from("x"), &[("content-length", "abc")]));
    let r = run_cgi(app).await;
    assert_eq!(r.out, ERROR_PAGE);
}

/// C36: error_status, error_headers and error_body are configurable.
#[tokio::test]
async fn c36_error_page_configurable() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/html"));
    headers.insert("x-error", HeaderValue::from_static("yes"));
    let handler = Handler::builder()
        .error_status(StatusCode::SERVICE_UNAVAILABLE)
        .error_headers(headers)
        .error_body("<h1>Down</h1>")
        .build();
    let r = run(&handler, testing_env(), false, failing("nope")).await;
    assert_eq!(
        r.text(),
        "Status: 503 Service Unavailable\r\nContent-Type: text/html\r\nX-Error: yes\r\n\
         Content-Length: 13\r\n\r\n<h1>Down</h1>"
    );
    assert!(r.outcome.is_error_page());
}

/// C36: an error responder makes the page; it sees the error (to choose a
/// status) but the client sees only what it returns.
#[tokio::test]
async fn c36_error_responder() {
    let handler = Handler::builder()
        .error_responder(|err| {
            let kind = if err.is_panic() { "panic" } else { "error" };
            let mut res = Response::new(bytes::Bytes::from(format!("custom {kind}")));
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            res
        })
        .build();
    let r = run(&handler, testing_env(), false, failing("hidden")).await;
    assert_eq!(
        r.text(),
        "Status: 502 Bad Gateway\r\nContent-Length: 12\r\n\r\ncustom error"
    );
    assert!(r.errors.contains("hidden"));
}

/// An error with a chain of causes: `level0` → `level1` → ….
#[derive(Debug)]
struct Link {
    level: usize,
    next: Option<Box<Link>>,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "level{}", self.level)
    }
}

impl std::error::Error for Link {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next
            .as_deref()
            .map(|l| l as &(dyn std::error::Error + 'static))
    }
}

fn chain(depth: usize) -> Link {
    let mut link = Link {
        level: depth,
        next: None,
    };
    for level in (0..depth).rev() {
        link = Link {
            level,
            next: Some(Box::new(link)),
        };
    }
    link
}

/// C36: traceback_limit bounds the logged cause chain.
#[tokio::test]
async fn c36_traceback_limit_bounds_cause_chain() {
    let app = tower::service_fn(|_req: Request<Body>| async move {
        Err::<Response<Body>, BoxError>(Box::new(chain(5)))
    });
    // Unbounded enough: every level is logged.
    let r = run(&Handler::new(), testing_env(), false, app).await;
    for level in 0..=5 {
        assert!(r.errors.contains(&format!("level{level}")), "{}", r.errors);
    }
    assert_eq!(r.out, ERROR_PAGE);

    let handler = Handler::builder().traceback_limit(2).build();
    let r = run(&handler, testing_env(), false, app).await;
    assert!(r.errors.contains("level0"), "{}", r.errors);
    assert!(r.errors.contains("level1"), "{}", r.errors);
    assert!(r.errors.contains("level2"), "{}", r.errors);
    assert!(!r.errors.contains("level3"), "{}", r.errors);
    assert!(!r.errors.contains("level5"), "{}", r.errors);

    let handler = Handler::builder().traceback_limit(0).build();
    let r = run(&handler, testing_env(), false, app).await;
    assert!(r.errors.contains("level0"), "{}", r.errors);
    assert!(!r.errors.contains("level1"), "{}", r.errors);
}

/// C39: after a successful response the body has been dropped (wsgiref's
/// close()), and the outcome carries what a server logs: the status and
/// the body bytes sent.
#[tokio::test]
async fn c39_success_drops_body_and_reports_status_and_bytes() {
    let body = Scripted::new([data(b"abcd")]).exact(4);
    let flag = body.drop_flag();
    let r = run_cgi(with_body(body)).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 4\r\n\r\nabcd");
    assert!(flag.is_set());
    assert_eq!(r.outcome.status(), Some(StatusCode::OK));
    assert_eq!(r.outcome.bytes_sent(), 4);

    let r = run_cgi(failing("x")).await;
    assert_eq!(r.outcome.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(r.outcome.bytes_sent(), 59);
}

/// C36: an error inside error handling — an error page that is itself an
/// invalid response — sends nothing and reports a failure.
#[tokio::test]
async fn c36_error_page_that_fails() {
    let handler = Handler::builder()
        .error_responder(|_err| {
            let mut res = Response::new(bytes::Bytes::from_static(b"x"));
            res.headers_mut()
                .insert("content-length", HeaderValue::from_static("not-a-number"));
            res
        })
        .build();
    let r = run(&handler, testing_env(), false, failing("first")).await;
    assert_eq!(r.out, b"");
    assert!(r.outcome.is_failed(), "{:?}", r.outcome);
    assert!(r.errors.contains("first"), "{}", r.errors);
}

/// B10: a response head over `max_response_head_len` is an invalid
/// response: the error page (which fits) goes out instead.
#[tokio::test]
async fn b10_response_head_over_limit_gives_page() {
    let mut limits = gateway_core::Limits::default();
    limits.max_response_head_len(128);
    let handler = Handler::builder().limits(limits).build();
    let app = respond(|| {
        let mut res = Response::new(Body::from("x"));
        res.headers_mut()
            .insert("x-big", HeaderValue::from_str(&"v".repeat(200)).unwrap());
        res
    });
    let r = run(&handler, testing_env(), false, app).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.outcome.is_error_page());
}

/// An app that reads the whole request body and fails with the body's error.
fn body_reader()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone {
    tower::service_fn(|req: Request<Body>| async move {
        use http_body_util::BodyExt;
        let body = req.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>(Response::new(Body::from(body)))
    })
}

/// A request body cut short is the client's fault: the app that fails on it
/// gets a 400 for the client, and nothing lands in the error log as an
/// application error.
#[tokio::test]
async fn body_cut_short_is_a_client_fault_not_an_app_error() {
    let env = env_with(&[("CONTENT_LENGTH", "10")]);
    let r = run_with_input(&Handler::new(), env, false, b"abc", body_reader()).await;
    assert!(
        r.text().starts_with("Status: 400 Bad Request\r\n"),
        "{}",
        r.text()
    );
    assert!(r.errors.is_empty(), "error log: {}", r.errors);
}

/// The same app failing for a reason of its own is still an application
/// error: the client fault rule only applies when the body failed.
#[tokio::test]
async fn an_app_error_with_a_whole_body_is_still_an_app_error() {
    let env = env_with(&[("CONTENT_LENGTH", "3")]);
    let app = tower::service_fn(|req: Request<Body>| async move {
        use http_body_util::BodyExt;
        let _ = req.into_body().collect().await?;
        Err::<Response<Body>, BoxError>(io::Error::other("own failure").into())
    });
    let r = run_with_input(&Handler::new(), env, false, b"abc", app).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.errors.contains("own failure"), "{}", r.errors);
}

/// An application slower than `app_timeout` to produce its head is
/// cancelled (its future dropped) and the client gets 503.
#[tokio::test]
async fn app_timeout_cancels_a_slow_application_with_503() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let app = tower::service_fn(move |_req: Request<Body>| {
        let guard = Dropped(flag.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(guard);
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    });
    let mut limits = gateway_core::Limits::default();
    limits.app_timeout(Some(Duration::from_millis(50)));
    let handler = Handler::builder().limits(limits).build();
    let started = std::time::Instant::now();
    let r = run(&handler, testing_env(), false, app).await;
    assert!(
        r.text().starts_with("Status: 503 Service Unavailable\r\n"),
        "{}",
        r.text()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the application was cancelled"
    );
}

/// More `HTTP_*` fields than `max_headers` is a 431 without calling the
/// application, whatever backend passed them.
#[tokio::test]
async fn too_many_header_fields_is_431() {
    let mut limits = gateway_core::Limits::default();
    limits.max_headers(5);
    let handler = Handler::builder().limits(limits).build();
    let mut env = testing_env();
    for i in 0..6 {
        env.insert(format!("HTTP_X_{i}"), "v");
    }
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = called.clone();
    let app = tower::service_fn(move |_req: Request<Body>| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Body::empty())) }
    });
    let r = run(&handler, env, false, app).await;
    assert!(r.text().starts_with("Status: 431 "), "{}", r.text());
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
}

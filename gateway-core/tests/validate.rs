//! The validator layer (CHECKLIST C42): one test per rule, through the
//! handler (error page + log) where the core can produce the case, directly
//! on the service where it cannot.

use std::convert::Infallible;

use bytes::Bytes;
use gateway_core::validate::{ValidateLayer, Validator, Violation, rule};
use gateway_core::{Body, BoxError, Environ, ErrorStream, Handler, ReasonPhrase, StreamGateway};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use tower::{Layer, ServiceExt};

type B = UnsyncBoxBody<Bytes, BoxError>;

fn full(s: &'static str) -> B {
    Full::new(Bytes::from_static(s.as_bytes()))
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

fn streamed(parts: &[&'static str]) -> B {
    let items: Vec<Result<_, BoxError>> = parts
        .iter()
        .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    StreamBody::new(futures_util::stream::iter(items)).boxed_unsync()
}

/// Runs `make` (called per request) behind the validator through the
/// handler in the CGI form; returns the output and the error stream.
async fn run_with(
    env: Environ,
    make: impl Fn() -> Response<B> + Clone + Send + 'static,
) -> (String, String) {
    let app = tower::service_fn(move |_req: Request<Body>| {
        let make = make.clone();
        async move { Ok::<_, Infallible>(make()) }
    });
    let (errors, captured) = ErrorStream::capture();
    let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), errors, env);
    Handler::new()
        .run(&mut gw, ValidateLayer::new().layer(app))
        .await;
    (
        String::from_utf8_lossy(gw.writer()).into_owned(),
        captured.text(),
    )
}

async fn run(make: impl Fn() -> Response<B> + Clone + Send + 'static) -> (String, String) {
    let mut env = Environ::new();
    env.setup_testing_defaults();
    run_with(env, make).await
}

fn ok_text(body: B) -> Response<B> {
    Response::builder()
        .header("content-type", "text/plain")
        .body(body)
        .unwrap()
}

fn assert_error_page(out: &str, log: &str, rule: &str) {
    assert!(
        out.starts_with("Status: 500 Internal Server Error\r\n"),
        "{out}"
    );
    assert!(
        log.contains(&format!("validator: {rule}: ")),
        "log should name {rule}: {log}"
    );
}

#[tokio::test]
async fn compliant_app_passes_and_length_is_hidden() {
    let (out, log) = run(|| ok_text(full("hello"))).await;
    // C42: the wrapper hides the body's size, so no Content-Length is added
    // (and the body counts as streamed).
    assert_eq!(
        out,
        "Status: 200 OK\r\nContent-Type: text/plain\r\nX-Accel-Buffering: no\r\n\r\nhello"
    );
    assert_eq!(log, "");
}

#[tokio::test]
async fn rule_hop_by_hop() {
    let (out, log) = run(|| {
        let mut r = ok_text(full("x"));
        r.headers_mut()
            .insert("connection", "close".parse().unwrap());
        r
    })
    .await;
    assert_error_page(&out, &log, rule::HOP_BY_HOP);
}

#[tokio::test]
async fn rule_status_header() {
    let (out, log) = run(|| {
        let mut r = ok_text(full("x"));
        r.headers_mut().insert("status", "200 OK".parse().unwrap());
        r
    })
    .await;
    assert_error_page(&out, &log, rule::STATUS_HEADER);
}

#[tokio::test]
async fn rule_header_name() {
    for name in ["x-trailing-", "x-trailing_", "1digit", "x.dot"] {
        let (out, log) = run(move || {
            let mut r = ok_text(full("x"));
            r.headers_mut()
                .insert(http::HeaderName::from_static(name), "v".parse().unwrap());
            r
        })
        .await;
        assert_error_page(&out, &log, rule::HEADER_NAME);
    }
}

#[tokio::test]
async fn rule_header_value_tab() {
    // http::HeaderValue allows HTAB; wsgiref's validator refuses every
    // control character.
    let (out, log) = run(|| {
        let mut r = ok_text(full("x"));
        r.headers_mut().insert("x-a", "a\tb".parse().unwrap());
        r
    })
    .await;
    assert_error_page(&out, &log, rule::HEADER_VALUE);
}

#[tokio::test]
async fn rule_status_reason_phrase() {
    let (out, log) = run(|| {
        let mut r = ok_text(full("x"));
        r.extensions_mut()
            .insert(ReasonPhrase(Bytes::from_static(b"O\x01K")));
        r
    })
    .await;
    // The core refuses this too; the validator names its rule first.
    assert_error_page(&out, &log, rule::STATUS);
}

#[tokio::test]
async fn rule_content_type_required() {
    let (out, log) = run(|| Response::new(full("x"))).await;
    assert_error_page(&out, &log, rule::CONTENT_TYPE);
}

#[tokio::test]
async fn rule_content_type_forbidden_on_204_and_304() {
    for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
        let (out, log) = run(move || {
            let mut r = ok_text(full(""));
            *r.status_mut() = status;
            r
        })
        .await;
        assert_error_page(&out, &log, rule::CONTENT_TYPE);
    }
    // Without it, a 304 passes.
    let (out, log) = run(|| {
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    })
    .await;
    assert_eq!(out, "Status: 304 Not Modified\r\n\r\n");
    assert_eq!(log, "");
}

#[tokio::test]
async fn rule_content_length_short_after_head_aborts() {
    let (out, log) = run(|| {
        let mut r = ok_text(streamed(&["abc"]));
        r.headers_mut()
            .insert("content-length", "10".parse().unwrap());
        r
    })
    .await;
    // The head went out with the first chunk: a body-level violation.
    assert!(out.starts_with("Status: 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nabc"), "{out}");
    assert!(log.contains("validator: content-length: "), "{log}");
}

#[tokio::test]
async fn rule_content_length_long_is_an_error() {
    let (out, log) = run(|| {
        let mut r = ok_text(full("abcdef"));
        r.headers_mut()
            .insert("content-length", "3".parse().unwrap());
        r
    })
    .await;
    // One chunk over the length: nothing sent yet, so the error page.
    assert_error_page(&out, &log, rule::CONTENT_LENGTH);
}

#[tokio::test]
async fn rule_content_length_not_a_number() {
    let (out, log) = run(|| {
        let mut r = ok_text(full("abc"));
        r.headers_mut()
            .insert("content-length", "3x".parse().unwrap());
        r
    })
    .await;
    assert_error_page(&out, &log, rule::CONTENT_LENGTH);
}

#[tokio::test]
async fn rule_no_body_for_head() {
    let mut env = Environ::new();
    env.insert("REQUEST_METHOD", "HEAD");
    env.setup_testing_defaults();
    let (out, log) = run_with(env, || ok_text(full("body"))).await;
    // The core drops a HEAD body without reading it, so the body check
    // never runs; the head is sent as usual.
    assert!(out.starts_with("Status: 200 OK\r\n"), "{out}");
    // Directly on the service, the body is refused.
    let v = Validator::new(tower::service_fn(|_r: Request<Body>| async {
        Ok::<_, Infallible>(ok_text(full("body")))
    }));
    let mut req = Request::new(Body::empty());
    *req.method_mut() = http::Method::HEAD;
    req.extensions_mut().insert(context(testing_env()));
    let res = v.oneshot(req).await.unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Violation>().unwrap().rule(),
        rule::NO_BODY
    );
    let _ = log;
}

#[tokio::test]
async fn rule_no_body_for_204() {
    let v = Validator::new(tower::service_fn(|_r: Request<Body>| async {
        let mut r = Response::new(full("oops"));
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok::<_, Infallible>(r)
    }));
    let mut req = Request::new(Body::empty());
    req.extensions_mut().insert(context(testing_env()));
    let res = v.oneshot(req).await.unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Violation>().unwrap().rule(),
        rule::NO_BODY
    );
}

fn context(env: Environ) -> gateway_core::RequestContext {
    let info = gateway_core::GatewayInfo::new(gateway_core::Protocol::Other("test"));
    gateway_core::RequestContext::new(env, info, gateway_core::ErrorStream::null())
}

fn testing_env() -> Environ {
    let mut env = Environ::new();
    env.setup_testing_defaults();
    env
}

async fn request_rule(req: Request<Body>) -> Result<(), String> {
    let v = Validator::new(tower::service_fn(|_r: Request<Body>| async {
        Ok::<_, Infallible>(ok_text(full("x")))
    }));
    match v.oneshot(req).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.downcast_ref::<Violation>().unwrap().rule().to_owned()),
    }
}

#[tokio::test]
async fn rule_environ_required() {
    let req = Request::new(Body::empty());
    assert_eq!(request_rule(req).await, Err(rule::ENVIRON.to_owned()));
    for missing in ["REQUEST_METHOD", "SERVER_NAME", "SERVER_PORT"] {
        let mut env = testing_env();
        env.remove(missing);
        let mut req = Request::new(Body::empty());
        req.extensions_mut().insert(context(env));
        assert_eq!(
            request_rule(req).await,
            Err(rule::ENVIRON.to_owned()),
            "{missing}"
        );
    }
}

#[tokio::test]
async fn rule_script_name_and_path_info() {
    for (sn, pi, want) in [
        ("/", "", Some(rule::SCRIPT_NAME)),
        ("app", "", Some(rule::SCRIPT_NAME)),
        ("/app", "x", Some(rule::PATH_INFO)),
        ("/app", "/x", None),
        ("", "", None),
    ] {
        let mut env = testing_env();
        env.insert("SCRIPT_NAME", sn);
        env.insert("PATH_INFO", pi);
        let mut req = Request::new(Body::empty());
        req.extensions_mut().insert(context(env));
        assert_eq!(
            request_rule(req).await,
            want.map(str::to_owned).ok_or(()).map_or(Ok(()), Err),
            "{sn:?} {pi:?}"
        );
    }
    // Through the handler: a bad SCRIPT_NAME from the web server gives the
    // error page and a log line naming the rule.
    let mut env = Environ::new();
    env.insert("SCRIPT_NAME", "/");
    env.setup_testing_defaults();
    let (out, log) = run_with(env, || ok_text(full("x"))).await;
    assert_error_page(&out, &log, rule::SCRIPT_NAME);
}

#[tokio::test]
async fn rule_request_headers_no_duplicates() {
    let mut req = Request::new(Body::empty());
    req.extensions_mut().insert(context(testing_env()));
    req.headers_mut()
        .append("content-type", "a/b".parse().unwrap());
    req.headers_mut()
        .append("content-type", "c/d".parse().unwrap());
    assert_eq!(
        request_rule(req).await,
        Err(rule::REQUEST_HEADERS.to_owned())
    );
    // nginx sends both CONTENT_TYPE and HTTP_CONTENT_TYPE: the core builds
    // one header from them, which passes.
    let mut env = Environ::new();
    env.insert("CONTENT_TYPE", "a/b");
    env.insert("HTTP_CONTENT_TYPE", "a/b");
    env.insert("CONTENT_LENGTH", "0");
    env.insert("HTTP_CONTENT_LENGTH", "0");
    env.setup_testing_defaults();
    let (out, log) = run_with(env, || ok_text(full("x"))).await;
    assert!(out.starts_with("Status: 200 OK\r\n"), "{out} {log}");
}

#[tokio::test]
async fn layer_keeps_app_errors() {
    let app = tower::service_fn(|_r: Request<Body>| async {
        Err::<Response<B>, BoxError>("app failed".into())
    });
    let mut req = Request::new(Body::empty());
    req.extensions_mut().insert(context(testing_env()));
    let err = ValidateLayer::new()
        .layer(app)
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "app failed");
}

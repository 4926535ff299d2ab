//! Building the `http::Request` from the environ (CHECKLIST C23, G2, B6),
//! and the mount prefix that stands in for `shift_path_info` (C25).

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use gateway_core::request::build_request;
use gateway_core::{Body, Environ, Handler};
use http::{Method, Request, Response, Version};

fn env_of(pairs: &[(&'static str, &'static [u8])]) -> Environ {
    pairs.iter().map(|(n, v)| (*n, *v)).collect()
}

fn uri_of(pairs: &[(&'static str, &'static [u8])]) -> String {
    build_request(&env_of(pairs), Body::empty())
        .expect("a valid request")
        .uri()
        .to_string()
}

/// Environ entries as raw bytes.
type Pairs<'a> = &'a [(&'static str, &'static [u8])];

const BASE: Pairs<'static> = &[("SERVER_NAME", b"127.0.0.1"), ("SERVER_PORT", b"80")];

fn with_base(extra: &[(&'static str, &'static [u8])]) -> Vec<(&'static str, &'static [u8])> {
    let mut v = BASE.to_vec();
    v.extend_from_slice(extra);
    v
}

/// C23: HTTP_HOST wins over SERVER_NAME/SERVER_PORT.
#[test]
fn c23_http_host_wins() {
    let uri = uri_of(&with_base(&[
        ("HTTP_HOST", b"example.org:8080"),
        ("PATH_INFO", b"/x"),
    ]));
    assert_eq!(uri, "http://example.org:8080/x");
}

/// C23: without HTTP_HOST, SERVER_NAME plus the port unless it is the
/// scheme's default.
#[test]
fn c23_server_name_and_port() {
    let cases: &[(Pairs<'_>, &str)] = &[
        (
            &[("SERVER_NAME", b"h"), ("SERVER_PORT", b"80")],
            "http://h/",
        ),
        (
            &[("SERVER_NAME", b"h"), ("SERVER_PORT", b"8080")],
            "http://h:8080/",
        ),
        (
            &[
                ("SERVER_NAME", b"h"),
                ("SERVER_PORT", b"443"),
                ("HTTPS", b"on"),
            ],
            "https://h/",
        ),
        (
            &[
                ("SERVER_NAME", b"h"),
                ("SERVER_PORT", b"80"),
                ("HTTPS", b"on"),
            ],
            "https://h:80/",
        ),
        (
            &[("SERVER_NAME", b"h"), ("SERVER_PORT", b"443")],
            "http://h:443/",
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(uri_of(pairs), *want, "{pairs:?}");
    }
}

/// C23: SCRIPT_NAME is quoted from raw bytes (Latin-1 `\xe4` → `%E4`).
#[test]
fn c23_script_name_quoted() {
    let uri = uri_of(&with_base(&[
        ("SCRIPT_NAME", b"/sp\xe4m"),
        ("PATH_INFO", b""),
    ]));
    assert_eq!(uri, "http://127.0.0.1/sp%E4m");
}

/// C23: PATH_INFO keeps `/;=,` and quotes the rest; wsgiref's example.
#[test]
fn c23_path_info_safe_characters() {
    let uri = uri_of(&with_base(&[
        ("SCRIPT_NAME", b"/spammity"),
        ("PATH_INFO", b"/spam;cookie=1234,5678"),
    ]));
    assert_eq!(uri, "http://127.0.0.1/spammity/spam;cookie=1234,5678");
    let uri = uri_of(&with_base(&[("PATH_INFO", b"/a b?c%d#e")]));
    assert_eq!(uri, "http://127.0.0.1/a%20b%3Fc%25d%23e");
}

/// C23: QUERY_STRING is passed as it came.
#[test]
fn c23_query_string_raw() {
    let uri = uri_of(&with_base(&[
        ("PATH_INFO", b"/q"),
        ("QUERY_STRING", b"a=1&b=%20c&d=/x?y"),
    ]));
    assert_eq!(uri, "http://127.0.0.1/q?a=1&b=%20c&d=/x?y");
}

/// REQUEST_URI is kept when it decodes to SCRIPT_NAME + PATH_INFO, fully or
/// with `%2F` left encoded (so `%2F` survives).
#[test]
fn c23_request_uri_kept_when_it_agrees() {
    // The server decoded %2F (PATH_INFO has a real slash).
    let uri = uri_of(&with_base(&[
        ("SCRIPT_NAME", b"/app"),
        ("PATH_INFO", b"/a/b c"),
        ("REQUEST_URI", b"/app/a%2Fb%20c?x=1"),
        ("QUERY_STRING", b"x=1"),
    ]));
    assert_eq!(uri, "http://127.0.0.1/app/a%2Fb%20c?x=1");
    // The server left %2F alone (Apache AllowEncodedSlashes NoDecode).
    let uri = uri_of(&with_base(&[
        ("SCRIPT_NAME", b""),
        ("PATH_INFO", b"/a%2Fb"),
        ("REQUEST_URI", b"/a%2Fb"),
    ]));
    assert_eq!(uri, "http://127.0.0.1/a%2Fb");
}

/// REQUEST_URI is ignored when it disagrees (a rewrite happened).
#[test]
fn c23_request_uri_ignored_when_it_disagrees() {
    let uri = uri_of(&with_base(&[
        ("SCRIPT_NAME", b"/index.php"),
        ("PATH_INFO", b"/real"),
        ("REQUEST_URI", b"/pretty/url"),
    ]));
    assert_eq!(uri, "http://127.0.0.1/index.php/real");
}

/// With neither SCRIPT_NAME nor PATH_INFO, the path comes from REQUEST_URI
/// (nginx's stock SCGI params); with nothing at all it is `/`.
#[test]
fn c23_path_from_request_uri_when_sn_and_pi_empty() {
    let uri = uri_of(&with_base(&[
        ("REQUEST_URI", b"/from/uri%2Fx?ignored=1"),
        ("QUERY_STRING", b"q=2"),
    ]));
    assert_eq!(uri, "http://127.0.0.1/from/uri%2Fx?q=2");
    assert_eq!(uri_of(BASE), "http://127.0.0.1/");
}

/// Method and version come from REQUEST_METHOD and SERVER_PROTOCOL.
#[test]
fn g1_method_and_version() {
    let req = build_request(
        &env_of(&with_base(&[
            ("REQUEST_METHOD", b"PROPFIND"),
            ("SERVER_PROTOCOL", b"HTTP/1.1"),
        ])),
        Body::empty(),
    )
    .unwrap();
    assert_eq!(req.method(), Method::from_bytes(b"PROPFIND").unwrap());
    assert_eq!(req.version(), Version::HTTP_11);
    for (proto, v) in [
        (&b"HTTP/2.0"[..], Version::HTTP_2),
        (b"INCLUDED", Version::HTTP_10),
        (b"HTTP/1.0", Version::HTTP_10),
    ] {
        let mut pairs = with_base(&[]);
        pairs.push(("SERVER_PROTOCOL", proto));
        let req = build_request(&env_of(&pairs), Body::empty()).unwrap();
        assert_eq!(req.version(), v);
    }
}

/// G2: HTTP_* become headers; CONTENT_* win over HTTP_CONTENT_*;
/// HTTP_PROXY is dropped (httpoxy).
#[test]
fn g2_headers_content_wins_and_proxy_dropped() {
    let req = build_request(
        &env_of(&with_base(&[
            ("HTTP_X_FORWARDED_FOR", b"10.0.0.1"),
            ("HTTP_CONTENT_TYPE", b"text/evil"),
            ("HTTP_CONTENT_LENGTH", b"999"),
            ("CONTENT_TYPE", b"text/plain"),
            ("CONTENT_LENGTH", b"4"),
            ("HTTP_PROXY", b"http://attacker:3128"),
        ])),
        Body::empty(),
    )
    .unwrap();
    let h = req.headers();
    assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1");
    let ct: Vec<_> = h.get_all("content-type").iter().collect();
    assert_eq!(ct, ["text/plain"]);
    let cl: Vec<_> = h.get_all("content-length").iter().collect();
    assert_eq!(cl, ["4"]);
    assert!(h.get("proxy").is_none());
}

/// B6: build_request reports bad input as a bad-request error.
#[test]
fn b6_build_request_errors() {
    for (name, value) in [
        ("REQUEST_METHOD", &b"GE T"[..]),
        ("HTTP_X_A", b"a\x01b"),
        ("CONTENT_LENGTH", b"12abc"),
        ("CONTENT_TYPE", b"text/\nplain"),
    ] {
        let mut pairs = with_base(&[]);
        pairs.push((name, value));
        let err = build_request(&env_of(&pairs), Body::empty()).unwrap_err();
        assert!(err.is_bad_request(), "{name}: {err:?}");
    }
}

/// B6: through the handler, bad input is a 400 on the normal response path
/// and the app is never called.
#[tokio::test]
async fn b6_bad_input_gives_400() {
    for (name, value) in [
        ("REQUEST_METHOD", &b"GE T"[..]),
        ("HTTP_X_A", b"a\x01b"),
        ("CONTENT_LENGTH", b"abc"),
    ] {
        let called = Arc::new(AtomicBool::new(false));
        let c = called.clone();
        let app = tower::service_fn(move |_req: Request<Body>| {
            c.store(true, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Body::empty())) }
        });
        let mut env = testing_env();
        env.insert(name, value);
        let r = run(&Handler::new(), env, false, app).await;
        assert_eq!(
            r.text(),
            "Status: 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nBad Request\n",
            "{name}"
        );
        assert!(!called.load(Ordering::SeqCst), "{name}");
        assert!(r.outcome.is_complete());
    }
}

/// A name that cannot be a header name stays in the environ only.
#[test]
fn g2_odd_names_skipped() {
    let env = env_of(&with_base(&[("HTTP_X\u{e4}", b"v"), ("HTTP_", b"v")]));
    let req = build_request(&env, Body::empty()).unwrap();
    assert_eq!(req.headers().len(), 0, "{:?}", req.headers());
}

/// Runs a request through a handler mounted at `prefix` and returns the
/// path and query the app routed on, and the environ it saw.
async fn routed(
    prefix: &'static str,
    sn: &'static str,
    pi: &'static str,
    qs: &'static str,
) -> (String, Environ) {
    let seen = Arc::new(Mutex::new((String::new(), Environ::new())));
    let s = seen.clone();
    let app = tower::service_fn(move |req: Request<Body>| {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let env = req
            .extensions()
            .get::<gateway_core::RequestContext>()
            .map(|cx| cx.environ().clone())
            .unwrap_or_default();
        *s.lock().unwrap() = (pq, env);
        async { Ok::<_, Infallible>(Response::new(Body::empty())) }
    });
    let handler = Handler::builder().mount(prefix).build();
    let env = env_with(&[("SCRIPT_NAME", sn), ("PATH_INFO", pi), ("QUERY_STRING", qs)]);
    run(&handler, env, false, app).await;
    seen.lock().unwrap().clone()
}

/// C25 (adapted): we offer `HandlerBuilder::mount` instead of
/// `shift_path_info`. The prefix is stripped at a segment boundary only,
/// whatever the SCRIPT_NAME/PATH_INFO split, the query is kept, and the
/// environ is left alone.
#[tokio::test]
async fn c25_mount_strips_prefix_at_segment_boundary() {
    assert_eq!(routed("/app", "/app", "/users/1", "").await.0, "/users/1");
    assert_eq!(
        routed("/app", "/app/users/1", "", "a=b").await.0,
        "/users/1?a=b"
    );
    assert_eq!(routed("/app/", "", "/app/users", "").await.0, "/users");
    assert_eq!(routed("/app", "/app", "", "").await.0, "/");
    assert_eq!(routed("/app", "/app", "/", "").await.0, "/");
    // Not at a segment boundary: left alone.
    assert_eq!(
        routed("/app", "/application", "/x", "").await.0,
        "/application/x"
    );
    // Outside the prefix: left alone.
    assert_eq!(routed("/app", "", "/other", "").await.0, "/other");
    // The environ is unchanged.
    let (_, env) = routed("/app", "/app", "/users/1", "").await;
    assert_eq!(env.script_name(), b"/app");
    assert_eq!(env.path_info(), b"/users/1");
}

/// A declared body over `max_body_len` is answered 413 without calling the
/// app.
#[tokio::test]
async fn limits_body_over_max_gives_413() {
    let called = Arc::new(AtomicBool::new(false));
    let c = called.clone();
    let app = tower::service_fn(move |_req: Request<Body>| {
        c.store(true, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Body::empty())) }
    });
    let mut limits = gateway_core::Limits::default();
    limits.max_body_len(Some(10));
    let handler = Handler::builder().limits(limits).build();
    let env = env_with(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "11")]);
    let r = run_with_input(&handler, env, false, b"01234567890", app).await;
    assert_eq!(
        r.text(),
        "Status: 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\n\
         Request body too large\n"
    );
    assert!(!called.load(Ordering::SeqCst));
}

//! The application's view of the gateway: the merged environ, the
//! `GatewayInfo` flags (wsgiref's `wsgi.*` keys) and the request's streams,
//! read from the request's extensions (CHECKLIST C1–C3, C22, C41).

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use common::*;
use gateway_core::{Body, Environ, ErrorStream, GatewayInfo, Handler, Protocol, StreamGateway};
use http::{Request, Response};
use http_body_util::BodyExt;

/// What the application saw of one request.
#[derive(Debug, Default, Clone)]
struct Seen {
    environ: Option<Environ>,
    info: Option<GatewayInfo>,
    has_errors: bool,
    body: Vec<u8>,
    uri: String,
}

/// An app that records its view of the request, reads the body and writes
/// a line to the request's error stream.
fn observer(
    seen: Arc<Mutex<Seen>>,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(move |req: Request<Body>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes().to_vec());
            let cx = parts.extensions.get::<gateway_core::RequestContext>();
            let errors = cx.map(|cx| cx.errors().clone());
            if let Some(e) = &errors {
                e.write(b"app: hello errors\n");
            }
            let mut s = seen.lock().unwrap();
            s.environ = cx.map(|cx| cx.environ().clone());
            s.info = cx.map(|cx| cx.info().clone());
            s.has_errors = errors.is_some();
            s.body = body.unwrap_or_default();
            s.uri = parts.uri.to_string();
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    })
}

/// C1: the environ merges the handler's base environ (wsgiref's
/// `os_environ`) under the gateway's variables (base env + testing
/// defaults), and the flags and streams are the gateway's.
///
/// Adaptation: `wsgi.version` and `wsgi.file_wrapper` have no per-request
/// counterpart (`FileBody` is a type, always available); `wsgi.input` is the
/// request body and `wsgi.errors` the `ErrorStream` extension.
#[tokio::test]
async fn c1_environ_merge_and_flags() {
    let os_environ: Environ = [
        ("HOME", "/my/home"),
        ("PATH", "/my/path"),
        ("LANG", "fr_FR.UTF-8"),
        ("SCRIPT_NAME", "test_script_name"),
        ("SERVER_NAME", "test_server_name"),
    ]
    .into_iter()
    .collect();
    let handler = Handler::builder().base_environ(os_environ).build();

    let mut gw_env: Environ = [
        ("X", "Y"),
        ("HOME", "/override/home"),
        ("CONTENT_LENGTH", "5"),
    ]
    .into_iter()
    .collect();
    gw_env.setup_testing_defaults();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (errors, captured) = ErrorStream::capture();
    let mut gw = StreamGateway::cgi(&b"inputtrailing"[..], Vec::new(), errors, gw_env);
    gw.flags(true, true, false);
    let outcome = handler.run(&mut gw, observer(seen.clone())).await;
    assert!(outcome.is_complete());

    let seen = seen.lock().unwrap().clone();
    let env = seen.environ.expect("Environ in the extensions");
    assert_eq!(env.get("HOME"), Some(&b"/override/home"[..]));
    assert_eq!(env.get("X"), Some(&b"Y"[..]));
    assert_eq!(env.get("SCRIPT_NAME"), Some(&b""[..]));
    assert_eq!(env.get("SERVER_NAME"), Some(&b"127.0.0.1"[..]));
    assert_eq!(env.get("LANG"), Some(&b"fr_FR.UTF-8"[..]));
    assert_eq!(env.get("PATH"), Some(&b"/my/path"[..]));
    assert_eq!(env.get("REQUEST_METHOD"), Some(&b"GET"[..]));

    let info = seen.info.expect("GatewayInfo in the extensions");
    assert_eq!(info.url_scheme(), "http");
    assert!(info.multithread());
    assert!(info.multiprocess());
    assert!(!info.run_once());
    assert_eq!(info.protocol(), Protocol::Cgi);

    // wsgi.input: the gateway's reader, CONTENT_LENGTH bytes of it.
    assert_eq!(seen.body, b"input");
    // wsgi.errors: the gateway's error stream.
    assert!(seen.has_errors);
    assert_eq!(captured.text(), "app: hello errors\n");
}

/// C2: with an empty environ and null streams, the app is still called
/// and still gets a scheme, a body and an error stream.
#[tokio::test]
async fn c2_empty_environ_still_has_scheme_and_streams() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut gw = StreamGateway::cgi(
        tokio::io::empty(),
        tokio::io::sink(),
        ErrorStream::null(),
        Environ::new(),
    );
    let outcome = Handler::new().run(&mut gw, observer(seen.clone())).await;
    assert_eq!(outcome.status(), Some(http::StatusCode::OK));
    let seen = seen.lock().unwrap().clone();
    let info = seen.info.expect("the app was called with GatewayInfo");
    assert_eq!(info.url_scheme(), "http");
    assert!(seen.has_errors);
    assert!(seen.environ.is_some());
    assert_eq!(seen.body, b"");
}

/// C3: `HTTPS=on` gives the `https` scheme, in the info and the URI; no
/// `HTTPS` gives `http`.
#[tokio::test]
async fn c3_scheme() {
    for (https, want) in [(Some("on"), "https"), (None, "http")] {
        let mut env = Environ::new();
        if let Some(v) = https {
            env.insert("HTTPS", v);
        }
        env.setup_testing_defaults();
        let seen = Arc::new(Mutex::new(Seen::default()));
        run(&Handler::new(), env, false, observer(seen.clone())).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.info.unwrap().url_scheme(), want);
        assert!(seen.uri.starts_with(&format!("{want}://")), "{}", seen.uri);
    }
}

/// C22: `guess_scheme` — only on/yes/1 mean https. Deviation (our
/// decision, documented on `Environ::https`): case variants such as `ON`
/// count too, and so does `REQUEST_SCHEME=https`; IIS's `off` is http.
#[tokio::test]
async fn c22_guess_scheme_values() {
    for (v, want) in [
        ("on", true),
        ("yes", true),
        ("1", true),
        ("ON", true),
        ("foo", false),
        ("off", false),
        ("0", false),
        ("", false),
    ] {
        let env: Environ = [("HTTPS", v)].into_iter().collect();
        assert_eq!(env.https(), want, "HTTPS={v:?}");
    }
    assert!(!Environ::new().https());
    let env: Environ = [("REQUEST_SCHEME", "https")].into_iter().collect();
    assert!(env.https());
}

/// C41: `StreamGateway::origin` is wsgiref's SimpleHandler: multithread,
/// not multiprocess, not run-once; `cgi` takes the same flags until
/// changed (CGI backends set run_once, multiprocess).
#[tokio::test]
async fn c41_stream_gateway_flags() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    run(&Handler::new(), testing_env(), true, observer(seen.clone())).await;
    let info = seen.lock().unwrap().info.clone().unwrap();
    assert!(info.multithread());
    assert!(!info.multiprocess());
    assert!(!info.run_once());
    assert_eq!(info.protocol(), Protocol::Http);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), testing_env());
    gw.flags(false, true, true);
    Handler::new().run(&mut gw, observer(seen.clone())).await;
    let info = seen.lock().unwrap().info.clone().unwrap();
    assert!(!info.multithread());
    assert!(info.multiprocess());
    assert!(info.run_once());
    assert_eq!(info.protocol(), Protocol::Cgi);
}

/// C41 (bpo-7250): the default handler adds nothing of its own to the
/// environ: the app sees exactly the gateway's variables.
#[tokio::test]
async fn c41_default_base_environ_is_empty() {
    let gw_env: Environ = [("REQUEST_METHOD", "GET"), ("HTTP_HOST", "h")]
        .into_iter()
        .collect();
    let seen = Arc::new(Mutex::new(Seen::default()));
    run(
        &Handler::new(),
        gw_env.clone(),
        false,
        observer(seen.clone()),
    )
    .await;
    assert_eq!(seen.lock().unwrap().environ.as_ref(), Some(&gw_env));
}

#[test]
fn extend_replacing_is_insert_one_after_the_other() {
    let pairs = |list: &[(&'static str, &'static str)]| -> Vec<(bytes::Bytes, bytes::Bytes)> {
        list.iter()
            .map(|&(n, v)| (bytes::Bytes::from(n), bytes::Bytes::from(v)))
            .collect()
    };
    let cases: [&[(&str, &str)]; 4] = [
        &[
            ("A", "1"),
            ("B", "2"),
            ("SERVER_PORT", "80"),
            ("REMOTE_PORT", "9"),
        ],
        &[("A", "1"), ("B", "2"), ("A", "3")],
        &[
            ("SERVER_NAME", "x"),
            ("SERVER_NAME", "y"),
            ("", "e"),
            ("", "f"),
        ],
        &[],
    ];
    for list in cases {
        for base in [Environ::new(), {
            let mut e = Environ::new();
            e.insert("B", "base");
            e
        }] {
            let mut expected = base.clone();
            for (n, v) in pairs(list) {
                expected.insert(n, v);
            }
            let mut got = base.clone();
            got.extend_replacing(pairs(list));
            assert_eq!(got, expected, "{list:?}");
        }
    }
    // Many distinct names (past the signature table) behave the same.
    let many: Vec<_> = (0..300)
        .map(|i| (bytes::Bytes::from(format!("N{i}")), bytes::Bytes::from("v")))
        .collect();
    let mut got = Environ::new();
    got.extend_replacing(many.clone());
    assert_eq!(got.len(), 300);
    assert_eq!(got.get("N299"), Some(&b"v"[..]));
}

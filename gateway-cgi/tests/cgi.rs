//! CGI over explicit streams (wsgiref's BaseCGIHandler): CHECKLIST G1–G7.

use std::convert::Infallible;

use gateway_cgi::{Body, Environ, serve_streams};
use gateway_core::{ErrorStream, GatewayInfo, Handler};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

/// What the app saw, flattened for assertions.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    version: Option<http::Version>,
    headers: Vec<(String, Vec<u8>)>,
    body: Result<Vec<u8>, String>,
    info: Option<GatewayInfo>,
}

/// Runs one request through `serve_streams` with an app that records what
/// it saw and answers `ok`; returns the output bytes, what the app saw, and
/// the error stream.
async fn run(vars: &[(&str, &[u8])], stdin: &'static [u8]) -> (Vec<u8>, Seen, String) {
    let env: Environ = vars
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen {
        method: String::new(),
        uri: String::new(),
        version: None,
        headers: Vec::new(),
        body: Ok(Vec::new()),
        info: None,
    }));
    let seen2 = seen.clone();
    let app = tower::service_fn(move |req: Request<Body>| {
        let seen = seen2.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|e| e.to_string());
            *seen.lock().unwrap() = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                version: Some(parts.version),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect(),
                body,
                info: (parts.extensions.get::<gateway_core::RequestContext>())
                    .map(|cx| cx.info().clone()),
            };
            Ok::<_, Infallible>(Response::new("ok".to_string()))
        }
    });
    let (errors, captured) = ErrorStream::capture();
    let mut out = Vec::new();
    serve_streams(&Handler::new(), stdin, &mut out, errors, env, app).await;
    let seen = seen.lock().unwrap().clone();
    (out, seen, captured.text())
}

/// G1: method (case kept), path = SCRIPT_NAME + PATH_INFO re-encoded, query
/// raw, a missing QUERY_STRING is "".
#[tokio::test]
async fn g1_request_line_from_meta_variables() {
    let (_, seen, _) = run(
        &[
            ("REQUEST_METHOD", b"PATCH"),
            ("SCRIPT_NAME", b"/app"),
            ("PATH_INFO", b"/a b/100%/x?y/\xe4"),
            ("QUERY_STRING", b"q=1&r=%20"),
            ("SERVER_NAME", b"example.org"),
            ("SERVER_PORT", b"8080"),
        ],
        b"",
    )
    .await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.uri,
        "http://example.org:8080/app/a%20b/100%25/x%3Fy/%E4?q=1&r=%20"
    );
    let (_, seen, _) = run(&[("REQUEST_METHOD", b"get"), ("PATH_INFO", b"/")], b"").await;
    assert_eq!(seen.method, "get", "methods are case-sensitive");
    assert_eq!(seen.uri, "/");
}

/// G2: HTTP_* become headers, CONTENT_* too and win over HTTP_CONTENT_*.
#[tokio::test]
async fn g2_headers_from_meta_variables() {
    let (_, seen, _) = run(
        &[
            ("REQUEST_METHOD", b"POST"),
            ("HTTP_X_FORWARDED_FOR", b"10.0.0.1"),
            ("HTTP_CONTENT_TYPE", b"text/wrong"),
            ("CONTENT_TYPE", b"text/right"),
            ("HTTP_CONTENT_LENGTH", b"99"),
            ("CONTENT_LENGTH", b"3"),
            ("HTTP_PROXY", b"http://evil.example/"),
        ],
        b"abc",
    )
    .await;
    let get = |n: &str| -> Vec<Vec<u8>> {
        seen.headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(get("x-forwarded-for"), vec![b"10.0.0.1".to_vec()]);
    assert_eq!(get("content-type"), vec![b"text/right".to_vec()]);
    assert_eq!(get("content-length"), vec![b"3".to_vec()]);
    assert!(
        get("proxy").is_empty(),
        "httpoxy: HTTP_PROXY is never a header"
    );
}

/// G3: at most CONTENT_LENGTH bytes are read; unset means no body; a short
/// stdin is a body error for the app.
#[tokio::test]
async fn g3_body_is_content_length_bytes() {
    let vars: &[(&str, &[u8])] = &[("REQUEST_METHOD", b"POST"), ("CONTENT_LENGTH", b"5")];
    let (_, seen, _) = run(vars, b"hello, and more").await;
    assert_eq!(seen.body, Ok(b"hello".to_vec()));

    let (_, seen, _) = run(&[("REQUEST_METHOD", b"POST")], b"ignored").await;
    assert_eq!(seen.body, Ok(Vec::new()));

    let vars: &[(&str, &[u8])] = &[("REQUEST_METHOD", b"POST"), ("CONTENT_LENGTH", b"50")];
    let (_, seen, _) = run(vars, b"short").await;
    let err = seen.body.unwrap_err();
    assert!(err.contains("CONTENT_LENGTH"), "{err}");
}

/// G4: scheme from HTTPS/REQUEST_SCHEME, authority from HTTP_HOST or
/// SERVER_NAME:SERVER_PORT, version from SERVER_PROTOCOL.
#[tokio::test]
async fn g4_scheme_authority_version() {
    let (_, seen, _) = run(
        &[
            ("HTTPS", b"on"),
            ("SERVER_NAME", b"example.org"),
            ("SERVER_PORT", b"443"),
            ("SERVER_PROTOCOL", b"HTTP/2.0"),
            ("PATH_INFO", b"/x"),
        ],
        b"",
    )
    .await;
    assert_eq!(seen.uri, "https://example.org/x");
    assert_eq!(seen.version, Some(http::Version::HTTP_2));
    assert_eq!(seen.info.as_ref().map(|i| i.url_scheme()), Some("https"));

    let (_, seen, _) = run(
        &[
            ("HTTPS", b"off"),
            ("HTTP_HOST", b"host.example:81"),
            ("SERVER_NAME", b"ignored"),
            ("SERVER_PROTOCOL", b"INCLUDED"),
        ],
        b"",
    )
    .await;
    assert_eq!(seen.uri, "http://host.example:81/");
    assert_eq!(seen.version, Some(http::Version::HTTP_10));
}

/// G5/G9: the response is `Status:` + headers + CRLF + body, always CRLF;
/// run-once, multiprocess, not multithread.
#[tokio::test]
async fn g5_g9_cgi_response_and_flags() {
    let (out, seen, errors) = run(&[("REQUEST_METHOD", b"GET")], b"").await;
    assert_eq!(out, b"Status: 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let info = seen.info.unwrap();
    assert!(info.run_once() && info.multiprocess() && !info.multithread());
    assert_eq!(errors, "");
}

async fn respond(res: Response<String>) -> Vec<u8> {
    let res = std::sync::Arc::new(std::sync::Mutex::new(Some(res)));
    let app = tower::service_fn(move |_req: Request<Body>| {
        let r = res.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(r) }
    });
    let mut env = Environ::new();
    env.insert("REQUEST_METHOD", "GET");
    let mut out = Vec::new();
    serve_streams(
        &Handler::new(),
        &b""[..],
        &mut out,
        ErrorStream::null(),
        env,
        app,
    )
    .await;
    out
}

/// G6: redirects pass through as the app made them: a client redirect with
/// a body keeps its 3xx status, Location and Content-Type; a 201 with
/// Location is not turned into anything else.
#[tokio::test]
async fn g6_redirect_and_location_responses() {
    let res = Response::builder()
        .status(StatusCode::FOUND)
        .header("location", "http://example.org/next")
        .header("content-type", "text/plain")
        .body("moved".to_string())
        .unwrap();
    assert_eq!(
        respond(res).await,
        b"Status: 302 Found\r\nLocation: http://example.org/next\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nmoved"
    );
    let res = Response::builder()
        .status(StatusCode::CREATED)
        .header("location", "/items/1")
        .body(String::new())
        .unwrap();
    assert_eq!(
        respond(res).await,
        b"Status: 201 Created\r\nLocation: /items/1\r\nContent-Length: 0\r\n\r\n"
    );
}

/// G7: Transfer-Encoding, Connection and other hop-by-hop fields never
/// reach the web server (Apache answers 502 to them).
#[tokio::test]
async fn g7_no_hop_by_hop_headers() {
    let res = Response::builder()
        .header("transfer-encoding", "chunked")
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .header("x-kept", "yes")
        .body("body".to_string())
        .unwrap();
    let out = respond(res).await;
    assert_eq!(
        out,
        b"Status: 200 OK\r\nX-Kept: yes\r\nContent-Length: 4\r\n\r\nbody"
    );
}

/// B6: a bad CONTENT_LENGTH is a 400 through the normal response path.
#[tokio::test]
async fn b6_bad_content_length_is_400() {
    let (out, _, _) = run(&[("CONTENT_LENGTH", b"12abc")], b"").await;
    assert!(
        out.starts_with(b"Status: 400 Bad Request\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

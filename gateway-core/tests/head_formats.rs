//! Response heads, byte for byte: the CGI `Status:` form and the origin
//! `HTTP/x.y` form (CHECKLIST C5, C7–C9, C12, C13, C15, C32–C34).

mod common;

use bytes::Bytes;
use common::*;
use gateway_core::{Body, Environ, ErrorStream, Handler, StreamGateway};
use http::{Request, Response, Version};

/// C5: CGI mode, one known chunk `http` → a Content-Length of 4.
#[tokio::test]
async fn c5_cgi_content_length_single_chunk() {
    let r = run_cgi(respond(|| Response::new(Body::from("http")))).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 4\r\n\r\nhttp");
    assert!(r.outcome.is_complete());
    assert_eq!(r.errors, "");
}

/// C7: the Content-Length counts bytes, not characters.
#[tokio::test]
async fn c7_content_length_counts_bytes() {
    let body = Bytes::from_static(b"\xd1\x82\xd0\xb5\xd1\x81\xd1\x82");
    let r = run_cgi(respond(move || Response::new(Body::from(body.clone())))).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nContent-Length: 8\r\n\r\n\xd1\x82\xd0\xb5\xd1\x81\xd1\x82"
    );
}

/// C8: the app's own Content-Length is kept when it returns no body. For a
/// HEAD request that is the whole, complete response.
#[tokio::test]
async fn c8_app_content_length_kept_head_request() {
    let app = respond(|| response(Body::empty(), &[("content-length", "12345")]));
    let env = env_with(&[("REQUEST_METHOD", "HEAD")]);
    let r = run(&Handler::new(), env, false, app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 12345\r\n\r\n");
    assert!(r.outcome.is_complete());
}

/// C8 with a GET, as wsgiref's test runs it: the same bytes go out, but
/// since PEP 3333 forbids a body shorter than declared (C40, our decision),
/// the outcome is an aborted response the backend must signal.
#[tokio::test]
async fn c8_app_content_length_kept_get_is_short() {
    let app = respond(|| response(Body::empty(), &[("content-length", "12345")]));
    let r = run_cgi(app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 12345\r\n\r\n");
    assert!(r.outcome.is_aborted());
}

/// C9: no headers, no body → `Content-Length: 0`, nothing logged.
#[tokio::test]
async fn c9_empty_body_gets_content_length_zero() {
    let r = run_cgi(respond(|| Response::new(Body::empty()))).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.errors, "");
    assert!(r.outcome.is_complete());
}

/// C13: the app's headers keep their order; Content-Length comes last.
#[tokio::test]
async fn c13_bytes_data_and_header_order() {
    let app = respond(|| {
        response(
            Body::from("data"),
            &[("content-type", "text/plain; charset=utf-8")],
        )
    });
    let r = run_cgi(app).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 4\r\n\r\ndata"
    );
}

/// C13 with several headers, including a repeated one.
#[tokio::test]
async fn c13_several_headers_keep_order() {
    let app = respond(|| {
        response(
            Body::from("x"),
            &[
                ("x-first", "1"),
                ("set-cookie", "a=1"),
                ("x-second", "2"),
                ("set-cookie", "b=2"),
            ],
        )
    });
    let r = run_cgi(app).await;
    assert_eq!(
        r.text(),
        "Status: 200 OK\r\nX-First: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
         X-Second: 2\r\nContent-Length: 1\r\n\r\nx"
    );
}

/// The pattern matcher the C12 test relies on.
#[test]
fn c12_date_pattern_matcher() {
    assert!(matches_pattern(
        DATE_LINE,
        b"Date: Mon, 05 Jun 2006 18:49:54 GMT"
    ));
    assert!(!matches_pattern(
        DATE_LINE,
        b"Date: Mon, 45 Jun 2006 18:49:54 GMT"
    ));
    assert!(!matches_pattern(
        DATE_LINE,
        b"Date: Mon, 05 Jun 2006 18:49:54 GM"
    ));
    assert!(!matches_pattern(
        DATE_LINE,
        b"Date: Mon, 05 Jun 2006 18:49:54 GMTX"
    ));
}

/// C12: server_software × http_version × SERVER_PROTOCOL, in both forms.
#[tokio::test]
async fn c12_header_formats_matrix() {
    for software in [Some("FooBar/1.0"), None] {
        for (version, version_text) in [(Version::HTTP_10, "1.0"), (Version::HTTP_11, "1.1")] {
            for proto in ["HTTP/0.9", "HTTP/1.0", "HTTP/1.1"] {
                let mut b = Handler::builder();
                b.http_version(version);
                if let Some(s) = software {
                    b.server_software(s);
                }
                let handler = b.build();
                let case = format!("{software:?} {version_text} {proto}");
                let app = || respond(|| Response::new(Body::empty()));

                // CGI: always the same bytes, no Date, no Server.
                let env = env_with(&[("SERVER_PROTOCOL", proto)]);
                let r = run(&handler, env, false, app()).await;
                assert_eq!(
                    r.out, b"Status: 200 OK\r\nContent-Length: 0\r\n\r\n",
                    "CGI {case}"
                );

                // Origin: nothing for HTTP/0.9, else the full preamble.
                let env = env_with(&[("SERVER_PROTOCOL", proto)]);
                let r = run(&handler, env, true, app()).await;
                if proto == "HTTP/0.9" {
                    assert_eq!(r.out, b"", "origin {case}");
                    continue;
                }
                let prefix = format!("HTTP/{version_text} 200 OK\r\n");
                let server = match software {
                    Some(s) => format!("Server: {s}\r\n"),
                    None => String::new(),
                };
                let suffix = format!("\r\n{server}Content-Length: 0\r\n\r\n");
                let out = &r.out[..];
                assert!(
                    out.starts_with(prefix.as_bytes()),
                    "origin {case}: {}",
                    r.text()
                );
                assert!(
                    out.ends_with(suffix.as_bytes()),
                    "origin {case}: {}",
                    r.text()
                );
                let date = &out[prefix.len()..out.len() - suffix.len()];
                assert!(
                    matches_pattern(DATE_LINE, date),
                    "origin {case}: {:?}",
                    String::from_utf8_lossy(date)
                );
            }
        }
    }
}

/// C33: `SERVER_PROTOCOL` is compared without regard to case; an HTTP/0.9
/// client gets the body alone, with no head at all.
#[tokio::test]
async fn c33_lowercase_http09_is_not_modern() {
    let env = env_with(&[("SERVER_PROTOCOL", "http/0.9")]);
    let app = respond(|| Response::new(Body::from("hi")));
    let r = run(&Handler::new(), env, true, app).await;
    assert_eq!(r.out, b"hi");
    assert!(r.outcome.is_complete());
}

/// C15: a writer that takes 7 bytes per call still gets every byte; no
/// Date is added when the app gave one, no Server when none is set.
#[tokio::test]
async fn c15_partial_writes() {
    let app = respond(|| {
        response(
            Body::from("Hello, world!"),
            &[
                ("content-type", "text/plain"),
                ("date", "Mon, 05 Jun 2006 18:49:54 GMT"),
            ],
        )
    });
    let writer = ShortWriter {
        max: 7,
        ..ShortWriter::default()
    };
    let mut gw = StreamGateway::origin(&b""[..], writer, ErrorStream::null(), testing_env());
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete());
    let w = gw.into_writer();
    let want: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\
Date: Mon, 05 Jun 2006 18:49:54 GMT\r\nContent-Length: 13\r\n\r\nHello, world!";
    assert_eq!(
        String::from_utf8_lossy(&w.out),
        String::from_utf8_lossy(want)
    );
    assert!(w.calls >= want.len().div_ceil(7), "{} calls", w.calls);
}

/// C32: in the origin form, Date and Server come right after the status
/// line, before the app's headers.
#[tokio::test]
async fn c32_origin_preamble_order() {
    let handler = Handler::builder().server_software("FooBar/1.0").build();
    let app = respond(|| response(Body::from("data"), &[("content-type", "text/plain")]));
    let r = run(&handler, testing_env(), true, app).await;
    let text = r.text();
    let (line, rest) = text.split_once("\r\n").unwrap();
    assert_eq!(line, "HTTP/1.0 200 OK");
    let (date, rest) = rest.split_once("\r\n").unwrap();
    assert!(matches_pattern(DATE_LINE, date.as_bytes()), "{date}");
    assert_eq!(
        rest,
        "Server: FooBar/1.0\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\ndata"
    );
}

/// C32: the app's own Server and Date are not duplicated.
#[tokio::test]
async fn c32_app_server_and_date_win() {
    let handler = Handler::builder().server_software("FooBar/1.0").build();
    let app = respond(|| {
        response(
            Body::empty(),
            &[
                ("server", "Mine/2"),
                ("date", "Mon, 05 Jun 2006 18:49:54 GMT"),
            ],
        )
    });
    let r = run(&handler, testing_env(), true, app).await;
    assert_eq!(
        r.text(),
        "HTTP/1.0 200 OK\r\nServer: Mine/2\r\nDate: Mon, 05 Jun 2006 18:49:54 GMT\r\n\
         Content-Length: 0\r\n\r\n"
    );
}

/// C32: the CGI form never carries Date or Server, even with a
/// server_software configured; the status line is always sent, 200 too.
#[tokio::test]
async fn c32_cgi_has_no_date_or_server() {
    let handler = Handler::builder().server_software("FooBar/1.0").build();
    let app = respond(|| Response::new(Body::from("ok")));
    let r = run(&handler, testing_env(), false, app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

/// A non-canonical status code still gets a reason phrase.
#[tokio::test]
async fn c32_unregistered_status_code() {
    let app = respond(|| {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = http::StatusCode::from_u16(599).unwrap();
        res
    });
    let r = run_cgi(app).await;
    assert_eq!(r.out, b"Status: 599 Unknown\r\nContent-Length: 0\r\n\r\n");
}

/// C34: SERVER_SOFTWARE is set from server_software in the origin form only,
/// and never replaces one the environ has.
#[tokio::test]
async fn c34_server_software_in_environ_origin_only() {
    async fn seen(origin: bool, env: Environ) -> Option<Vec<u8>> {
        let handler = Handler::builder().server_software("FooBar/1.0").build();
        let app = tower::service_fn(|req: Request<Body>| async move {
            let env = req
                .extensions()
                .get::<gateway_core::RequestContext>()
                .map(|cx| cx.environ().clone())
                .unwrap_or_default();
            let v = env.get("SERVER_SOFTWARE").map(<[u8]>::to_vec);
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(v.unwrap_or_default())))
        });
        let r = run(&handler, env, origin, app).await;
        let text = r.text();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        (!body.is_empty()).then(|| body.into_bytes())
    }
    assert_eq!(
        seen(true, testing_env()).await.as_deref(),
        Some(&b"FooBar/1.0"[..])
    );
    assert_eq!(seen(false, testing_env()).await, None);
    let env = env_with(&[("SERVER_SOFTWARE", "nginx/1.2")]);
    assert_eq!(seen(true, env).await.as_deref(), Some(&b"nginx/1.2"[..]));
}

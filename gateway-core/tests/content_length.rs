//! Content-Length rules and the lazy head (CHECKLIST C26–C28, C35, C40).

mod common;

use common::*;
use gateway_core::{Body, Handler};
use http::{Response, StatusCode};

fn status_response<B>(
    status: u16,
    body: B,
    headers: &[(&'static str, &'static str)],
) -> Response<B> {
    let mut res = response(body, headers);
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    res
}

/// C26: a body whose size is exactly known gets a Content-Length, even in
/// several chunks ([D] `size_hint().exact()` replaces wsgiref's
/// `len(result) == 1`).
#[tokio::test]
async fn c26_exact_size_hint_gives_content_length() {
    let body = Scripted::new([data(b"ab"), data(b"cd")]).exact(4);
    let r = run_cgi(respond(move || Response::new(body.clone()))).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 4\r\n\r\nabcd");
}

/// C26: a streamed body of unknown size gets no Content-Length (and asks
/// the web server not to buffer it).
#[tokio::test]
async fn c26_streamed_body_has_no_content_length() {
    let body = Scripted::new([data(b"ab"), data(b"cd")]);
    let r = run_cgi(respond(move || Response::new(body.clone()))).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\nabcd"
    );
    assert!(r.outcome.is_complete());
}

/// C27: a streamed body that turns out empty gets `Content-Length: 0`.
#[tokio::test]
async fn c27_empty_streamed_body_gets_zero() {
    let body = Scripted::new([Step::Pending, data(b""), Step::Pending]);
    let r = run_cgi(respond(move || Response::new(body.clone()))).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 0\r\n\r\n");
}

/// C27: 204 and 1xx never carry a Content-Length (nor a body), even when
/// the app set one.
#[tokio::test]
async fn c27_no_content_length_on_204_and_1xx() {
    for status in [204u16, 103] {
        let app = respond(move || {
            status_response(
                status,
                Body::from("ignored"),
                &[("content-length", "7"), ("x-a", "1")],
            )
        });
        let r = run_cgi(app).await;
        let reason = StatusCode::from_u16(status)
            .unwrap()
            .canonical_reason()
            .unwrap();
        assert_eq!(
            r.text(),
            format!("Status: {status} {reason}\r\nX-A: 1\r\n\r\n"),
            "{status}"
        );
        assert!(r.outcome.is_complete());
    }
}

/// C27: 304 keeps the app's Content-Length (the size of the full
/// representation), sends no body, and invents none.
#[tokio::test]
async fn c27_304_keeps_app_length_and_invents_none() {
    let app =
        respond(|| status_response(304, Body::from("ignored"), &[("content-length", "1234")]));
    let r = run_cgi(app).await;
    assert_eq!(
        r.out,
        b"Status: 304 Not Modified\r\nContent-Length: 1234\r\n\r\n"
    );
    assert!(r.outcome.is_complete());

    let app = respond(|| status_response(304, Body::empty(), &[("etag", "\"x\"")]));
    let r = run_cgi(app).await;
    assert_eq!(r.out, b"Status: 304 Not Modified\r\nEtag: \"x\"\r\n\r\n");
}

/// C27 with header order: dropping the Content-Length of a 204 must not
/// reorder the app's other headers (C13).
#[tokio::test]
async fn c27_204_header_order_kept() {
    let app = respond(|| {
        status_response(
            204,
            Body::empty(),
            &[
                ("content-length", "0"),
                ("x-a", "1"),
                ("x-b", "2"),
                ("x-c", "3"),
            ],
        )
    });
    let r = run_cgi(app).await;
    assert_eq!(
        r.text(),
        "Status: 204 No Content\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n"
    );
}

/// C28/PEP 3333: empty chunks do not send the head, so an error after them
/// still becomes the error page.
#[tokio::test]
async fn c28_lazy_head_empty_chunk_then_error_gives_page() {
    let body = Scripted::new([data(b""), Step::Pending, data(b""), Step::Error("late")]);
    let r = run_cgi(respond(move || Response::new(body.clone()))).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.outcome.is_error_page());
}

/// C35: a HEAD request in the origin form gets the head with the body's
/// Content-Length and no body bytes.
#[tokio::test]
async fn c35_head_request_origin_no_body() {
    let env = env_with(&[("REQUEST_METHOD", "HEAD")]);
    let app = respond(|| {
        response(
            Body::from("hello"),
            &[("date", "Mon, 05 Jun 2006 18:49:54 GMT")],
        )
    });
    let r = run(&Handler::new(), env, true, app).await;
    assert_eq!(
        r.text(),
        "HTTP/1.0 200 OK\r\nDate: Mon, 05 Jun 2006 18:49:54 GMT\r\nContent-Length: 5\r\n\r\n"
    );
    assert!(r.outcome.is_complete());
    assert_eq!(r.outcome.bytes_sent(), 0);
}

/// C35: HEAD keeps the app's Content-Length and drops the body in the CGI
/// form too; a streamed HEAD body gives no invented length.
#[tokio::test]
async fn c35_head_request_cgi_keeps_app_length() {
    let env = env_with(&[("REQUEST_METHOD", "HEAD")]);
    let app = respond(|| response(Body::from("hello"), &[("content-length", "100")]));
    let r = run(&Handler::new(), env, false, app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 100\r\n\r\n");
    assert!(r.outcome.is_complete());

    let env = env_with(&[("REQUEST_METHOD", "HEAD")]);
    let body = Scripted::new([data(b"streamed")]);
    let r = run(
        &Handler::new(),
        env,
        false,
        respond(move || Response::new(body.clone())),
    )
    .await;
    assert_eq!(r.out, b"Status: 200 OK\r\n\r\n");
}

/// C40: a body longer than its declared Content-Length is truncated, the
/// body is not read further, and it is logged.
#[tokio::test]
async fn c40_longer_body_truncated() {
    let body = Scripted::new([data(b"0123456789"), data(b"more")]);
    let flag = body.drop_flag();
    let app = respond(move || response(body.clone(), &[("content-length", "5")]));
    let r = run_cgi(app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 5\r\n\r\n01234");
    assert_eq!(r.outcome.bytes_sent(), 5);
    assert!(r.outcome.is_complete());
    assert!(
        r.errors.contains("longer than its Content-Length"),
        "{}",
        r.errors
    );
    assert!(flag.is_set());
}

/// C40: exactly the declared length, split over chunks, is complete.
#[tokio::test]
async fn c40_exact_declared_length_complete() {
    let body = Scripted::new([data(b"012"), Step::Pending, data(b"34")]);
    let app = respond(move || response(body.clone(), &[("content-length", "5")]));
    let r = run_cgi(app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 5\r\n\r\n01234");
    assert!(r.outcome.is_complete());
    assert_eq!(r.errors, "");
}

/// C40: a body shorter than declared is an aborted response, logged.
#[tokio::test]
async fn c40_shorter_body_aborted() {
    let body = Scripted::new([data(b"012")]);
    let app = respond(move || response(body.clone(), &[("content-length", "5")]));
    let r = run_cgi(app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 5\r\n\r\n012");
    assert!(r.outcome.is_aborted());
    assert_eq!(r.outcome.bytes_sent(), 3);
    assert!(
        r.errors.contains("shorter than its Content-Length"),
        "{}",
        r.errors
    );
}

/// A backend that takes the pipeline's Content-Length apart from the
/// headers (as `StreamGateway` does) writes the same bytes as one that
/// gets it inserted into the headers (the recorder), whatever the body.
#[tokio::test]
async fn a_length_taken_apart_writes_the_same_head() {
    type Make = fn() -> Response<Body>;
    let cases: [(&str, Make); 6] = [
        ("whole body", || {
            response(Body::from("hello"), &[("content-type", "text/plain")])
        }),
        ("empty body", || Response::new(Body::empty())),
        ("app's own length", || {
            response(Body::from("hello"), &[("content-length", "5")])
        }),
        ("no content", || {
            status_response(204, Body::empty(), &[("x-a", "1")])
        }),
        ("not modified", || status_response(304, Body::empty(), &[])),
        ("redirect", || {
            status_response(302, Body::from("moved"), &[("location", "/b")])
        }),
    ];
    for method in ["GET", "HEAD"] {
        for (what, make) in cases {
            let env = env_with(&[("REQUEST_METHOD", method)]);
            let apart = run(&Handler::new(), env.clone(), false, respond(make)).await;
            let mut gw = Recorder::new(env);
            let outcome = Handler::new().run(&mut gw, respond(make)).await;
            assert_eq!(
                String::from_utf8_lossy(&apart.out),
                String::from_utf8_lossy(&gw.output()),
                "{method} {what}"
            );
            assert_eq!(apart.outcome.bytes_sent(), outcome.bytes_sent());
        }
    }
    // Streamed bodies: one of known size, one that ends empty.
    let exact = Scripted::new([data(b"ab"), data(b"cd")]).exact(4);
    let empty = Scripted::new([Step::Pending, data(b""), Step::Pending]);
    for body in [exact, empty] {
        let b = body.clone();
        let apart = run_cgi(respond(move || Response::new(b.clone()))).await;
        let mut gw = Recorder::new(testing_env());
        Handler::new()
            .run(&mut gw, respond(move || Response::new(body.clone())))
            .await;
        assert_eq!(apart.out, gw.output());
    }
}

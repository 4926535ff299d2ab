//! The request body's length, one rule for every backend: a declared
//! length is read exactly, an unknown one (`CONTENT_LENGTH: -1`, or a
//! transfer coding without a length) is read to its end and bounded by
//! `max_body_len`, a malformed one is a 400.

mod common;

use common::*;
use gateway_core::{Body, BoxError, Handler, Limits};
use http::{Request, Response};
use http_body_util::BodyExt;

/// An app that answers with the request body it read, and its length as the
/// application saw it in the headers.
fn echo() -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone
{
    tower::service_fn(|req: Request<Body>| async move {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let body = req.into_body().collect().await?.to_bytes();
        let mut res = Response::new(Body::from(body));
        res.headers_mut().insert(
            "x-declared",
            declared.unwrap_or_else(|| "none".into()).parse().unwrap(),
        );
        Ok::<_, BoxError>(res)
    })
}

/// What Caddy and Go's FastCGI client send for a chunked upload.
#[tokio::test]
async fn content_length_minus_one_reads_the_body_to_its_end() {
    let env = env_with(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "-1")]);
    let r = run_with_input(&Handler::new(), env, false, b"streamed upload", echo()).await;
    let text = r.text();
    assert!(text.starts_with("Status: 200 OK\r\n"), "{text}");
    assert!(text.contains("X-Declared: none\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nstreamed upload"), "{text}");
}

/// What Apache's mod_cgid passes for a chunked upload: no CONTENT_LENGTH,
/// `HTTP_TRANSFER_ENCODING: chunked`, the body on stdin to end of file.
#[tokio::test]
async fn a_transfer_coding_without_a_length_reads_the_body_to_its_end() {
    let env = env_with(&[
        ("REQUEST_METHOD", "POST"),
        ("HTTP_TRANSFER_ENCODING", "chunked"),
    ]);
    let r = run_with_input(&Handler::new(), env, false, b"chunked upload", echo()).await;
    assert!(r.text().ends_with("\r\n\r\nchunked upload"), "{}", r.text());
}

/// Without a length and without a transfer coding there is no body (RFC
/// 3875): nothing is read from the input.
#[tokio::test]
async fn no_length_and_no_coding_is_no_body() {
    let env = env_with(&[("REQUEST_METHOD", "POST")]);
    let r = run_with_input(&Handler::new(), env, false, b"not a body", echo()).await;
    assert!(r.text().ends_with("\r\n\r\n"), "{}", r.text());
}

/// An unknown length is still bounded by `max_body_len`: past it, 413.
#[tokio::test]
async fn an_unknown_length_past_max_body_len_is_413() {
    let mut limits = Limits::default();
    limits.max_body_len(Some(5));
    let handler = Handler::builder().limits(limits).build();
    let env = env_with(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "-1")]);
    let r = run_with_input(&handler, env, false, b"longer than five", echo()).await;
    assert!(r.text().starts_with("Status: 413 "), "{}", r.text());
    assert!(r.errors.is_empty(), "{}", r.errors);
    // Within the limit it passes.
    let env = env_with(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "-1")]);
    let r = run_with_input(&handler, env, false, b"five!", echo()).await;
    assert!(r.text().ends_with("\r\n\r\nfive!"), "{}", r.text());
}

/// A malformed length stays a 400 without calling the application.
#[tokio::test]
async fn malformed_lengths_are_400() {
    for bad in ["abc", "+5", " 5", "-2"] {
        let env = env_with(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", bad)]);
        let r = run_with_input(&Handler::new(), env, false, b"12345", echo()).await;
        assert!(r.text().starts_with("Status: 400 "), "{bad}: {}", r.text());
    }
}

/// A backend that cannot find the end of a body of unknown length hands
/// out a body failing with `Error::length_required`: an application that
/// passes the error on answers 411, and nothing is logged as its error.
#[tokio::test]
async fn a_body_without_an_end_is_411() {
    let (errors, captured) = gateway_core::ErrorStream::capture();
    let mut gw = Recorder::new(env_with(&[
        ("REQUEST_METHOD", "POST"),
        ("HTTP_TRANSFER_ENCODING", "chunked"),
    ]));
    gw.errors = errors;
    gw.body = Some(Body::failing(gateway_core::Error::length_required()));
    let outcome = Handler::new().run(&mut gw, echo()).await;
    let out = String::from_utf8(gw.output()).unwrap();
    assert!(out.starts_with("Status: 411 Length Required\r\n"), "{out}");
    assert_eq!(outcome.status(), Some(http::StatusCode::LENGTH_REQUIRED));
    assert!(captured.text().is_empty(), "{}", captured.text());
}

//! `X-Accel-Buffering: no` on streamed responses: which responses get it,
//! that the application's own value wins, and the setting that turns it
//! off.

mod common;

use common::*;
use gateway_core::{Body, Handler, X_ACCEL_BUFFERING, wants_unbuffered};
use http::{HeaderMap, Response, StatusCode};

/// A body of unknown size that waits between its chunks.
fn trickle() -> Scripted {
    Scripted::new([data(b"one"), Step::Pending, data(b"two")])
}

fn hint_of(out: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    head.lines()
        .find_map(|l| l.strip_prefix("X-Accel-Buffering: "))
        .map(str::to_owned)
}

#[tokio::test]
async fn streamed_body_asks_for_no_buffering_in_both_head_forms() {
    for origin in [false, true] {
        let body = trickle();
        let r = run(
            &Handler::new(),
            testing_env(),
            origin,
            respond(move || response(body.clone(), &[("content-type", "text/plain")])),
        )
        .await;
        assert!(r.outcome.is_complete());
        assert_eq!(hint_of(&r.out).as_deref(), Some("no"), "{}", r.text());
        assert!(r.text().ends_with("\r\n\r\nonetwo"), "{}", r.text());
    }
    let body = trickle();
    let r = run_cgi(respond(move || Response::new(body.clone()))).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\nonetwo"
    );
}

#[tokio::test]
async fn known_sizes_are_left_alone() {
    // Declared by the application.
    let body = trickle();
    let r = run_cgi(respond(move || {
        response(body.clone(), &[("content-length", "6")])
    }))
    .await;
    assert_eq!(hint_of(&r.out), None, "{}", r.text());
    // Known from the body's size.
    let r = run_cgi(respond(|| Response::new(Body::from("hello")))).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    // Empty: the pipeline says Content-Length: 0.
    let body = Scripted::new([Step::Pending, data(b"")]);
    let r = run_cgi(respond(move || Response::new(body.clone()))).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[tokio::test]
async fn responses_without_a_body_are_left_alone() {
    for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
        let body = trickle();
        let r = run_cgi(respond(move || {
            let mut res = Response::new(body.clone());
            *res.status_mut() = status;
            res
        }))
        .await;
        assert_eq!(hint_of(&r.out), None, "{status}: {}", r.text());
    }
    // HEAD: no body goes out.
    let body = trickle();
    let r = run(
        &Handler::new(),
        env_with(&[("REQUEST_METHOD", "HEAD")]),
        false,
        respond(move || Response::new(body.clone())),
    )
    .await;
    assert_eq!(r.out, b"Status: 200 OK\r\n\r\n");
}

#[tokio::test]
async fn the_applications_value_is_kept() {
    for value in ["yes", "no", "NO"] {
        let body = trickle();
        let r = run_cgi(respond(move || {
            response(body.clone(), &[("x-accel-buffering", value)])
        }))
        .await;
        let text = r.text();
        assert_eq!(text.matches("X-Accel-Buffering").count(), 1, "{text}");
        assert_eq!(hint_of(&r.out).as_deref(), Some(value), "{text}");
    }
}

#[tokio::test]
async fn event_streams_get_it_even_with_a_length() {
    let r = run_cgi(respond(|| {
        response(
            Body::from("data: 1\n\n"),
            &[("content-type", "Text/Event-Stream; charset=utf-8")],
        )
    }))
    .await;
    assert_eq!(hint_of(&r.out).as_deref(), Some("no"), "{}", r.text());
    assert!(r.text().contains("Content-Length: 9\r\n"), "{}", r.text());
}

#[tokio::test]
async fn the_setting_turns_it_off() {
    let handler = Handler::builder().accel_buffering_hint(false).build();
    let body = trickle();
    let r = run(
        &handler,
        testing_env(),
        false,
        respond(move || Response::new(body.clone())),
    )
    .await;
    assert_eq!(r.out, b"Status: 200 OK\r\n\r\nonetwo");
    let r = run(
        &handler,
        testing_env(),
        false,
        respond(|| response(Body::from("x"), &[("content-type", "text/event-stream")])),
    )
    .await;
    assert_eq!(hint_of(&r.out), None, "{}", r.text());
    // Kept by to_builder.
    let again = handler.to_builder().build();
    assert!(format!("{again:?}").contains("accel_buffering_hint: false"));
}

#[test]
fn the_rule() {
    let h = |pairs: &[(&'static str, &'static str)]| header_map(pairs);
    assert!(wants_unbuffered(&HeaderMap::new(), true));
    assert!(!wants_unbuffered(&HeaderMap::new(), false));
    assert!(!wants_unbuffered(&h(&[("content-length", "3")]), true));
    assert!(wants_unbuffered(
        &h(&[("content-type", "text/event-stream")]),
        false
    ));
    assert!(wants_unbuffered(
        &h(&[("content-type", " text/event-stream ;x=y")]),
        false
    ));
    assert!(!wants_unbuffered(
        &h(&[("content-type", "text/event-streams")]),
        false
    ));
    assert!(!wants_unbuffered(
        &h(&[("content-type", "text/plain"), ("content-length", "1")]),
        true
    ));
    assert!(!wants_unbuffered(&h(&[(X_ACCEL_BUFFERING, "yes")]), true));
    assert!(!wants_unbuffered(
        &h(&[
            ("content-type", "text/event-stream"),
            ("x-accel-buffering", "yes")
        ]),
        true
    ));
}

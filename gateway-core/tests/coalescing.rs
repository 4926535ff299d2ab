//! Write coalescing: a small response is one write; a body that would block
//! makes the gateway write and flush what it has (DESIGN §3, C28, C31).

mod common;

use common::*;
use gateway_core::{Body, Handler};
use http::Response;

/// A small response — head and body — is one write, then one flush.
#[tokio::test]
async fn small_response_is_one_write() {
    let mut gw = Recorder::new(testing_env());
    let app = respond(|| response(Body::from("hello"), &[("content-type", "text/plain")]));
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete());
    assert_eq!(
        gw.events,
        vec![
            Event::Write(
                b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
                    .to_vec()
            ),
            Event::Flush
        ]
    );
}

/// Chunks that are all ready at once coalesce into one write. (A body of
/// unknown size is streamed: its head asks the web server not to buffer.)
#[tokio::test]
async fn ready_chunks_coalesce() {
    let body = Scripted::new([data(b"a"), data(b"b"), data(b""), data(b"c")]);
    let mut gw = Recorder::new(testing_env());
    let outcome = Handler::new()
        .run(&mut gw, respond(move || Response::new(body.clone())))
        .await;
    assert!(outcome.is_complete());
    assert_eq!(
        gw.events,
        vec![
            Event::Write(b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\nabc".to_vec()),
            Event::Flush
        ]
    );
}

/// When the second chunk is not ready yet, the head and first chunk are
/// written and flushed before waiting for it.
#[tokio::test]
async fn pending_chunk_flushes_what_came_before() {
    let body = Scripted::new([data(b"one"), Step::Pending, data(b"two")]);
    let mut gw = Recorder::new(testing_env());
    let outcome = Handler::new()
        .run(&mut gw, respond(move || Response::new(body.clone())))
        .await;
    assert!(outcome.is_complete());
    assert_eq!(
        gw.events,
        vec![
            Event::Write(b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\none".to_vec()),
            Event::Flush,
            Event::Write(b"two".to_vec()),
            Event::Flush,
        ]
    );
}

/// C28: a body that waits before producing anything writes nothing yet (the
/// head is held), so the first write still carries head and data together.
#[tokio::test]
async fn pending_before_first_chunk_holds_the_head() {
    let body = Scripted::new([Step::Pending, data(b""), Step::Pending, data(b"late")]);
    let mut gw = Recorder::new(testing_env());
    let outcome = Handler::new()
        .run(&mut gw, respond(move || Response::new(body.clone())))
        .await;
    assert!(outcome.is_complete());
    assert_eq!(
        gw.writes(),
        vec![b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\nlate".to_vec()]
    );
}

/// A large chunk is written as it is, after the head, not copied into
/// smaller writes; the total is exact.
#[tokio::test]
async fn large_chunk_written_whole() {
    let big: &'static [u8] = Box::leak(vec![b'z'; 200 * 1024].into_boxed_slice());
    let body = Scripted::new([data(big)]).exact(big.len() as u64);
    let mut gw = Recorder::new(testing_env());
    let outcome = Handler::new()
        .run(&mut gw, respond(move || Response::new(body.clone())))
        .await;
    assert!(outcome.is_complete());
    let writes = gw.writes();
    assert_eq!(
        writes.last().map(Vec::len),
        Some(big.len()),
        "{} writes",
        writes.len()
    );
    let mut want = format!("Status: 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
    want.extend_from_slice(big);
    assert_eq!(gw.output(), want);
}

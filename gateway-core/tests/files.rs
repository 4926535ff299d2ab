//! File bodies through the handler, and the backend's sendfile hook
//! (CHECKLIST C24, C38).

mod common;

use common::*;
use gateway_core::{FileBody, Handler};

/// C24 at the handler level: a `FileBody` response gets its Content-Length
/// and its exact bytes through `StreamGateway` (whose sendfile hook
/// declines, so the body is streamed). Block sizes are unit-tested in
/// src/file.rs.
#[tokio::test]
async fn c24_file_body_through_stream_gateway() {
    let contents = b"xyz".repeat(50);
    let file = TempFile::new("c24", &contents);
    let path = file.path.clone();
    let app = respond(move || {
        let mut body = FileBody::open(&path).expect("open");
        body.block_size(120);
        body.into_response()
    });
    let r = run_cgi(app).await;
    let mut want = b"Status: 200 OK\r\nContent-Length: 150\r\n\r\n".to_vec();
    want.extend_from_slice(&contents);
    assert_eq!(r.out, want);
    assert!(r.outcome.is_complete());
    assert_eq!(r.outcome.bytes_sent(), 150);
}

/// A range of a file: only those bytes, with their length.
#[tokio::test]
async fn c24_file_range() {
    let file = TempFile::new("range", b"0123456789");
    let path = file.path.clone();
    let app = respond(move || {
        let f = std::fs::File::open(&path).expect("open");
        FileBody::from_file(f, 3, 4).into_response()
    });
    let r = run_cgi(app).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nContent-Length: 4\r\n\r\n3456");
}

/// C38: a sendfile hook that accepts sees the region after the head was
/// written, and the body is not streamed.
#[tokio::test]
async fn c38_sendfile_accepts() {
    let file = TempFile::new("c38a", b"0123456789");
    let path = file.path.clone();
    let app = respond(move || {
        let f = std::fs::File::open(&path).expect("open");
        FileBody::from_file(f, 2, 5).into_response()
    });
    let mut gw = Recorder::<0>::with_sendfile_min(testing_env());
    gw.sendfile = Some(true);
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete(), "{outcome:?}");
    assert_eq!(outcome.bytes_sent(), 5);
    let head = b"Status: 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec();
    assert_eq!(
        gw.events,
        vec![
            Event::Write(head),
            Event::Sendfile(2, 5, b"23456".to_vec()),
            Event::Flush
        ]
    );
}

/// C38: a sendfile hook that declines is offered the region, and the bytes
/// are then streamed as usual.
#[tokio::test]
async fn c38_sendfile_declines_then_streams() {
    let file = TempFile::new("c38b", b"0123456789");
    let path = file.path.clone();
    let app = respond(move || {
        let f = std::fs::File::open(&path).expect("open");
        FileBody::from_file(f, 2, 5).into_response()
    });
    let mut gw = Recorder::<0>::with_sendfile_min(testing_env());
    gw.sendfile = Some(false);
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete(), "{outcome:?}");
    assert!(gw.events.contains(&Event::Sendfile(2, 5, Vec::new())));
    assert_eq!(
        gw.output(),
        b"Status: 200 OK\r\nContent-Length: 5\r\n\r\n23456"
    );
}

/// C38: a file body smaller than the backend's `SENDFILE_MIN` is not
/// offered to its hook: it is streamed, in one write with the head.
#[tokio::test]
async fn c38_file_below_sendfile_min_is_streamed() {
    let file = TempFile::new("belowmin", b"0123456789");
    let path = file.path.clone();
    let app = respond(move || FileBody::open(&path).expect("open").into_response());
    let mut gw = Recorder::<11>::with_sendfile_min(testing_env());
    gw.sendfile = Some(true);
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete(), "{outcome:?}");
    assert_eq!(
        gw.writes(),
        vec![b"Status: 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec()]
    );
    assert!(
        !gw.events.iter().any(|e| matches!(e, Event::Sendfile(..))),
        "{:?}",
        gw.events
    );
    // One byte more and the hook takes it.
    let file = TempFile::new("atmin", b"0123456789a");
    let path = file.path.clone();
    let app = respond(move || FileBody::open(&path).expect("open").into_response());
    let mut gw = Recorder::<11>::with_sendfile_min(testing_env());
    gw.sendfile = Some(true);
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete(), "{outcome:?}");
    assert!(
        gw.events
            .contains(&Event::Sendfile(0, 11, b"0123456789a".to_vec())),
        "{:?}",
        gw.events
    );
}

/// C28: a FileBody whose file is shorter than its region fails on its
/// first read; nothing has been sent yet, so that is the error page.
#[tokio::test]
async fn c28_short_file_gives_error_page() {
    let file = TempFile::new("short", b"0123");
    let path = file.path.clone();
    let app = respond(move || {
        let f = std::fs::File::open(&path).expect("open");
        FileBody::from_file(f, 0, 10).into_response()
    });
    let r = run_cgi(app).await;
    assert_eq!(r.out, ERROR_PAGE);
}

/// C28/coalescing: through a gateway whose sendfile hook declines (the
/// default), a small file response is one write, like any other body.
#[tokio::test]
async fn c38_declined_sendfile_small_file_is_one_write() {
    let file = TempFile::new("onewrite", b"0123456789");
    let path = file.path.clone();
    let app = respond(move || FileBody::open(&path).expect("open").into_response());
    let mut gw = Recorder::new(testing_env());
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete(), "{outcome:?}");
    assert_eq!(
        gw.writes(),
        vec![b"Status: 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec()]
    );
}

/// C17/C38: a sendfile hook that fails reading the file (a short file) is a
/// server fault: logged, and not mistaken for a client disconnect.
#[tokio::test]
async fn c38_sendfile_read_error_is_not_a_disconnect() {
    let file = TempFile::new("sfshort", b"0123");
    let path = file.path.clone();
    let app = respond(move || {
        let f = std::fs::File::open(&path).expect("open");
        FileBody::from_file(f, 0, 10).into_response()
    });
    let (errors, captured) = gateway_core::ErrorStream::capture();
    let mut gw = Recorder::<0>::with_sendfile_min(testing_env());
    gw.errors = errors;
    gw.sendfile = Some(true);
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(!outcome.is_disconnected(), "{outcome:?}");
    assert!(!outcome.is_complete(), "{outcome:?}");
    assert!(
        captured.text().contains("shorter than its region"),
        "{}",
        captured.text()
    );
}

//! Web servers that stall, trickle or give up: every wait is bounded, and a
//! body the web server cuts short or stops sending is the client's fault,
//! answered and logged as such. Each test runs on both drivers (one request
//! at a time inside the connection's task, and multiplexed).

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use gateway_core::{Body, BoxError, Limits};
use gateway_fastcgi::proto::{self, RecordType};
use gateway_fastcgi::{Connections, Dispatch};
use http::{Request, Response};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tower::util::BoxCloneSyncService;

type App = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// Reads the whole body and fails with its error, as most applications do.
fn reader() -> App {
    BoxCloneSyncService::new(tower::service_fn(|req: Request<Body>| async move {
        let body = read_body(req.into_body()).await?;
        Ok::<_, BoxError>(ok(format!("read {}", body.len())))
    }))
}

/// What the detached reader tells the test.
#[derive(Debug)]
enum Read {
    /// The first bytes arrived (the application runs).
    Started,
    /// The body ended: its length, or its error.
    Ended(Result<usize, BoxError>),
}

/// Hands the body to a task of its own that reports how reading it goes,
/// then waits forever (so only the body tells what happened).
fn detached_reader(report: mpsc::UnboundedSender<Read>) -> App {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<Body>| {
        let report = report.clone();
        async move {
            tokio::spawn(async move {
                use http_body_util::BodyExt;
                let mut body = req.into_body();
                let mut len = 0;
                let ended = loop {
                    match body.frame().await {
                        None => break Ok(len),
                        Some(Err(e)) => break Err(e),
                        Some(Ok(frame)) => {
                            if len == 0 {
                                let _ = report.send(Read::Started);
                            }
                            len += frame.data_ref().map_or(0, |d| d.len());
                        }
                    }
                };
                let _ = report.send(Read::Ended(ended));
            });
            std::future::pending::<()>().await;
            Ok::<_, BoxError>(ok(""))
        }
    }))
}

fn server(dispatch: Dispatch, app: App, multiplex: bool, limits: Limits) -> Connections<App, Body> {
    let mut server = new_server(dispatch);
    server.multiplex(multiplex).limits(limits);
    server.connections(app)
}

/// POST parameters declaring `length` (empty: a body without a length).
fn post(length: &str) -> Vec<(&'static str, String)> {
    let mut p = get("/upload");
    p[0].1 = "POST".into();
    p[8].1 = length.into();
    p
}

per_dispatch! {
/// A web server that sends part of a huge body, stops in the middle of a
/// record and says nothing more: the application's read fails after
/// `body_read_timeout` with a timeout, the handler answers 408 (logged as
/// the client's fault, not on the error stream), the request ends and the
/// connection closes although FCGI_KEEP_CONN was set.
async fn stalled_body_gets_408_and_the_connection_closes(dispatch) {
    let timeout = Duration::from_millis(300);
    for multiplex in [false, true] {
        let mut limits = Limits::default();
        limits.body_read_timeout(timeout);
        let mut c = connect(&server(dispatch, reader(), multiplex, limits));
        let began = Instant::now();
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&post("10000000000")))
            .await;
        c.stream(RecordType::Stdin, 1, &[b'x'; 100], false).await;
        // Half of a 1000-byte record.
        let mut w = BytesMut::new();
        proto::encode_stream(&mut w, RecordType::Stdin, 1, &[b'y'; 1000]);
        c.send(&w[..500]).await;

        let r = c.response(1).await;
        assert!(
            r.text().starts_with("Status: 408"),
            "multiplex {multiplex}: {}",
            r.text()
        );
        assert_eq!(r.app_status, 0, "multiplex {multiplex}");
        assert!(
            r.stderr.is_empty(),
            "multiplex {multiplex}: logged as an application error: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(
            c.closed().await,
            "multiplex {multiplex}: connection left open"
        );
        let took = began.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(3),
            "multiplex {multiplex}: took {took:?}"
        );
    }
}
}

per_dispatch! {
/// FCGI_STDIN ended short of CONTENT_LENGTH: the application that passes
/// its body error on gets a 400 from the handler, and nothing reaches the
/// error stream (it is the client's fault, not an application error).
async fn body_ended_short_is_a_client_fault(dispatch) {
    for multiplex in [false, true] {
        let mut c = connect(&server(dispatch, reader(), multiplex, Limits::default()));
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&post("10"))).await;
        c.stream(RecordType::Stdin, 1, b"abc", true).await;
        let r = c.response(1).await;
        assert!(
            r.text().starts_with("Status: 400"),
            "multiplex {multiplex}: {}",
            r.text()
        );
        assert!(
            r.stderr.is_empty(),
            "multiplex {multiplex}: logged as an application error: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert_eq!(r.app_status, 0);
        // The connection goes on serving.
        c.begin(1, RESPONDER, 0, &pairs(&post("2"))).await;
        c.stream(RecordType::Stdin, 1, b"ok", true).await;
        assert_eq!(
            c.response(1).await.body(),
            "read 2",
            "multiplex {multiplex}"
        );
    }
}
}

per_dispatch! {
/// A web server that closes the connection, or aborts the request, in the
/// middle of FCGI_STDIN: the application is cancelled, and a body that
/// outlives it fails as cut short (`incomplete_body`), with or without a
/// declared length; never a bare I/O error, and never a body that looks
/// complete.
async fn input_cut_off_is_an_incomplete_body(dispatch) {
    for multiplex in [false, true] {
        for length in ["1000", ""] {
            for abort in [false, true] {
                let case = format!("multiplex {multiplex}, length {length:?}, abort {abort}");
                let (tx, mut rx) = mpsc::unbounded_channel();
                let mut c = connect(&server(dispatch, detached_reader(tx), multiplex, Limits::default()));
                c.begin(1, RESPONDER, 0, &pairs(&post(length))).await;
                c.stream(RecordType::Stdin, 1, &[b'x'; 100], false).await;
                assert!(
                    matches!(next(&mut rx, &case).await, Read::Started),
                    "{case}"
                );
                if abort {
                    let mut w = BytesMut::new();
                    proto::encode_abort_request(&mut w, 1);
                    c.send(&w).await;
                    let r = c.response(1).await;
                    assert_eq!(r.app_status, 1, "{case}");
                } else {
                    drop(c);
                }
                let err = match next(&mut rx, &case).await {
                    Read::Ended(Ok(n)) => {
                        panic!("{case}: the body looked complete with {n} bytes")
                    }
                    Read::Ended(Err(e)) => e,
                    Read::Started => panic!("{case}: started twice"),
                };
                let err = err
                    .downcast::<gateway_core::Error>()
                    .unwrap_or_else(|e| panic!("{case}: not a gateway error: {e}"));
                assert!(err.is_incomplete_body(), "{case}: {err}");
                assert!(err.is_client_fault(), "{case}");
            }
        }
    }
}
}

/// The detached reader's next report.
async fn next(rx: &mut mpsc::UnboundedReceiver<Read>, case: &str) -> Read {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{case}: no news from the body"))
        .unwrap_or_else(|| panic!("{case}: the reader is gone"))
}

/// Writes `pieces` in turn, `gap` apart, until the server closes the
/// connection or `limit` passes; how long the server kept it open, if it
/// closed it. Whatever the server answers is read and dropped.
async fn trickle(
    c: &mut Client<DuplexStream>,
    pieces: &[Vec<u8>],
    gap: Duration,
    limit: Duration,
) -> Option<Duration> {
    let began = Instant::now();
    let mut scratch = [0u8; 1024];
    for piece in pieces.iter().cycle() {
        if began.elapsed() > limit {
            return None;
        }
        if c.io.write_all(piece).await.is_err() {
            return Some(began.elapsed());
        }
        let wait = tokio::time::sleep(gap);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                r = c.io.read(&mut scratch) => match r {
                    Ok(0) | Err(_) => return Some(began.elapsed()),
                    Ok(_) => {}
                },
            }
        }
    }
    None
}

/// A whole FCGI_GET_VALUES record.
fn get_values() -> Vec<u8> {
    let mut w = BytesMut::new();
    proto::encode_get_values(&mut w, ["FCGI_MAX_CONNS"]).unwrap();
    w.to_vec()
}

per_dispatch! {
/// Bytes trickled in before a request, on a fresh connection and on a
/// kept-alive one after a request: the largest FCGI_GET_VALUES record one
/// byte at a time, or whole small management records one after another.
/// Neither moves the deadline of the next request head: the connection
/// closes `head_read_timeout` after the first byte (well before the idle
/// timeout), instead of staying open as long as bytes keep coming.
async fn trickled_bytes_do_not_hold_the_connection(dispatch) {
    let head = Duration::from_millis(500);
    let mut header = BytesMut::new();
    header.extend_from_slice(&[1, 9, 0, 0, 0xff, 0xff, 0, 0]);
    header.extend_from_slice(&[b'x'; 100]);
    let one_byte_at_a_time: Vec<Vec<u8>> = header.iter().map(|b| vec![*b]).collect();
    let whole_records = vec![get_values()];
    for multiplex in [false, true] {
        for kept_alive in [false, true] {
            for (what, pieces) in [
                ("a record a byte at a time", &one_byte_at_a_time),
                ("whole management records", &whole_records),
            ] {
                let case = format!("multiplex {multiplex}, kept alive {kept_alive}, {what}");
                let mut limits = Limits::default();
                limits
                    .head_read_timeout(head)
                    .idle_timeout(Duration::from_secs(20));
                let mut c = connect(&server(dispatch, reader(), multiplex, limits));
                if kept_alive {
                    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
                    c.stream(RecordType::Stdin, 1, b"", true).await;
                    assert_eq!(c.response(1).await.body(), "read 0", "{case}");
                }
                let open = trickle(
                    &mut c,
                    pieces,
                    Duration::from_millis(50),
                    Duration::from_secs(4),
                )
                .await;
                let open = open.unwrap_or_else(|| panic!("{case}: still open after 4 s"));
                assert!(
                    open >= head - Duration::from_millis(100)
                        && open < head + Duration::from_secs(2),
                    "{case}: open for {open:?}"
                );
            }
        }
    }
}
}

per_dispatch! {
/// The wait between requests: a fresh connection on which nothing comes
/// closes after `head_read_timeout` (a request is due at once); a
/// kept-alive one after `idle_timeout` from its last request, even when
/// that is longer.
async fn head_and_idle_deadlines(dispatch) {
    for multiplex in [false, true] {
        let mut limits = Limits::default();
        limits
            .head_read_timeout(Duration::from_millis(300))
            .idle_timeout(Duration::from_millis(1500));
        let server = server(dispatch, reader(), multiplex, limits);

        let mut c = connect(&server);
        let began = Instant::now();
        assert!(c.closed().await, "multiplex {multiplex}: fresh connection");
        let took = began.elapsed();
        assert!(
            took < Duration::from_millis(1200),
            "multiplex {multiplex}: fresh connection open for {took:?}"
        );

        let mut c = connect(&server);
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        c.response(1).await;
        let began = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(c.stays_open().await, "multiplex {multiplex}: kept alive");
        assert!(c.closed().await, "multiplex {multiplex}: idle");
        let took = began.elapsed();
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
            "multiplex {multiplex}: idle for {took:?}"
        );
    }
}
}

per_dispatch! {
/// A body of unknown length (`CONTENT_LENGTH: -1`, what Caddy and Go's
/// FastCGI client send for a chunked upload, or no length at all) is read
/// to the end of FCGI_STDIN, whole; a malformed length is a 400 without
/// calling the application.
async fn unknown_length_is_read_to_the_end_of_stdin(dispatch) {
    for multiplex in [false, true] {
        for length in ["-1", ""] {
            let mut c = connect(&server(dispatch, reader(), multiplex, Limits::default()));
            c.begin(1, RESPONDER, KEEP_CONN, &pairs(&post(length)))
                .await;
            c.stream(RecordType::Stdin, 1, &[b'x'; 70_000], false).await;
            c.stream(RecordType::Stdin, 1, b"", true).await;
            let r = c.response(1).await;
            assert!(
                r.text().starts_with("Status: 200") && r.text().ends_with("read 70000"),
                "multiplex {multiplex}, length {length:?}: {}",
                r.text()
            );
        }
        for bad in ["+5", " 5", "abc", "-2"] {
            let mut c = connect(&server(dispatch, reader(), multiplex, Limits::default()));
            c.begin(1, RESPONDER, KEEP_CONN, &pairs(&post(bad))).await;
            c.stream(RecordType::Stdin, 1, b"12345", false).await;
            c.stream(RecordType::Stdin, 1, b"", true).await;
            let r = c.response(1).await;
            assert!(
                r.text().starts_with("Status: 400"),
                "multiplex {multiplex}, length {bad:?}: {}",
                r.text()
            );
        }
    }
}
}

per_dispatch! {
/// An application that reads its body late is not a stalled web server:
/// while its input queue is full the connection reads nothing more and
/// the body read timeout does not run, so a body taken in only after
/// several timeouts' worth of waiting still arrives whole, and the
/// connection goes on serving.
async fn a_late_reader_is_not_a_stalled_web_server(dispatch) {
    let timeout = Duration::from_millis(200);
    let late = BoxCloneSyncService::new(tower::service_fn(|req: Request<Body>| async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let body = read_body(req.into_body()).await?;
        Ok::<_, BoxError>(ok(format!("read {}", body.len())))
    }));
    for multiplex in [false, true] {
        let mut limits = Limits::default();
        limits.body_read_timeout(timeout);
        let mut c = connect(&server(dispatch, late.clone(), multiplex, limits));
        let len = 2 << 20;
        let mut w = BytesMut::new();
        proto::encode_begin_request(&mut w, 1, RESPONDER, KEEP_CONN);
        proto::encode_params(&mut w, 1, pairs(&post(&len.to_string()))).unwrap();
        proto::encode_stream(&mut w, RecordType::Stdin, 1, &vec![b'x'; len]);
        proto::encode_stream_end(&mut w, RecordType::Stdin, 1);
        // Taken in as the application reads: it blocks until then.
        c.send(&w).await;
        let r = c.response(1).await;
        assert_eq!(r.body(), format!("read {len}"), "multiplex {multiplex}");
        c.begin(1, RESPONDER, 0, &pairs(&post("2"))).await;
        c.stream(RecordType::Stdin, 1, b"ok", true).await;
        assert_eq!(c.response(1).await.body(), "read 2", "multiplex {multiplex}");
    }
}
}

per_dispatch! {
/// A web server that stops reading in the middle of a large response:
/// once it has taken nothing for `write_timeout`, the connection is closed
/// (the application, still writing, is cancelled) instead of waiting
/// forever.
async fn a_web_server_that_stops_reading_is_dropped_after_write_timeout(dispatch) {
    let timeout = Duration::from_millis(300);
    let big = BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async move {
        Ok::<_, BoxError>(ok(vec![b'z'; 16 << 20]))
    }));
    for multiplex in [false, true] {
        let mut limits = Limits::default();
        limits.write_timeout(timeout);
        let mut c = connect(&server(dispatch, big.clone(), multiplex, limits));
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let began = Instant::now();
        // Read nothing; a write to the connection fails once the server
        // has dropped it.
        let closed_after = loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut w = BytesMut::new();
            proto::encode_get_values(&mut w, ["FCGI_MAX_CONNS"]).unwrap();
            if c.io.write_all(&w).await.is_err() {
                break began.elapsed();
            }
            assert!(
                began.elapsed() < Duration::from_secs(5),
                "multiplex {multiplex}: still open after 5 s"
            );
        };
        assert!(
            closed_after >= timeout - Duration::from_millis(50),
            "multiplex {multiplex}: closed after {closed_after:?}, before the write timeout"
        );
    }
}
}

//! The FastCGI server end to end over in-memory connections (and loopback
//! TCP where the accept loop matters): the web server's records in, the
//! application run through the core handler, records out. Test names carry
//! the checklist items they cover.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use gateway_core::{Body, ErrorStream, Handler, Limits};
use gateway_fastcgi::proto::{self, ProtocolStatus, RecordType};
use gateway_fastcgi::{Dispatch, FilterData};
use http::{Request, Response};
use support::*;
use tokio::sync::Notify;

type App = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

fn app<F, Fut>(f: F) -> App
where
    F: Fn(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |req| {
        let f = f.clone();
        async move { Ok::<_, Infallible>(f(req).await) }
    }))
}

/// Echoes the method, path and body length.
/// A Filter request's data stream, read whole (`none` when the request
/// has none).
async fn filter_data(req: &mut Request<Body>) -> Vec<u8> {
    let data = req
        .extensions_mut()
        .remove::<FilterData>()
        .and_then(|d| d.take());
    match data {
        Some(d) => read_body(d).await.map(|b| b.to_vec()).unwrap_or_default(),
        None => b"none".to_vec(),
    }
}

fn echo() -> App {
    app(|req: Request<Body>| async move {
        let head = format!("{} {}", req.method(), req.uri().path());
        let body = read_body(req.into_body()).await.unwrap_or_default();
        ok(format!("{head} {}", body.len()))
    })
}

per_dispatch! {
/// F7, F10, F11: a GET without FCGI_KEEP_CONN: CGI response in STDOUT
/// records, the empty STDOUT, END_REQUEST {0, REQUEST_COMPLETE}, then the
/// application closes the connection.
async fn responder_without_keep_conn_closes_f7_f10_f11(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(echo()));
    c.begin(1, RESPONDER, 0, &pairs(&get("/hello"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let r = c.response(1).await;
    assert!(r.text().starts_with("Status: 200 OK\r\n"), "{}", r.text());
    assert_eq!(r.body(), "GET /hello 0");
    assert!(r.stdout_ended);
    assert_eq!((r.app_status, r.protocol_status), (0, 0));
    assert!(c.closed().await, "connection must close without KEEP_CONN");
}
}

per_dispatch! {
/// F7: with FCGI_KEEP_CONN the connection stays open and the id is reused.
async fn keep_conn_reuses_id_f7(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(echo()));
    for i in 0..3 {
        let path = format!("/r{i}");
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get(&path))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let r = c.response(1).await;
        assert_eq!(r.body(), format!("GET {path} 0"));
    }
    assert!(c.stays_open().await);
}
}

per_dispatch! {
/// F10: a body with CONTENT_LENGTH reaches the application; one with an
/// empty CONTENT_LENGTH (a chunked upload the web server streams) is read
/// to the end of FCGI_STDIN.
async fn body_with_and_without_length_f10(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(echo()));
    let mut p = get("/up");
    p[0].1 = "POST".into();
    p[8].1 = "5".into();
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&p)).await;
    c.stream(RecordType::Stdin, 1, b"hel", false).await;
    c.stream(RecordType::Stdin, 1, b"lo", true).await;
    assert_eq!(c.response(1).await.body(), "POST /up 5");

    p[8].1 = String::new();
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&p)).await;
    c.stream(RecordType::Stdin, 1, &[b'x'; 100_000], false)
        .await;
    c.stream(RecordType::Stdin, 1, b"y", true).await;
    assert_eq!(c.response(1).await.body(), "POST /up 100001");
}
}

per_dispatch! {
/// F10: STDIN shorter than CONTENT_LENGTH is a body error for the
/// application (the client's upload failed).
async fn short_stdin_is_a_body_error_f10(dispatch) {
    let a = app(|req: Request<Body>| async move {
        match read_body(req.into_body()).await {
            Ok(b) => ok(format!("got {}", b.len())),
            Err(_) => ok("short"),
        }
    });
    let mut c = connect(&new_server(dispatch).connections(a));
    let mut p = get("/");
    p[0].1 = "POST".into();
    p[8].1 = "10".into();
    c.begin(1, RESPONDER, 0, &pairs(&p)).await;
    c.stream(RecordType::Stdin, 1, b"abc", true).await;
    assert_eq!(c.response(1).await.body(), "short");
}
}

per_dispatch! {
/// F10, B5: the whole request in one write (FCGI_STDIN ended right after the
/// parameters, so its body is known empty at once): a GET gets an empty
/// body, and a declared CONTENT_LENGTH with no data is still a body error.
async fn request_in_one_write_f10(dispatch) {
    let a = app(|req: Request<Body>| async move {
        match read_body(req.into_body()).await {
            Ok(b) => ok(format!("got {}", b.len())),
            Err(_) => ok("short"),
        }
    });
    let mut c = connect(&new_server(dispatch).connections(a));
    for (length, expected) in [("", "got 0"), ("4", "short"), ("0", "got 0")] {
        let mut p = get("/");
        p[8].1 = length.into();
        let mut w = BytesMut::new();
        proto::encode_begin_request(&mut w, 1, RESPONDER, KEEP_CONN);
        proto::encode_params(&mut w, 1, pairs(&p)).unwrap();
        proto::encode_stream_end(&mut w, RecordType::Stdin, 1);
        c.send(&w).await;
        let r = c.response(1).await;
        assert_eq!(
            (r.body().as_str(), r.app_status),
            (expected, 0),
            "CONTENT_LENGTH {length:?}"
        );
    }
}
}

per_dispatch! {
/// F9: a second request while one is active on a connection that does not
/// multiplex is refused with FCGI_CANT_MPX_CONN, and the first completes.
async fn cant_mpx_conn_f9(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(echo()));
    let mut p = get("/a");
    p[8].1 = "2".into();
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&p)).await;
    c.begin(2, RESPONDER, KEEP_CONN, &pairs(&get("/b"))).await;
    let r = c.record().await.unwrap();
    assert_eq!(
        &r.content[..],
        b"\x00\x00\x00\x00\x01\x00\x00\x00",
        "END_REQUEST with CANT_MPX_CONN for id 2"
    );
    assert_eq!((r.record_type, r.request_id), (RecordType::EndRequest, 2));
    c.stream(RecordType::Stdin, 1, b"ok", true).await;
    assert_eq!(c.response(1).await.body(), "GET /a 2");
}
}

per_dispatch! {
/// F9 + backpressure: on a multiplexing connection, a request whose
/// application does not read its body does not hold up another request.
async fn multiplexed_slow_reader_does_not_stall_others_f9(dispatch) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let a = app(move |req: Request<Body>| {
        let g = g.clone();
        async move {
            if req.uri().path() == "/slow" {
                g.notified().await;
            }
            let n = read_body(req.into_body())
                .await
                .map(|b| b.len())
                .unwrap_or(0);
            ok(format!("{} {n}", req_path_hint()))
        }
    });
    fn req_path_hint() -> &'static str {
        "done"
    }
    let mut server = new_server(dispatch);
    server.multiplex(true);
    let conns = server.connections(a);
    let mut c = connect(&conns);
    let mut p = get("/slow");
    p[0].1 = "POST".into();
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&p)).await;
    c.stream(RecordType::Stdin, 1, &[1u8; 100_000], false).await;
    c.begin(2, RESPONDER, KEEP_CONN, &pairs(&get("/fast")))
        .await;
    c.stream(RecordType::Stdin, 2, b"", true).await;
    assert_eq!(c.response(2).await.body(), "done 0");
    c.stream(RecordType::Stdin, 1, b"", true).await;
    gate.notify_one();
    assert_eq!(c.response(1).await.body(), "done 100000");
}
}

/// Sets a flag when dropped: shows that a cancelled application was dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn hanging(flag: Arc<AtomicBool>, started: Arc<Notify>) -> App {
    app(move |_req: Request<Body>| {
        let flag = flag.clone();
        let started = started.clone();
        async move {
            let _guard = DropFlag(flag);
            started.notify_one();
            std::future::pending::<()>().await;
            ok("never")
        }
    })
}

per_dispatch! {
/// F13: FCGI_ABORT_REQUEST cancels the application (its future is dropped)
/// and is answered with END_REQUEST; the connection keeps serving.
async fn abort_request_cancels_the_app_f13(dispatch) {
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Notify::new());
    let mut c = connect(&new_server(dispatch).connections(hanging(dropped.clone(), started.clone())));
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    started.notified().await;
    let mut w = BytesMut::new();
    proto::encode_abort_request(&mut w, 1);
    c.send(&w).await;
    let r = c.response(1).await;
    assert_eq!(r.protocol_status, 0);
    assert_ne!(r.app_status, 0, "an aborted request reports a failure");
    assert!(dropped.load(Ordering::SeqCst), "the app future was dropped");
    // Nothing more for request 1; the connection is still usable.
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    started.notified().await;
    assert!(c.stays_open().await);
}
}

per_dispatch! {
/// F14: the web server closing the connection cancels its requests.
async fn web_server_close_cancels_f14(dispatch) {
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Notify::new());
    let mut c = connect(&new_server(dispatch).connections(hanging(dropped.clone(), started.clone())));
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    started.notified().await;
    drop(c);
    for _ in 0..100 {
        if dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the application was not cancelled");
}
}

per_dispatch! {
/// F4: FCGI_GET_VALUES answers from the real configuration, even in the
/// middle of a request.
async fn get_values_reports_the_config_f4(dispatch) {
    let mut server = new_server(dispatch);
    server.multiplex(true).max_requests(7);
    let conns = server.connections(echo());
    let mut c = connect(&conns);
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    let mut w = BytesMut::new();
    proto::encode_get_values(&mut w, ["FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "NOPE"]).unwrap();
    c.send(&w).await;
    let r = c.record().await.unwrap();
    assert_eq!(
        (r.record_type, r.request_id),
        (RecordType::GetValuesResult, 0)
    );
    let pairs = proto::decode_pairs(r.content, 1 << 16, 16).unwrap();
    let got: Vec<(&[u8], &[u8])> = pairs.iter().collect();
    assert_eq!(
        got,
        [
            (&b"FCGI_MAX_REQS"[..], &b"7"[..]),
            (b"FCGI_MPXS_CONNS", b"1")
        ]
    );
    c.stream(RecordType::Stdin, 1, b"", true).await;
    assert_eq!(c.response(1).await.body(), "GET / 0");
}
}

per_dispatch! {
/// F4, F9 on a connection that does not multiplex: while the application
/// runs (and waits), FCGI_GET_VALUES is answered at once and a second
/// request is refused with FCGI_CANT_MPX_CONN; the first one then completes.
async fn management_answered_while_the_app_runs_f4(dispatch) {
    let gate = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let (g, s) = (gate.clone(), started.clone());
    let a = app(move |_req: Request<Body>| {
        let (g, s) = (g.clone(), s.clone());
        async move {
            s.notify_one();
            g.notified().await;
            ok("released")
        }
    });
    let mut c = connect(&new_server(dispatch).connections(a));
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    started.notified().await;
    let mut w = BytesMut::new();
    proto::encode_get_values(&mut w, ["FCGI_MPXS_CONNS"]).unwrap();
    c.send(&w).await;
    let r = c.record().await.unwrap();
    assert_eq!(
        (r.record_type, r.request_id),
        (RecordType::GetValuesResult, 0)
    );
    let pairs_got = proto::decode_pairs(r.content, 1 << 16, 16).unwrap();
    assert_eq!(
        pairs_got.get(b"FCGI_MPXS_CONNS"),
        Some(&b"0"[..])
    );
    c.begin(2, RESPONDER, KEEP_CONN, &pairs(&get("/b"))).await;
    let r = c.record().await.unwrap();
    assert_eq!((r.record_type, r.request_id), (RecordType::EndRequest, 2));
    assert_eq!(&r.content[..], b"\x00\x00\x00\x00\x01\x00\x00\x00");
    gate.notify_one();
    let r = c.response(1).await;
    assert_eq!((r.body().as_str(), r.app_status), ("released", 0));
}
}

per_dispatch! {
/// Graceful shutdown on connections that do not multiplex: the running
/// request finishes and its connection then closes; an idle connection
/// closes at once.
async fn graceful_shutdown_one_request_at_a_time(dispatch) {
    let gate = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let (g, s) = (gate.clone(), started.clone());
    let a = app(move |_req: Request<Body>| {
        let (g, s) = (g.clone(), s.clone());
        async move {
            s.notify_one();
            g.notified().await;
            ok("finished")
        }
    });
    let shutdown = gateway_core::server::Shutdown::new();
    let mut server = new_server(dispatch);
    server.shutdown(shutdown.clone());
    let conns = server.connections(a);
    let mut busy = connect(&conns);
    let mut idle = connect(&conns);
    busy.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    busy.stream(RecordType::Stdin, 1, b"", true).await;
    started.notified().await;
    shutdown.trigger();
    assert!(idle.closed().await, "idle connection closed");
    gate.notify_one();
    assert_eq!(busy.response(1).await.body(), "finished");
    assert!(busy.closed().await);
}
}

per_dispatch! {
/// F9: past the server's capacity, new requests get FCGI_OVERLOADED.
async fn overloaded_past_capacity_f9(dispatch) {
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Notify::new());
    let mut server = new_server(dispatch);
    server.max_requests(1);
    let conns = server.connections(hanging(dropped, started.clone()));
    let mut c1 = connect(&conns);
    let mut c2 = connect(&conns);
    c1.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    started.notified().await;
    c2.begin(1, RESPONDER, 0, &pairs(&get("/"))).await;
    let r = c2.response(1).await;
    assert_eq!(r.protocol_status, ProtocolStatus::Overloaded.as_u8());
    assert!(r.stdout.is_empty());
    assert!(c2.closed().await);
}
}

per_dispatch! {
/// F8: an unknown role is refused with FCGI_UNKNOWN_ROLE.
async fn unknown_role_f8(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(echo()));
    c.begin(1, 9, 0, &[]).await;
    let r = c.record().await.unwrap();
    assert_eq!(r.record_type, RecordType::EndRequest);
    assert_eq!(r.content[4], ProtocolStatus::UnknownRole.as_u8());
    assert!(c.closed().await);
}
}

per_dispatch! {
/// F8: the Authorizer role: no body, no CONTENT_LENGTH/SCRIPT_NAME/PATH_INFO
/// (the path comes from REQUEST_URI); a 200 with `Variable-*` headers goes
/// back as is, and so does a 403.
async fn authorizer_role_f8(dispatch) {
    let a = app(|req: Request<Body>| async move {
        let allowed = req.headers().contains_key("authorization");
        let path = req.uri().path().to_owned();
        let mut res = ok(format!("checked {path}"));
        if allowed {
            res.headers_mut()
                .insert("variable-user", http::HeaderValue::from_static("alice"));
        } else {
            *res.status_mut() = http::StatusCode::FORBIDDEN;
        }
        res
    });
    let mut c = connect(&new_server(dispatch).connections(a));
    let p = [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/private/x?y=1"),
        ("QUERY_STRING", "y=1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_AUTHORIZATION", "Basic x"),
    ];
    c.begin(1, AUTHORIZER, KEEP_CONN, &p).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let r = c.response(1).await;
    assert!(r.text().starts_with("Status: 200"), "{}", r.text());
    assert!(
        r.text()
            .to_ascii_lowercase()
            .contains("variable-user: alice")
    );
    assert_eq!(r.body(), "checked /private/x");
    c.begin(1, AUTHORIZER, KEEP_CONN, &p[..4]).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    assert!(c.response(1).await.text().starts_with("Status: 403"));
}
}

per_dispatch! {
/// F8: the Filter role: the FCGI_DATA stream reaches the application as
/// [`FilterData`] in the request extensions, next to the body.
async fn filter_role_data_stream_f8(dispatch) {
    let a = app(|mut req: Request<Body>| async move {
        let data = filter_data(&mut req).await;
        let body = read_body(req.into_body()).await.unwrap_or_default();
        ok(format!(
            "data={} body={}",
            String::from_utf8_lossy(&data),
            String::from_utf8_lossy(&body)
        ))
    });
    let mut c = connect(&new_server(dispatch).connections(a));
    let mut p = get("/f");
    p.push(("FCGI_DATA_LENGTH", "4".into()));
    c.begin(1, FILTER, 0, &pairs(&p)).await;
    c.stream(RecordType::Stdin, 1, b"in", true).await;
    c.stream(RecordType::Data, 1, b"file", true).await;
    assert_eq!(c.response(1).await.body(), "data=file body=in");
}
}

per_dispatch! {
/// Requests one after the other on a kept-alive connection, some answered
/// at once and some after the application waited, Filter and Responder
/// mixed: each response is that of its own request (nothing of a request
/// that ran before on the connection is seen by the next).
async fn one_request_after_another_each_its_own(dispatch) {
    let a = app(|mut req: Request<Body>| async move {
        if req.uri().query() == Some("wait") {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let data = filter_data(&mut req).await;
        let path = req.uri().path().to_owned();
        let body = read_body(req.into_body()).await.unwrap_or_default();
        ok(format!(
            "{path} data={} body={}",
            String::from_utf8_lossy(&data),
            String::from_utf8_lossy(&body)
        ))
    });
    let mut c = connect(&new_server(dispatch).connections(a));
    for i in 0..8 {
        let wait = if i % 3 == 1 { "?wait" } else { "" };
        let mut p = get(&format!("/r{i}{wait}"));
        let filter = i % 4 == 2;
        if filter {
            p.push(("FCGI_DATA_LENGTH", "2".into()));
        }
        let role = if filter { FILTER } else { RESPONDER };
        c.begin(1, role, KEEP_CONN, &pairs(&p)).await;
        let body = format!("b{i}");
        c.stream(RecordType::Stdin, 1, body.as_bytes(), true).await;
        if filter {
            c.stream(RecordType::Data, 1, format!("d{i}").as_bytes(), true)
                .await;
        }
        let data = if filter { format!("d{i}") } else { "none".into() };
        let r = c.response(1).await;
        assert_eq!(r.body(), format!("/r{i} data={data} body=b{i}"));
        assert_eq!(r.app_status, 0);
    }
}
}

fn stderr_app() -> App {
    app(|req: Request<Body>| async move {
        if let Some(e) =
            (req.extensions().get::<gateway_core::RequestContext>()).map(|cx| cx.errors())
        {
            e.write(b"warning: something\n");
        }
        ok("fine")
    })
}

per_dispatch! {
/// F11, F12, F16: the error stream goes out as FCGI_STDERR records, ended by
/// an empty FCGI_STDERR before END_REQUEST.
async fn stderr_records_f12_f16(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(stderr_app()));
    c.begin(1, RESPONDER, 0, &pairs(&get("/"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let r = c.response(1).await;
    assert_eq!(r.stderr, b"warning: something\n");
    assert!(r.stderr_ended);
    assert_eq!(r.body(), "fine");
}
}

per_dispatch! {
/// F16: with an error stream of its own (the local log, for IIS), the
/// application's errors go there and no FCGI_STDERR records are sent at all.
async fn stderr_to_a_stream_of_its_own_f16(dispatch) {
    let (errors, captured) = ErrorStream::capture();
    let mut server = new_server(dispatch);
    server.error_stream(errors);
    let conns = server.connections(stderr_app());
    let mut c = connect(&conns);
    c.begin(1, RESPONDER, 0, &pairs(&get("/"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let r = c.response(1).await;
    assert!(r.stderr.is_empty() && !r.stderr_ended);
    assert_eq!(r.body(), "fine");
    assert_eq!(captured.contents(), b"warning: something\n");
}
}

per_dispatch! {
/// F2, B9: a large response is split into records of at most 65535 content
/// bytes, each padded to a multiple of 8, with no empty STDOUT before the
/// end; the framing on the wire is contiguous.
async fn record_sizes_and_padding_f2(dispatch) {
    let a = app(|_req: Request<Body>| async move { ok(vec![b'z'; 200_000]) });
    let mut c = connect(&new_server(dispatch).connections(a));
    c.begin(1, RESPONDER, 0, &pairs(&get("/"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let mut raw = c.raw_until_close().await;
    let mut total = 0;
    let mut ended = false;
    while raw.len() >= 8 {
        let len = usize::from(u16::from_be_bytes([raw[4], raw[5]]));
        let pad = usize::from(raw[6]);
        assert_eq!(raw[0], 1);
        assert_eq!((len + pad) % 8, 0, "record padded to 8");
        assert!(len <= 65535);
        if raw[1] == 6 {
            assert!(!ended, "STDOUT after its end");
            if len == 0 {
                ended = true;
            }
            total += len;
        }
        let _ = raw.split_to(8 + len + pad);
    }
    assert!(raw.is_empty());
    assert!(ended);
    assert!(total > 200_000);
}
}

/// F10 + bounded memory: 64 MiB streamed through a request without a
/// declared length; the application sees the data while the upload is still
/// going, so nothing buffers the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_is_streamed_f10() {
    // Under each dispatch strategy.
    for dispatch in Dispatch::ALL {
        let upload_done = Arc::new(AtomicBool::new(false));
        let seen_early = Arc::new(AtomicBool::new(false));
        let (d, e) = (upload_done.clone(), seen_early.clone());
        let a = app(move |req: Request<Body>| {
            let (d, e) = (d.clone(), e.clone());
            async move {
                use http_body_util::BodyExt;
                let mut body = req.into_body();
                let mut n = 0usize;
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { break };
                    if let Some(data) = frame.data_ref() {
                        if n == 0 && !d.load(Ordering::SeqCst) {
                            e.store(true, Ordering::SeqCst);
                        }
                        n += data.len();
                    }
                }
                ok(format!("{n}"))
            }
        });
        let mut c = connect(&new_server(dispatch).connections(a));
        let mut p = get("/big");
        p[0].1 = "PUT".into();
        c.begin(1, RESPONDER, 0, &pairs(&p)).await;
        let chunk = vec![7u8; 60_000];
        let total = 64 << 20;
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            c.stream(RecordType::Stdin, 1, &chunk[..n], false).await;
            sent += n;
        }
        upload_done.store(true, Ordering::SeqCst);
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let r = c.response(1).await;
        assert_eq!(r.body(), total.to_string());
        assert!(seen_early.load(Ordering::SeqCst), "body was not streamed");
    }
}

/// A response streamed as it is produced: 64 MiB out through a connection
/// whose reader is slower than the application, with bounded queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_is_streamed() {
    // Under each dispatch strategy.
    for dispatch in Dispatch::ALL {
        let a = app(|_req: Request<Body>| async move {
            let chunks = futures_stream(1024, 64 * 1024);
            ok(Body::new(chunks))
        });
        let mut c = connect(&new_server(dispatch).connections(a));
        c.begin(1, RESPONDER, 0, &pairs(&get("/"))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let r = c.response(1).await;
        assert_eq!(r.body().len(), 64 << 20);
    }
}

/// A body of `n` chunks of `size` bytes, made lazily.
fn futures_stream(
    n: usize,
    size: usize,
) -> impl http_body::Body<Data = bytes::Bytes, Error = Infallible> + Send + 'static {
    struct Chunks(usize, usize);
    impl http_body::Body for Chunks {
        type Data = bytes::Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            self.0 -= 1;
            let size = self.1;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
                vec![b'd'; size],
            )))))
        }
    }
    Chunks(n, size)
}

per_dispatch! {
/// B1, B2, B3, F6, F15: protocol errors close the connection (never a
/// panic) and the server keeps serving other connections.
async fn protocol_errors_close_the_connection_f15(dispatch) {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "B1 bad version",
            b"\x02\x01\x00\x01\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec(),
        ),
        ("B3 STDIN before PARAMS end", {
            let mut w = BytesMut::new();
            proto::encode_begin_request(&mut w, 1, RESPONDER, 0);
            proto::encode_stream(&mut w, RecordType::Stdin, 1, b"x");
            w.to_vec()
        }),
        ("B3 duplicate BEGIN", {
            let mut w = BytesMut::new();
            proto::encode_begin_request(&mut w, 1, RESPONDER, 1);
            proto::encode_begin_request(&mut w, 1, RESPONDER, 1);
            w.to_vec()
        }),
        (
            "F6 BEGIN body not 8 bytes",
            b"\x01\x01\x00\x01\x00\x04\x00\x00\x00\x01\x00\x00".to_vec(),
        ),
        (
            "F6 application record on id 0",
            b"\x01\x05\x00\x00\x00\x01\x07\x00x\0\0\0\0\0\0\0".to_vec(),
        ),
        (
            "F15 STDOUT from the web server",
            b"\x01\x06\x00\x01\x00\x00\x00\x00".to_vec(),
        ),
        ("B2 malformed params", {
            let mut w = BytesMut::new();
            proto::encode_begin_request(&mut w, 1, RESPONDER, 0);
            w.extend_from_slice(b"\x01\x04\x00\x01\x00\x04\x04\x00\x80\x00\x00\x09\0\0\0\0");
            proto::encode_stream_end(&mut w, RecordType::Params, 1);
            w.to_vec()
        }),
    ];
    let conns = new_server(dispatch).connections(echo());
    for (name, bytes) in cases {
        let mut c = connect(&conns);
        c.send(&bytes).await;
        assert!(c.closed().await, "{name}: connection not closed");
    }
    let mut c = connect(&conns);
    c.begin(1, RESPONDER, 0, &pairs(&get("/still"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    assert_eq!(c.response(1).await.body(), "GET /still 0");
}
}

per_dispatch! {
/// Limits: parameters over `max_head_len` close the connection; an idle
/// kept-alive connection is closed after `idle_timeout`; a connection that
/// never finishes its parameters is closed after `head_read_timeout`.
async fn limits_and_timeouts(dispatch) {
    let mut limits = Limits::default();
    limits
        .max_head_len(1024)
        .idle_timeout(Duration::from_millis(200))
        .head_read_timeout(Duration::from_millis(200));
    let mut server = new_server(dispatch);
    server.handler(Handler::builder().limits(limits).build());

    let conns = server.connections(echo());
    let mut c = connect(&conns);
    let big = "v".repeat(2000);
    c.begin(1, RESPONDER, 0, &[("HTTP_X", big.as_str())]).await;
    assert!(c.closed().await, "params over the cap");

    let mut c = connect(&conns);
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    c.response(1).await;
    assert!(c.closed().await, "idle keep-alive connection");

    let mut c = connect(&conns);
    let mut w = BytesMut::new();
    proto::encode_begin_request(&mut w, 1, RESPONDER, 0);
    c.send(&w).await;
    assert!(c.closed().await, "parameters never finished");
}
}

per_dispatch! {
/// The response head: one over `max_response_head_len` is not sent (the
/// error page is, whole); one within it but longer than a record is sent
/// whole, over several records, with the body after it.
async fn response_head_cap_and_long_heads(dispatch) {
    let app = app(|req: Request<Body>| async move {
        let n: usize = req.uri().path()[1..].parse().unwrap_or(0);
        let mut res = Response::new(Body::from("the body"));
        res.headers_mut()
            .insert("x-long", "v".repeat(n).parse().unwrap());
        res
    });
    let mut limits = Limits::default();
    limits.max_response_head_len(1024);
    let mut server = new_server(dispatch);
    server.handler(Handler::builder().limits(limits).build());
    let conns = server.connections(app.clone());
    let mut c = connect(&conns);
    for (n, fits) in [(100, true), (2000, false), (10, true)] {
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get(&format!("/{n}"))))
            .await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let r = c.response(1).await;
        let text = r.text();
        if fits {
            assert!(text.starts_with("Status: 200 OK\r\n"), "{text}");
            assert!(text.contains(&format!("X-Long: {}\r\n", "v".repeat(n))));
            assert_eq!(r.body(), "the body");
        } else {
            assert!(text.starts_with("Status: 500 "), "{text}");
            assert!(!text.contains("vvvv"), "{text}");
        }
    }

    let mut limits = Limits::default();
    limits.max_response_head_len(1 << 20);
    let mut server = new_server(dispatch);
    server.handler(Handler::builder().limits(limits).build());
    let conns = server.connections(app);
    let mut c = connect(&conns);
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/100000"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let r = c.response(1).await;
    assert!(r.records >= 3, "a head of 100000 bytes takes two records");
    assert!(r.text().contains(&format!("X-Long: {}\r\n", "v".repeat(100_000))));
    assert_eq!(r.body(), "the body");
}
}

per_dispatch! {
/// Limits: after `max_requests_per_connection` requests a kept-alive
/// connection is closed once idle.
async fn requests_per_connection(dispatch) {
    let mut limits = Limits::default();
    limits.max_requests_per_connection(Some(2));
    let mut server = new_server(dispatch);
    server.handler(Handler::builder().limits(limits).build());
    let conns = server.connections(echo());
    let mut c = connect(&conns);
    for _ in 0..2 {
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        assert_eq!(c.response(1).await.app_status, 0);
    }
    assert!(c.closed().await);
}
}

per_dispatch! {
/// Graceful shutdown: the in-flight request finishes, a new request (here on
/// the busy, multiplexing connection) is answered FCGI_OVERLOADED, idle
/// connections close, and the busy one closes once its request is done.
async fn graceful_shutdown(dispatch) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    let a = app(move |_req: Request<Body>| {
        let g = g.clone();
        let n = n.clone();
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            ok("finished")
        }
    });
    let shutdown = gateway_core::server::Shutdown::new();
    let mut server = new_server(dispatch);
    server.shutdown(shutdown.clone()).multiplex(true);
    let conns = server.connections(a);
    let mut busy = connect(&conns);
    let mut idle = connect(&conns);
    busy.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
    while count.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.trigger();
    assert!(idle.closed().await, "idle connection closed");
    busy.begin(2, RESPONDER, 0, &pairs(&get("/"))).await;
    assert_eq!(
        busy.response(2).await.protocol_status,
        ProtocolStatus::Overloaded.as_u8()
    );
    gate.notify_one();
    assert_eq!(busy.response(1).await.body(), "finished");
    assert!(busy.closed().await);
}
}

per_dispatch! {
/// F1: the accept loop over loopback TCP, with an allow-list that refuses
/// this peer, and without one.
async fn tcp_listener_and_allow_list_f1(dispatch) {
    use gateway_core::server::{Listener, Shutdown};
    for (allowed, served) in [
        (None, true),
        (Some(vec!["10.9.9.9".parse().unwrap()]), false),
    ] {
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.tcp_addr().unwrap();
        let shutdown = Shutdown::new();
        let mut server = new_server(dispatch);
        server.shutdown(shutdown.clone()).web_server_addrs(allowed);
        let task = tokio::spawn(async move { server.serve(listener, echo()).await });
        let mut c = Client::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        if served {
            c.begin(1, RESPONDER, 0, &pairs(&get("/tcp"))).await;
            c.stream(RecordType::Stdin, 1, b"", true).await;
            assert_eq!(c.response(1).await.body(), "GET /tcp 0");
        } else {
            assert!(c.closed().await, "peer not in the allow-list");
        }
        shutdown.trigger();
        task.await.unwrap().unwrap();
    }
}
}

/// `partial`, then a body error: a response that fails after its head.
fn failing_after_head() -> App {
    struct Failing(bool);
    impl http_body::Body for Failing {
        type Data = bytes::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>>
        {
            if self.0 {
                return std::task::Poll::Ready(Some(Err(std::io::Error::other("boom"))));
            }
            self.0 = true;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"partial",
            )))))
        }
    }
    app(|req: Request<Body>| async move {
        if req.uri().path() == "/fail" {
            ok(Body::new(Failing(false)))
        } else {
            ok("fine")
        }
    })
}

per_dispatch! {
/// F11: a response that fails after its head gets what was produced, the
/// end of STDOUT, and END_REQUEST with appStatus 1 and REQUEST_COMPLETE
/// (exact bytes, the last thing on the connection without KEEP_CONN); with
/// KEEP_CONN the connection goes on serving. Both drivers (one request at a
/// time, multiplexed).
async fn failure_after_head_ends_with_app_status_1_f11(dispatch) {
    for multiplex in [false, true] {
        let mut server = new_server(dispatch);
        server.multiplex(multiplex);

        let conns = server.connections(failing_after_head());
        let mut c = connect(&conns);
        c.begin(1, RESPONDER, 0, &pairs(&get("/fail"))).await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let raw = c.raw_until_close().await;
        assert!(
            raw.ends_with(b"\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00"),
            "multiplex {multiplex}: END_REQUEST {{appStatus 1, REQUEST_COMPLETE}} last: {raw:02x?}"
        );
        let mut c = Client::new(std::io::Cursor::new(raw.to_vec()));
        let r = c.response(1).await;
        assert!(r.text().starts_with("Status: 200 OK\r\n"), "{}", r.text());
        assert_eq!(r.body(), "partial");
        assert!(r.stdout_ended && r.stderr_ended);
        assert_eq!((r.app_status, r.protocol_status), (1, 0));

        let mut c = connect(&conns);
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/fail")))
            .await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let r = c.response(1).await;
        assert_eq!((r.body().as_str(), r.app_status), ("partial", 1));
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/next")))
            .await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let r = c.response(1).await;
        assert_eq!((r.body().as_str(), r.app_status), ("fine", 0));
    }
}
}

per_dispatch! {
/// With `abort_with_reset(true)`, a response that fails after its head is
/// cut off instead: what was produced, then the connection closes (a TCP
/// connection with a reset) with neither the end of STDOUT nor END_REQUEST,
/// even with KEEP_CONN. Both drivers.
async fn failure_after_head_with_reset_truncates(dispatch) {
    for multiplex in [false, true] {
        let mut server = new_server(dispatch);
        server.multiplex(multiplex).abort_with_reset(true);
        let conns = server.connections(failing_after_head());
        let mut c = connect(&conns);
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/fail")))
            .await;
        c.stream(RecordType::Stdin, 1, b"", true).await;
        let mut stdout = Vec::new();
        while let Some(r) = c.record().await {
            assert!(!r.content.is_empty(), "no end of a stream: {r:?}");
            match r.record_type {
                RecordType::Stdout => stdout.extend_from_slice(&r.content),
                RecordType::Stderr => {}
                _ => panic!("no end of request: {r:?}"),
            }
        }
        let text = String::from_utf8_lossy(&stdout);
        assert!(text.ends_with("partial"), "multiplex {multiplex}: {text}");
    }
}
}

per_dispatch! {
/// With `abort_with_reset(true)`, the reset waits until the web server has
/// sent the end of FCGI_STDIN (Apache sends it after the parameters, and
/// fails its send otherwise): the partial response arrives, the connection
/// stays open, and closes once the input has ended. Both drivers.
async fn reset_waits_for_the_end_of_stdin(dispatch) {
    for multiplex in [false, true] {
        let mut server = new_server(dispatch);
        server.multiplex(multiplex).abort_with_reset(true);
        let conns = server.connections(failing_after_head());
        let mut c = connect(&conns);
        c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/fail")))
            .await;
        // The head and the partial body (in one record or more).
        let mut stdout = Vec::new();
        while !stdout.ends_with(b"partial") {
            let r = c.record().await.expect("the partial response");
            assert!(!r.content.is_empty(), "multiplex {multiplex}: {r:?}");
            if r.record_type == RecordType::Stdout {
                stdout.extend_from_slice(&r.content);
            }
        }
        assert!(
            c.stays_open().await,
            "multiplex {multiplex}: reset before the input ended"
        );
        c.stream(RecordType::Stdin, 1, b"", true).await;
        while let Some(r) = c.record().await {
            assert!(
                matches!(r.record_type, RecordType::Stdout | RecordType::Stderr)
                    && !r.content.is_empty(),
                "multiplex {multiplex}: {r:?}"
            );
        }
    }
}
}

per_dispatch! {
/// Over TCP the reset option really resets: the web server's read fails
/// with ECONNRESET instead of seeing an orderly end of file.
async fn failure_after_head_with_reset_over_tcp(dispatch) {
    use gateway_core::server::{Listener, Shutdown};
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr_string();
    let shutdown = Shutdown::new();
    let mut server = new_server(dispatch);
    server.abort_with_reset(true).shutdown(shutdown.clone());
    let task = tokio::spawn(async move { server.serve(listener, failing_after_head()).await });
    let mut c = Client::new(tokio::net::TcpStream::connect(addr.as_str()).await.unwrap());
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/fail")))
        .await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let err = c.read_error().await;
    assert_eq!(err, Some(std::io::ErrorKind::ConnectionReset));
    shutdown.trigger();
    let _ = task.await;
}
}

per_dispatch! {
/// F5, F6: an unknown management record is answered with FCGI_UNKNOWN_TYPE,
/// records for inactive request ids are ignored, and the connection goes on
/// serving.
async fn unknown_management_and_inactive_ids_f5_f6(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(echo()));
    c.send(b"\x01\x0c\x00\x00\x00\x00\x00\x00").await;
    let r = c.record().await.unwrap();
    assert_eq!((r.record_type, r.request_id), (RecordType::UnknownType, 0));
    assert_eq!(&r.content[..], b"\x0c\0\0\0\0\0\0\0");
    c.stream(RecordType::Stdin, 5, b"stray", true).await;
    c.begin(1, RESPONDER, 0, &pairs(&get("/after"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    assert_eq!(c.response(1).await.body(), "GET /after 0");
}
}

per_dispatch! {
/// F1: a Unix-socket listener serves; with an allow-list set, connections
/// without an IP peer are refused.
async fn unix_listener_and_allow_list_f1(dispatch) {
    use gateway_core::server::{Listener, Shutdown};
    let dir = std::env::temp_dir().join(format!("gateway-fcgi-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    for (allowed, served) in [
        (None, true),
        (Some(vec!["127.0.0.1".parse().unwrap()]), false),
    ] {
        let listener = Listener::bind(&format!("unix:{}", path.display()))
            .await
            .unwrap();
        let shutdown = Shutdown::new();
        let mut server = new_server(dispatch);
        server.shutdown(shutdown.clone()).web_server_addrs(allowed);
        let task = tokio::spawn(async move { server.serve(listener, echo()).await });
        let mut c = Client::new(tokio::net::UnixStream::connect(&path).await.unwrap());
        if served {
            c.begin(1, RESPONDER, 0, &pairs(&get("/unix"))).await;
            c.stream(RecordType::Stdin, 1, b"", true).await;
            assert_eq!(c.response(1).await.body(), "GET /unix 0");
        } else {
            assert!(c.closed().await, "Unix peer with an allow-list set");
        }
        shutdown.trigger();
        task.await.unwrap().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
}

per_dispatch! {
/// B6: parameters that cannot become a request get 400 from the handler;
/// the connection goes on serving (B5 is `short_stdin_is_a_body_error_f10`,
/// B9 `record_sizes_and_padding_f2`).
async fn bad_params_get_400_b6(dispatch) {
    let mut c = connect(&new_server(dispatch).connections(echo()));
    let mut p = get("/x");
    p[0].1 = "BAD METHOD".into();
    c.begin(1, RESPONDER, KEEP_CONN, &pairs(&p)).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    let r = c.response(1).await;
    assert!(r.text().starts_with("Status: 400"), "{}", r.text());
    assert_eq!(r.app_status, 0);
    c.begin(1, RESPONDER, 0, &pairs(&get("/ok"))).await;
    c.stream(RecordType::Stdin, 1, b"", true).await;
    assert_eq!(c.response(1).await.body(), "GET /ok 0");
}
}

/// `Server::run` by default: a single-threaded runtime per thread, each
/// serving the connections it accepted to their end. Every request is
/// answered on one of the serving threads and the requests of one
/// connection all on the same one; on TCP the connections are spread over
/// several threads; a shutdown stops them all and removes a Unix socket.
#[test]
fn run_serves_each_connection_on_one_thread_of_its_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let threads = run_and_ask(&format!("127.0.0.1:{port}"), |_| {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            Ok(Box::new(s) as Box<dyn Io>)
        })
    });
    assert!(threads.len() > 1, "all connections on {threads:?}");

    let dir = std::env::temp_dir().join(format!("gateway-fastcgi-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    let p = path.clone();
    run_and_ask(&format!("unix:{}", path.display()), move |_| {
        let p = p.clone();
        Box::pin(async move {
            let s = tokio::net::UnixStream::connect(p).await?;
            Ok(Box::new(s) as Box<dyn Io>)
        })
    });
    assert!(!path.exists(), "the socket was left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Connect = std::pin::Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Io>>> + Send>>;

/// Runs a server on three threads at `addr`, sends three requests on each
/// of 24 connections made by `connect`, stops it; the threads that
/// answered.
fn run_and_ask(addr: &str, connect: impl Fn(()) -> Connect) -> std::collections::BTreeSet<String> {
    let addr: gateway_fastcgi::ListenAddr = addr.parse().unwrap();
    let where_ = app(|_req: Request<Body>| async move {
        ok(std::thread::current().name().unwrap_or("?").to_string())
    });
    let mut server = gateway_fastcgi::Server::new();
    server.worker_threads(3);
    let shutdown = server.shutdown_handle();
    let running = std::thread::spawn(move || server.run(&addr, where_));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = rt.block_on(async {
        let mut first = None;
        for _ in 0..200 {
            match connect(()).await {
                Ok(s) => {
                    first = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let mut clients = vec![Client::new(first.expect("the server never listened"))];
        for _ in 1..24 {
            clients.push(Client::new(connect(()).await.unwrap()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &mut clients {
            let mut names = Vec::new();
            for _ in 0..3 {
                c.begin(1, RESPONDER, KEEP_CONN, &pairs(&get("/"))).await;
                c.stream(RecordType::Stdin, 1, b"", true).await;
                names.push(c.response(1).await.body());
            }
            assert!(names.iter().all(|n| n == &names[0]), "{names:?}");
            assert!(names[0].starts_with("fastcgi-"), "{}", names[0]);
            seen.insert(names[0].clone());
        }
        seen
    });
    shutdown.trigger();
    running.join().unwrap().unwrap();
    seen
}

//! The handler's metrics: requests by status class, bytes, and the
//! failures only the handler sees (a body over the limit, too many header
//! fields, the application timeout, an application error, a response
//! aborted after its head, a slow request).

use std::time::Duration;

use bytes::Bytes;
use gateway_core::{Body, Environ, ErrorStream, Failure, Handler, Limits, Metrics, StreamGateway};
use http::{Request, Response};
use http_body_util::BodyExt;

async fn run(handler: &Handler, env: &[(&str, &str)], body: &'static [u8]) -> Vec<u8> {
    let mut environ = Environ::new();
    environ.setup_testing_defaults();
    for (n, v) in env {
        environ.insert(n.to_string(), v.to_string());
    }
    let app = tower::service_fn(|req: Request<Body>| async move {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/fail" => Err("the application failed".into()),
            "/sleep" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Response::new(Body::full("slept")))
            }
            "/abort" => {
                let frames: Vec<Result<http_body::Frame<Bytes>, gateway_core::BoxError>> = vec![
                    Ok(http_body::Frame::data(Bytes::from_static(b"part"))),
                    Err("cut".into()),
                ];
                let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                Ok(Response::new(Body::new(body)))
            }
            _ => {
                let read = req.into_body().collect().await?.to_bytes();
                Ok::<_, gateway_core::BoxError>(Response::new(Body::full(format!(
                    "read {}",
                    read.len()
                ))))
            }
        }
    });
    let mut gw = StreamGateway::cgi(body, Vec::new(), ErrorStream::null(), environ);
    handler.run(&mut gw, app).await;
    gw.writer().to_vec()
}

#[tokio::test]
async fn the_handler_counts_requests_bytes_and_its_failures() {
    let metrics = Metrics::new();
    let mut limits = Limits::default();
    limits
        .max_body_len(Some(10))
        .max_headers(2)
        .app_timeout(Some(Duration::from_millis(20)))
        .slow_request(Some(Duration::from_millis(10)));
    let handler = Handler::builder().limits(limits).metrics(&metrics).build();
    assert!(handler.metrics().is_some());

    let out = run(
        &handler,
        &[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "5")],
        b"hello",
    )
    .await;
    assert!(
        out.ends_with(b"read 5"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let out = run(&handler, &[("CONTENT_LENGTH", "11")], b"").await;
    assert!(out.starts_with(b"Status: 413"));
    let many = [("HTTP_A", "1"), ("HTTP_B", "2"), ("HTTP_C", "3")];
    let out = run(&handler, &many, b"").await;
    assert!(out.starts_with(b"Status: 431"));
    let out = run(&handler, &[("PATH_INFO", "/sleep")], b"").await;
    assert!(out.starts_with(b"Status: 503"));
    let out = run(&handler, &[("PATH_INFO", "/fail")], b"").await;
    assert!(out.starts_with(b"Status: 500"));
    run(&handler, &[("PATH_INFO", "/abort")], b"").await;

    let s = metrics.snapshot();
    assert_eq!(s.requests, 6, "{s:?}");
    assert_eq!(s.requests_by_class, [0, 2, 0, 2, 2, 0], "{s:?}");
    assert_eq!(s.requests_in_flight, 0, "{s:?}");
    assert_eq!(s.requests_max_in_flight, 1, "{s:?}");
    assert_eq!(s.bytes_in, 5, "{s:?}");
    assert_eq!(s.failure(Failure::Limit), 2, "{s:?}");
    assert_eq!(s.failure(Failure::Timeout), 1, "{s:?}");
    assert_eq!(s.failure(Failure::App), 1, "{s:?}");
    assert_eq!(s.failure(Failure::Aborted), 1, "{s:?}");
    // The application timeout ran 20 ms, past the 10 ms threshold.
    assert!(s.requests_slow >= 1, "{s:?}");
    // No connection: the handler counts none.
    assert_eq!(s.connections_accepted, 0, "{s:?}");
}

#[tokio::test]
async fn without_metrics_nothing_is_counted() {
    let handler = Handler::new();
    assert!(handler.metrics().is_none());
    let out = run(&handler, &[], b"").await;
    assert!(out.ends_with(b"read 0"));
}

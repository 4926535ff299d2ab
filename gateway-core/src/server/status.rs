//! The status listener: a [`Metrics`]' figures over plain HTTP on an
//! address of their own.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::accept::{Refusal, serve};
use super::addr::ListenAddr;
use super::listener::Listener;
use super::shutdown::Shutdown;
use crate::Limits;
use crate::metrics::{Metrics, MetricsService};

/// The most connections the status listener serves at once.
pub const STATUS_MAX_CONNECTIONS: usize = 16;
/// How long a status client may take to send its request head.
const HEAD_TIME: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Serves `metrics` over plain HTTP/1.x on `listener` until `shutdown`:
/// each connection sends one `GET` and gets the answer of
/// [`Metrics::service`] (JSON or OpenMetrics text, by `Accept` or path),
/// then the connection closes. At most [`STATUS_MAX_CONNECTIONS`] at once;
/// a request head must arrive within 5 seconds and fit in 8 KiB (else 400).
///
/// Meant for a loopback or internal address that a monitoring system
/// scrapes: it answers anyone who connects.
pub async fn serve_status(
    listener: Listener,
    metrics: Metrics,
    shutdown: Shutdown,
) -> io::Result<()> {
    let service = metrics.service();
    serve(
        listener,
        STATUS_MAX_CONNECTIONS,
        shutdown,
        Refusal::close(),
        move |conn| {
            let service = service.clone();
            async move {
                let mut stream = conn.stream;
                if let Err(e) = answer(&mut stream, &service).await {
                    tracing::debug!(error = %e, "status request failed");
                }
            }
        },
    )
    .await
}

/// Runs `serving` next to a status listener on `status` (when given)
/// serving `metrics`; both stop with `shutdown`. The status address is
/// opened first, so a bad one fails at once. What the servers' `run` does
/// with their `status_addr` setting.
pub async fn with_status<F>(
    serving: F,
    status: Option<(&ListenAddr, Metrics)>,
    limits: &Limits,
    shutdown: &Shutdown,
) -> io::Result<()>
where
    F: Future<Output = io::Result<()>>,
{
    let Some((addr, metrics)) = status else {
        return serving.await;
    };
    let listener = super::run::listen(addr, limits).await?;
    tracing::info!("status page listening on {}", listener.local_addr_string());
    let status = tokio::spawn(serve_status(listener, metrics, shutdown.clone()));
    let result = serving.await;
    // Serving ended (on shutdown, or with an error): stop the status page.
    shutdown.trigger();
    let _ = status.await;
    result
}

async fn answer(stream: &mut super::Stream, service: &MetricsService) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(1024);
    let read_head = async {
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD {
                return Ok(true);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok::<_, io::Error>(false);
            }
        }
    };
    let complete = match tokio::time::timeout(HEAD_TIME, read_head).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let request = match parsed.parse(&buf) {
        Ok(httparse::Status::Complete(_)) if complete => {
            let mut req = Request::builder()
                .method(parsed.method.unwrap_or("GET"))
                .uri(parsed.path.unwrap_or("/"));
            for h in parsed.headers.iter() {
                req = req.header(h.name, h.value);
            }
            req.body(()).ok()
        }
        _ => None,
    };
    let res = match &request {
        Some(req) => service.respond(req),
        None => {
            let mut res = http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"Bad Request\n"),
            ));
            *res.status_mut() = http::StatusCode::BAD_REQUEST;
            res
        }
    };
    let (mut parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let head_only = request
        .as_ref()
        .is_some_and(|r| r.method() == http::Method::HEAD);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, body.len().into());
    parts.headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    let mut out = BytesMut::new();
    crate::head::encode_origin(
        &mut out,
        Version::HTTP_11,
        parts.status,
        None,
        &parts.headers,
        None,
    );
    if !head_only {
        out.extend_from_slice(&body);
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn answers_json_and_openmetrics_then_stops() {
        let metrics = Metrics::new();
        metrics.failure(crate::Failure::Timeout);
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr_string();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(serve_status(listener, metrics, shutdown.clone()));
        let get = |req: &'static str| {
            let addr = addr.clone();
            async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(req.as_bytes()).await.unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).await.unwrap();
                out
            }
        };
        let json = get("GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(json.starts_with("HTTP/1.1 200 OK\r\n"), "{json}");
        assert!(
            json.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{json}"
        );
        assert!(json.contains("\"timeout\":1"), "{json}");
        let om = get("GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        let head = get("HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let bad = get("NOT HTTP\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        shutdown.trigger();
        task.await.unwrap().unwrap();
    }
}

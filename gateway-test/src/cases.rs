//! Cases every interop suite runs behind every front end, whatever the
//! protocol between the web server and the application: a chunked upload,
//! a streamed response, a large download, HEAD, many slow requests at
//! once, and the server's status page and metrics.
//!
//! Each case takes a [`Setup`] (a running web server with the conformance
//! application behind it) and panics with the server's logs when the
//! outcome differs from what is expected.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http_client::{Arrivals, Completion, Request, Response};

/// How many requests [`concurrent_slow`] sends at once.
pub const SLOW_REQUESTS: usize = 40;

/// An 8 MiB download: [`download`]'s usual size.
pub const DOWNLOAD_LEN: u64 = 8 << 20;

/// A running web server in front of the conformance application.
pub trait Setup {
    /// Where clients connect.
    fn addr(&self) -> SocketAddr;

    /// The request target for `path_and_query` under the mount prefix.
    fn target(&self, path_and_query: &str) -> String;

    /// A name for messages.
    fn label(&self) -> String;

    /// What the processes logged so far, for failure messages.
    fn logs(&self) -> String;
}

/// Panics with `message` and the logs of `setup`.
pub fn fail(setup: &dyn Setup, message: &str) -> ! {
    panic!("{}: {message}\n{}", setup.label(), setup.logs())
}

/// Sends `request`, failing with the logs if it cannot be sent.
pub fn send(setup: &dyn Setup, request: &Request) -> Response {
    request.send(setup.addr()).unwrap_or_else(|e| {
        fail(
            setup,
            &format!("{} {} failed: {e}", request.method(), request.target()),
        )
    })
}

/// Checks a 200 whose body arrived whole.
pub fn expect_ok(setup: &dyn Setup, r: &Response, what: &str) {
    if r.status != 200 || r.completion != Completion::Complete {
        fail(
            setup,
            &format!(
                "{what}: status {}, {:?}, {:?}, body {:?}",
                r.status,
                r.framing,
                r.completion,
                preview(&r.body)
            ),
        );
    }
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body.get(..200).unwrap_or(body));
    if body.len() > 200 {
        format!("{text}... ({} bytes)", body.len())
    } else {
        text.into_owned()
    }
}

/// `len` bytes with no repeating pattern (xorshift), so a lost, doubled or
/// reordered block shows.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// `body` in the chunked transfer coding, in chunks of `piece` bytes (and a
/// short one first, so that chunk boundaries fall at odd places).
pub fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / piece.max(1) * 8 + 64);
    let (first, rest) = body.split_at(body.len().min(7));
    for part in std::iter::once(first).chain(rest.chunks(piece.max(1))) {
        if part.is_empty() {
            continue;
        }
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// POSTs `body` to `path` chunked (no Content-Length) and returns the
/// response.
pub fn send_chunked(setup: &dyn Setup, path: &str, body: &[u8]) -> Response {
    send(
        setup,
        &Request::new("POST", &setup.target(path))
            .header("Content-Type", "application/octet-stream")
            .header("Transfer-Encoding", "chunked")
            .body(chunked(body, 65_000)),
    )
}

/// A chunked upload of `len` bytes to `/echo` comes back whole.
pub fn chunked_upload(setup: &dyn Setup, len: usize) {
    let body = pattern(len);
    let r = send_chunked(setup, "/echo", &body);
    expect_ok(setup, &r, &format!("chunked upload of {len} bytes"));
    if r.body.len() != body.len() {
        fail(
            setup,
            &format!(
                "chunked upload: {} bytes sent, {} echoed",
                body.len(),
                r.body.len()
            ),
        );
    }
    if let Some(at) = r.body.iter().zip(&body).position(|(a, b)| a != b) {
        fail(setup, &format!("chunked upload: echo differs at byte {at}"));
    }
}

/// A chunked upload of `len` bytes is refused with `status` (a server that
/// cannot pass a body of unknown length on).
pub fn chunked_upload_refused(setup: &dyn Setup, len: usize, status: u16) {
    let r = send_chunked(setup, "/echo", &pattern(len));
    if r.status != status {
        fail(
            setup,
            &format!(
                "chunked upload of {len} bytes: expected {status}, got {} {:?}",
                r.status,
                preview(&r.body)
            ),
        );
    }
}

/// What `/environ` shows of a chunked upload of `len` bytes: the
/// `CONTENT_LENGTH` the server sent (`None` when absent) and the body length
/// the application read. (Servers that stream a large body may still send
/// the length of one that fits in their first read.)
pub fn chunked_environ(setup: &dyn Setup, len: usize) -> (Option<String>, u64) {
    let r = send_chunked(setup, "/environ", &pattern(len));
    expect_ok(setup, &r, "chunked POST /environ");
    let doc = r
        .json()
        .unwrap_or_else(|e| fail(setup, &format!("/environ: not JSON ({e})")));
    let length = doc["environ"]["CONTENT_LENGTH"].as_str().map(str::to_owned);
    let read = doc["body_len"].as_u64().unwrap_or(u64::MAX);
    (length, read)
}

/// When the parts of a streamed response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTiming {
    /// The first byte after the head.
    pub first: Duration,
    /// The last byte.
    pub last: Duration,
}

/// GETs `/stream` with `chunks` chunks of `size` bytes, `delay` apart,
/// checks the body arrived whole, and says when its first and last bytes
/// came.
pub fn stream(setup: &dyn Setup, chunks: u64, size: usize, delay: Duration) -> StreamTiming {
    let path = format!(
        "/stream?chunks={chunks}&size={size}&delay_ms={}",
        delay.as_millis()
    );
    let (r, arrivals): (Response, Arrivals) = Request::new("GET", &setup.target(&path))
        .send_timed(setup.addr())
        .unwrap_or_else(|e| fail(setup, &format!("GET {path}: {e}")));
    expect_ok(setup, &r, &path);
    let expected = chunks as usize * size;
    if r.body.len() != expected || r.body.iter().any(|&b| b != b'x') {
        fail(
            setup,
            &format!(
                "{path}: {} bytes, expected {expected} bytes of x",
                r.body.len()
            ),
        );
    }
    match (arrivals.first_after_head(), arrivals.last()) {
        (Some(first), Some(last)) => StreamTiming { first, last },
        _ => fail(setup, &format!("{path}: no body arrived: {arrivals:?}")),
    }
}

/// A streamed response (4 chunks of `size` bytes, 400 ms apart) reaches the
/// client as it is produced: its first body bytes arrive at least one pause
/// before its last.
pub fn streamed_response(setup: &dyn Setup, size: usize) -> StreamTiming {
    let delay = Duration::from_millis(400);
    let t = stream(setup, 4, size, delay);
    if t.first + delay > t.last {
        fail(
            setup,
            &format!(
                "4 chunks of {size} bytes {delay:?} apart arrived together: first byte after \
                 {:?}, last after {:?}",
                t.first, t.last
            ),
        );
    }
    t
}

/// A streamed response of 4 small chunks 400 ms apart is held by the
/// server and arrives in one piece when the application has finished (what
/// a server that buffers the response does).
pub fn held_response(setup: &dyn Setup, size: usize) -> StreamTiming {
    let delay = Duration::from_millis(400);
    let t = stream(setup, 4, size, delay);
    if t.first < delay * 5 / 2 {
        fail(
            setup,
            &format!(
                "4 chunks of {size} bytes {delay:?} apart: expected the server to hold them \
                 until the end, but the first body byte came after {:?} (last {:?})",
                t.first, t.last
            ),
        );
    }
    t
}

/// A download of `len` bytes (`/bytes`) arrives whole and intact.
pub fn download(setup: &dyn Setup, len: u64) {
    let r = send(
        setup,
        &Request::new("GET", &setup.target(&format!("/bytes?n={len}"))),
    );
    expect_ok(setup, &r, &format!("GET /bytes?n={len}"));
    if r.body.len() as u64 != len {
        fail(setup, &format!("download: {} bytes of {len}", r.body.len()));
    }
    if let Some(at) = r.body.iter().position(|&b| b != b'x') {
        fail(setup, &format!("download: wrong byte at {at}"));
    }
}

/// HEAD gets the status and headers of GET and no body.
pub fn head(setup: &dyn Setup) {
    let r = send(setup, &Request::new("HEAD", &setup.target("/hello")));
    if r.status != 200 {
        fail(setup, &format!("HEAD /hello: status {}", r.status));
    }
    if r.header("content-type") != Some("text/plain") {
        fail(
            setup,
            &format!("HEAD /hello: content-type {:?}", r.header("content-type")),
        );
    }
    if !r.body.is_empty() || !r.excess.is_empty() {
        fail(
            setup,
            &format!(
                "HEAD /hello: bytes after the head: {:?}",
                preview(&[r.body.as_slice(), r.excess.as_slice()].concat())
            ),
        );
    }
    if let Some(length) = r.header("content-length")
        && length != "14"
    {
        fail(
            setup,
            &format!("HEAD /hello: Content-Length {length}, GET has 14"),
        );
    }
}

/// Sends [`SLOW_REQUESTS`] requests at once, each answered after `delay`
/// (`/sleep`); every one must succeed. Returns how long they took together.
pub fn concurrent_slow(setup: &dyn Setup, delay: Duration) -> Duration {
    try_concurrent_slow(setup, delay).unwrap_or_else(|e| fail(setup, &e))
}

/// [`concurrent_slow`], with the failures as an error instead of a panic.
pub fn try_concurrent_slow(setup: &dyn Setup, delay: Duration) -> Result<Duration, String> {
    let addr = setup.addr();
    let target = setup.target(&format!("/sleep?ms={}", delay.as_millis()));
    let started = Instant::now();
    let results: Vec<Result<Response, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..SLOW_REQUESTS)
            .map(|_| {
                let target = target.clone();
                scope.spawn(move || {
                    Request::new("GET", &target)
                        .send(addr)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("client thread panicked".to_owned()))
            })
            .collect()
    });
    let took = started.elapsed();
    let bad: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(r) if r.status == 200 && r.body == b"done" && r.completion.is_complete() => None,
            Ok(r) => Some(format!("{} {:?}", r.status, preview(&r.body))),
            Err(e) => Some(e.clone()),
        })
        .collect();
    if bad.is_empty() {
        Ok(took)
    } else {
        Err(format!(
            "{} of {SLOW_REQUESTS} concurrent requests failed (first: {:?})",
            bad.len(),
            bad.first()
        ))
    }
}

/// The server's metrics, fetched through the web server: the requests sent
/// before are counted by status class and the application error by kind,
/// as OpenMetrics text at `/_gateway/metrics` and JSON at
/// `/_gateway/status`. Needs a fresh server (nothing counted before).
///
/// A request is counted once its response is finished on the server's side,
/// which can be a moment after a web server has passed the response on, so
/// the metrics are fetched until the counts arrive (for a few seconds), and
/// the earlier fetches may or may not be counted yet.
pub fn metrics(setup: &dyn Setup) {
    let get = |path: &str| send(setup, &Request::new("GET", &setup.target(path)));
    for _ in 0..5 {
        expect_ok(setup, &get("/hello"), "/hello");
    }
    for (path, status) in [("/error/before", 500), ("/status/404", 404)] {
        let r = get(path);
        if r.status != status {
            fail(
                setup,
                &format!("{path}: status {}, expected {status}", r.status),
            );
        }
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fetches = 0;
    let text = loop {
        fetches += 1;
        let r = get("/_gateway/metrics");
        expect_ok(setup, &r, "/_gateway/metrics");
        let content_type = r.header("content-type");
        if !content_type.is_some_and(|t| t.starts_with("application/openmetrics-text")) {
            fail(setup, &format!("metrics content type: {content_type:?}"));
        }
        let text = r.text();
        if !text.ends_with("# EOF\n") {
            fail(setup, &format!("no # EOF at the end:\n{text}"));
        }
        let settled = [
            "gateway_requests_total{status=\"4xx\"} 1",
            "gateway_requests_total{status=\"5xx\"} 1",
            "gateway_failures_total{kind=\"app_error\"} 1",
        ]
        .iter()
        .all(|line| text.lines().any(|l| l == *line))
            && sample(setup, &text, "gateway_requests_total{status=\"2xx\"}") >= 5;
        if settled {
            break text;
        }
        if Instant::now() > deadline {
            fail(setup, &format!("the requests were not counted:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Earlier fetches of the metrics may be counted, this one is in flight.
    let earlier = fetches - 1;
    let within = |name: &str, low: u64, high: u64| {
        let got = sample(setup, &text, name);
        if !(low..=high).contains(&got) {
            fail(setup, &format!("{name}: {got}, expected {low} to {high}"));
        }
    };
    within("gateway_requests_total{status=\"2xx\"}", 5, 5 + earlier);
    within("gateway_requests_in_flight", 1, 1 + earlier);
    within("gateway_connections_accepted_total", 1, u64::MAX);
    within("gateway_response_body_bytes_total", 5 * 14, u64::MAX);

    let r = get("/_gateway/status");
    expect_ok(setup, &r, "/_gateway/status");
    let doc = r
        .json()
        .unwrap_or_else(|e| fail(setup, &format!("status is not JSON ({e}): {}", r.text())));
    // Every metrics fetch may be counted by now.
    for (what, got, low, high) in [
        (
            "requests",
            doc["requests"]["total"].as_u64(),
            7,
            7 + fetches,
        ),
        (
            "2xx",
            doc["requests"]["by_status"]["2xx"].as_u64(),
            5,
            5 + fetches,
        ),
        ("app errors", doc["failures"]["app_error"].as_u64(), 1, 1),
    ] {
        if !got.is_some_and(|n| (low..=high).contains(&n)) {
            fail(
                setup,
                &format!("{what} in the status: {got:?}, expected {low} to {high}"),
            );
        }
    }
}

/// The value of the sample `name` (with its labels) in OpenMetrics `text`.
fn sample(setup: &dyn Setup, text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| fail(setup, &format!("no sample {name} in:\n{text}")))
}

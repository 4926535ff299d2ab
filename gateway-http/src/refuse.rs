//! The answer to a connection past `Limits::max_connections`: a clean
//! "busy" at once, instead of a bare close or a wait in the listen backlog.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gateway_core::server::{Refusal, Stream, linger_close};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::h2streams::PREFACE;

/// How long a refused connection is read for the start of its request.
const READ_TIME: Duration = Duration::from_secs(1);
/// The most bytes read from a refused connection before it is answered.
const READ_MAX: usize = 8 * 1024;
/// The body of the 503.
const BUSY: &str = "Service Unavailable: the server is at its connection limit; retry shortly.\n";
/// HTTP/2's REFUSED_STREAM error code: no request was processed, so the
/// client may retry all of them.
const REFUSED_STREAM: u32 = 0x7;

/// The answers, made once per server.
#[derive(Clone)]
struct Answers {
    /// The 503 with its body.
    http1: Bytes,
    /// The 503's head alone (for a HEAD request).
    http1_head: Bytes,
    /// An empty SETTINGS frame and a GOAWAY.
    http2: Bytes,
}

/// The refusal of an HTTP server: reads what the client sends for up to
/// [`READ_TIME`] and [`READ_MAX`] bytes, enough for a request head, then
/// answers
///
/// - an HTTP/2 prior-knowledge client (its preface) with an empty SETTINGS
///   frame and a GOAWAY with last stream 0 and REFUSED_STREAM: nothing was
///   processed, so every request can safely be retried elsewhere or later;
/// - anyone else with `503 Service Unavailable`, `Retry-After: 1` and
///   `Connection: close` (no body for a HEAD request);
///
/// then closes with a lingering close, so a request body the client is
/// still sending cannot turn the close into a reset that destroys the
/// answer. Each step is bounded (the reads by `READ_TIME`, the write by
/// `write_timeout`, the lingering close by the core's limits); the core's
/// accept loop also bounds the whole refusal by `Refusal::TIME_LIMIT`.
#[derive(Clone)]
pub(crate) struct Refuser {
    answers: Answers,
    write_timeout: Duration,
    metrics: Option<gateway_core::Metrics>,
}

impl Refuser {
    pub(crate) fn new(
        server_software: Option<&Bytes>,
        write_timeout: Duration,
        metrics: Option<gateway_core::Metrics>,
    ) -> Self {
        Self {
            answers: answers(server_software),
            write_timeout,
            metrics,
        }
    }

    /// Answers `stream` busy and closes it.
    pub(crate) async fn refuse(&self, stream: Stream) {
        gateway_core::metrics::note(self.metrics.as_ref(), gateway_core::Failure::Refused);
        refuse(stream, &self.answers, self.write_timeout).await;
    }

    /// The refusal for the core's accept loop.
    pub(crate) fn refusal(&self) -> Refusal {
        let this = self.clone();
        Refusal::new(move |stream| {
            let this = this.clone();
            async move { this.refuse(stream).await }
        })
    }
}

fn answers(server_software: Option<&Bytes>) -> Answers {
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(b"HTTP/1.1 503 Service Unavailable\r\n");
    if let Some(s) = server_software {
        head.put_slice(b"Server: ");
        head.put_slice(s);
        head.put_slice(b"\r\n");
    }
    head.put_slice(b"Retry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\n");
    head.put_slice(format!("Content-Length: {}\r\n\r\n", BUSY.len()).as_bytes());
    let head_len = head.len();
    head.put_slice(BUSY.as_bytes());
    let http1 = head.freeze();

    let debug = b"connection limit reached";
    let mut h2 = BytesMut::with_capacity(9 + 9 + 8 + debug.len());
    // SETTINGS, empty: the server's side of the connection preface.
    h2.put_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // GOAWAY on stream 0.
    let len = 8 + debug.len();
    h2.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0]);
    h2.put_u32(0);
    h2.put_u32(0); // last stream id: none processed
    h2.put_u32(REFUSED_STREAM);
    h2.put_slice(debug);

    Answers {
        http1_head: http1.slice(..head_len),
        http1,
        http2: h2.freeze(),
    }
}

/// What the client sent, as far as the answer goes.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Not enough to tell yet.
    More,
    /// The HTTP/2 preface.
    Http2,
    /// An HTTP/1 request head (or something else): a HEAD request or not.
    Http1 { head: bool },
}

fn classify(got: &[u8], finished: bool) -> Seen {
    if got.starts_with(PREFACE) {
        return Seen::Http2;
    }
    let maybe_h2 = !got.is_empty() && PREFACE.starts_with(got);
    if finished && maybe_h2 {
        return Seen::Http2;
    }
    let complete = got.windows(4).any(|w| w == b"\r\n\r\n") || got.windows(2).any(|w| w == b"\n\n");
    if finished || (complete && !maybe_h2) {
        return Seen::Http1 {
            head: got.starts_with(b"HEAD "),
        };
    }
    Seen::More
}

async fn refuse(mut stream: Stream, answers: &Answers, write_timeout: Duration) {
    let deadline = Instant::now() + READ_TIME;
    let mut buf = vec![0u8; READ_MAX];
    let mut n = 0;
    let seen = loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf[n..])).await;
        let finished = match read {
            Ok(Ok(0)) if n == 0 => return, // gone without a word
            Ok(Ok(0)) | Err(_) => true,
            Ok(Ok(k)) => {
                n += k;
                n == buf.len()
            }
            Ok(Err(_)) => return,
        };
        match classify(&buf[..n], finished) {
            Seen::More => continue,
            seen => break seen,
        }
    };
    let answer = match seen {
        Seen::Http2 => &answers.http2,
        Seen::Http1 { head: true } => &answers.http1_head,
        Seen::Http1 { head: false } | Seen::More => &answers.http1,
    };
    tracing::debug!("at the connection limit; answered busy");
    let written = tokio::time::timeout(write_timeout, stream.write_all(answer)).await;
    if matches!(written, Ok(Ok(()))) {
        linger_close(stream, write_timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_requests_apart() {
        assert_eq!(classify(b"", false), Seen::More);
        assert_eq!(classify(b"PRI * HT", false), Seen::More);
        assert_eq!(classify(b"PRI * HT", true), Seen::Http2);
        assert_eq!(classify(PREFACE, false), Seen::Http2);
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: x\r\n", false),
            Seen::More
        );
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
            Seen::Http1 { head: false }
        );
        assert_eq!(
            classify(b"HEAD / HTTP/1.0\n\n", false),
            Seen::Http1 { head: true }
        );
        assert_eq!(classify(b"", true), Seen::Http1 { head: false });
    }

    #[test]
    fn answers_are_well_formed() {
        let a = answers(Some(&Bytes::from_static(b"test/1")));
        let text = String::from_utf8(a.http1.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(head.contains("\r\nServer: test/1\r\n"));
        assert_eq!(&a.http1_head[..], format!("{head}\r\n\r\n").as_bytes());
        // SETTINGS (9 bytes), then GOAWAY whose length covers its payload.
        let goaway = &a.http2[9..];
        let len = usize::from(goaway[2]);
        assert_eq!(goaway.len(), 9 + len);
        assert_eq!(goaway[3], 0x7);
    }
}

//! A small blocking HTTP/1.1 client for tests.
//!
//! It sends a request exactly as given (the request target is never
//! normalised, so `%2F` and `..` reach the server untouched), reads the
//! response until the server closes the connection, and reports how the body
//! ended: a chunked body is complete only when its last chunk was seen, a
//! `Content-Length` body only when that many bytes arrived. A body cut short
//! by the server is reported as [`Completion::Truncated`], never hidden.
//!
//! ```no_run
//! use gateway_test::http_client::Request;
//!
//! let addr = "127.0.0.1:8080".parse().unwrap();
//! let response = Request::new("GET", "/cgi/conformance/hello").send(addr).unwrap();
//! assert_eq!(response.status, 200);
//! assert!(response.completion.is_complete());
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod parse;

pub use parse::{Completion, Framing, ParseError, parse_cgi_output, parse_response};

/// The JSON value [`Response::json`] returns (serde_json's), re-exported so
/// that tests need no JSON dependency of their own.
pub use serde_json::Value as JsonValue;

/// How long one read or write on the connection may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The most response bytes [`Request::send`] accepts, a guard against a
/// server that never stops sending.
pub const MAX_RESPONSE_LEN: usize = 256 << 20;

/// A request to send.
///
/// Unless the request sets them itself, `Host`, `Connection: close` and (when
/// there is a body, or the method is POST or PUT) `Content-Length` are added.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with `method` and `target` sent verbatim in the request line.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target, as sent in the request line.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Adds a header line; the value is sent as raw bytes.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The request's bytes as they go on the wire, with the default headers
    /// added for a server at `addr`.
    pub fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, self.target).as_bytes());
        if !has("host") {
            out.extend_from_slice(format!("Host: {addr}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let wants_length = !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT");
        if wants_length && !has("content-length") && !has("transfer-encoding") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        if !has("connection") {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sends the request to `addr` and reads the response to the end.
    pub fn send(&self, addr: SocketAddr) -> io::Result<Response> {
        let raw = exchange(addr, &self.to_bytes(addr))?;
        self.parse(&raw)
    }

    /// As [`send`](Self::send), and also says when each part of the
    /// response arrived: whether a streamed response came piece by piece.
    pub fn send_timed(&self, addr: SocketAddr) -> io::Result<(Response, Arrivals)> {
        let mut arrivals = Arrivals::default();
        let raw = exchange_with(addr, &self.to_bytes(addr), Some(&mut arrivals))?;
        arrivals.head_len = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| at + 4);
        Ok((self.parse(&raw)?, arrivals))
    }

    fn parse(&self, raw: &[u8]) -> io::Result<Response> {
        parse_response(raw, self.method == "HEAD").map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{e}; response bytes: {:?}", String::from_utf8_lossy(raw)),
            )
        })
    }
}

/// When the bytes of a response arrived ([`Request::send_timed`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// One entry per read that returned data: the time since the connection
    /// was opened, and how many response bytes had arrived by then in all.
    pub reads: Vec<(Duration, usize)>,
    /// The length of the response head, blank line included, when it
    /// arrived whole.
    pub head_len: Option<usize>,
}

impl Arrivals {
    /// When the first byte after the head arrived (for a chunked body, the
    /// first chunk's size line).
    pub fn first_after_head(&self) -> Option<Duration> {
        let head = self.head_len?;
        self.reads
            .iter()
            .find(|(_, total)| *total > head)
            .map(|(at, _)| *at)
    }

    /// When the last byte arrived.
    pub fn last(&self) -> Option<Duration> {
        self.reads.last().map(|(at, _)| *at)
    }
}

/// Writes `request` to a new connection to `addr` and returns every byte the
/// server sent until it closed the connection.
///
/// The request is written from a second thread while the response is read,
/// so a server that answers before it has read the whole body cannot
/// deadlock the client. A failed write (the server closed early) is not an
/// error: what the server answered is still returned.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    exchange_with(addr, request, None)
}

/// [`exchange`], noting in `arrivals` when each read returned.
fn exchange_with(
    addr: SocketAddr,
    request: &[u8],
    arrivals: Option<&mut Arrivals>,
) -> io::Result<Vec<u8>> {
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = stream;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // An error here means the server stopped reading; the response
            // says why. The write side is not shut down afterwards: nginx
            // takes a half-closed connection for a client that went away.
            let _ = writer.write_all(request).and_then(|()| writer.flush()).ok();
        });
        let result = read_to_close(&mut reader, start, arrivals);
        // Unblock the writer if the server stopped reading.
        let _ = reader.shutdown(Shutdown::Both).ok();
        result
    })
}

fn read_to_close(
    stream: &mut TcpStream,
    start: Instant,
    mut arrivals: Option<&mut Arrivals>,
) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => {
                raw.extend_from_slice(buf.get(..n).unwrap_or_default());
                if let Some(a) = arrivals.as_deref_mut() {
                    a.reads.push((start.elapsed(), raw.len()));
                }
                if raw.len() > MAX_RESPONSE_LEN {
                    return Err(io::Error::other("response larger than MAX_RESPONSE_LEN"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset after some bytes arrived is how a server aborts a
            // response; keep what came so the caller sees a truncated body.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => {
                return Ok(raw);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no response byte for {IO_TIMEOUT:?}; received so far: {:?}",
                        String::from_utf8_lossy(&raw)
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The protocol of the status line (`HTTP/1.1`), or `CGI` for CGI output.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    /// The header fields in the order received, names and values as sent
    /// (bytes decoded as ISO-8859-1, so nothing is lost).
    pub headers: Vec<(String, String)>,
    /// The body, with any chunked transfer coding removed.
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// How the body was delimited.
    pub framing: Framing,
    /// Whether the body arrived whole.
    pub completion: Completion,
    /// Bytes received after the end of the framed body (should be none).
    pub excess: Vec<u8>,
}

impl Response {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy UTF-8), for messages and comparisons.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<JsonValue, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn request_bytes_keep_target_and_add_defaults() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let bytes = Request::new("POST", "/a/../b%2Fc?x=%20")
            .header("X-One", "1")
            .body("hi")
            .to_bytes(addr);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /a/../b%2Fc?x=%20 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-One: 1\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
    }

    #[test]
    fn request_bytes_respect_given_headers() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let bytes = Request::new("GET", "*")
            .header("host", "example")
            .header("connection", "keep-alive")
            .to_bytes(addr);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "GET * HTTP/1.1\r\nhost: example\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    /// A loopback server that records the request and answers with `reply`.
    fn serve_once(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert_ne!(n, 0, "client closed before the end of the head");
                seen.extend_from_slice(&buf[..n]);
            }
            conn.write_all(reply).unwrap();
            seen
        });
        (addr, handle)
    }

    #[test]
    fn send_round_trip_over_loopback() {
        let (addr, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        let response = Request::new("GET", "/x%2Fy").send(addr).unwrap();
        let seen = server.join().unwrap();
        assert!(seen.starts_with(b"GET /x%2Fy HTTP/1.1\r\n"));
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"abc");
        assert_eq!(response.completion, Completion::Complete);
    }

    #[test]
    fn send_timed_says_when_the_body_came() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            conn.write_all(b"abc").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            conn.write_all(b"def").unwrap();
        });
        let (response, arrivals) = Request::new("GET", "/").send_timed(addr).unwrap();
        server.join().unwrap();
        assert_eq!(response.body, b"abcdef");
        assert_eq!(arrivals.head_len, Some(38));
        let first = arrivals.first_after_head().unwrap();
        let last = arrivals.last().unwrap();
        assert!(first >= Duration::from_millis(250), "{arrivals:?}");
        assert!(last >= first + Duration::from_millis(250), "{arrivals:?}");
    }

    #[test]
    fn send_reports_truncation_when_server_closes_early() {
        let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        let response = Request::new("GET", "/").send(addr).unwrap();
        server.join().unwrap();
        assert_eq!(response.body, b"abc");
        assert_eq!(response.completion, Completion::Truncated);
    }
}

//! A minimal FastCGI web-server side for the server tests: writes records,
//! reads records back, and a few test applications.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::{AppBody, Application, Body};
use gateway_fastcgi::proto::{self, Record, RecordType};
use gateway_fastcgi::{Connections, Dispatch, Server};
use http::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

pub const RESPONDER: u16 = 1;
pub const AUTHORIZER: u16 = 2;
pub const FILTER: u16 = 3;
pub const KEEP_CONN: u8 = 1;

/// The web server's end of a connection.
pub struct Client<T> {
    pub io: T,
    buf: BytesMut,
}

/// Serves an in-memory connection with `conns`; the web server's end.
pub fn connect<S, B>(conns: &Connections<S, B>) -> Client<DuplexStream>
where
    S: Application<B>,
    B: AppBody,
{
    let (a, b) = tokio::io::duplex(256 * 1024);
    tokio::spawn(conns.serve_io(b, None));
    Client::new(a)
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    pub fn new(io: T) -> Self {
        Client {
            io,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// BEGIN_REQUEST, PARAMS (with their end) in one write.
    pub async fn begin(&mut self, id: u16, role: u16, flags: u8, params: &[(&str, &str)]) {
        let mut w = BytesMut::new();
        proto::encode_begin_request(&mut w, id, role, flags);
        proto::encode_params(&mut w, id, params.iter().copied()).unwrap();
        self.send(&w).await;
    }

    /// Stream data, then (if `end`) the end marker.
    pub async fn stream(&mut self, t: RecordType, id: u16, data: &[u8], end: bool) {
        let mut w = BytesMut::new();
        proto::encode_stream(&mut w, t, id, data);
        if end {
            proto::encode_stream_end(&mut w, t, id);
        }
        self.send(&w).await;
    }

    /// The next record, or `None` at end of file. Panics after 10 s.
    pub async fn record(&mut self) -> Option<Record> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(r) = proto::decode(&mut self.buf).unwrap() {
                    return Some(r);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    assert!(self.buf.is_empty(), "connection closed mid-record");
                    return None;
                }
            }
        })
        .await
        .expect("no record within 10 s")
    }

    /// Raw bytes of the next read (for checking the framing).
    pub async fn raw_until_close(&mut self) -> BytesMut {
        let mut all = std::mem::take(&mut self.buf);
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.io.read_buf(&mut all).await.unwrap_or(0) > 0 {}
        })
        .await
        .expect("connection not closed within 10 s");
        all
    }

    /// Reads request `id`'s response up to its END_REQUEST: (stdout, stderr,
    /// appStatus, protocolStatus). Records of other requests are kept aside
    /// in `others`.
    pub async fn response(&mut self, id: u16) -> Response_ {
        let mut r = Response_::default();
        loop {
            let rec = self
                .record()
                .await
                .expect("connection closed before END_REQUEST");
            assert_eq!(rec.request_id, id, "record for another request: {rec:?}");
            match rec.record_type {
                RecordType::Stdout if rec.content.is_empty() => {
                    assert!(!r.stdout_ended, "second STDOUT end");
                    r.stdout_ended = true;
                }
                RecordType::Stdout => {
                    assert!(!r.stdout_ended, "STDOUT after its end");
                    r.stdout.extend_from_slice(&rec.content);
                    r.records += 1;
                }
                RecordType::Stderr if rec.content.is_empty() => r.stderr_ended = true,
                RecordType::Stderr => r.stderr.extend_from_slice(&rec.content),
                RecordType::EndRequest => {
                    let body = proto::EndRequestBody::parse(&rec.content).unwrap();
                    r.app_status = body.app_status;
                    r.protocol_status = body.protocol_status;
                    return r;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads to the end of the connection; the kind of the error that ended
    /// it, or `None` for an orderly end of file. Panics after 10 s.
    pub async fn read_error(&mut self) -> Option<std::io::ErrorKind> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => return Some(e.kind()),
                }
            }
        })
        .await
        .expect("connection not closed within 10 s")
    }

    /// Whether the server closed the connection (EOF within 5 s).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    /// Whether the connection stays open (nothing, not even EOF, for 200 ms).
    pub async fn stays_open(&mut self) -> bool {
        let mut b = [0u8; 64];
        tokio::time::timeout(Duration::from_millis(200), self.io.read(&mut b))
            .await
            .is_err()
    }
}

/// One request's response as the web server sees it.
#[derive(Debug, Default)]
pub struct Response_ {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_ended: bool,
    pub stderr_ended: bool,
    pub records: usize,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Response_ {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn body(&self) -> String {
        let t = self.text();
        t.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }
}

/// GET-style parameters for `uri`.
pub fn get(uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REQUEST_METHOD", "GET".into()),
        ("REQUEST_URI", uri.into()),
        ("SCRIPT_NAME", "".into()),
        ("PATH_INFO", uri.split('?').next().unwrap_or("").into()),
        (
            "QUERY_STRING",
            uri.split_once('?').map(|x| x.1).unwrap_or("").into(),
        ),
        ("SERVER_NAME", "localhost".into()),
        ("SERVER_PORT", "80".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("CONTENT_LENGTH", "".into()),
    ]
}

pub fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(n, s)| (*n, s.as_str())).collect()
}

/// Collects a body.
pub async fn read_body(body: Body) -> Result<Bytes, gateway_core::BoxError> {
    use http_body_util::BodyExt;
    Ok(body.collect().await?.to_bytes())
}

pub fn ok(body: impl Into<Body>) -> Response<Body> {
    Response::new(body.into())
}

/// A server with the defaults and `dispatch` as its strategy.
pub fn new_server(dispatch: Dispatch) -> Server {
    let mut server = Server::new();
    server.dispatch(dispatch);
    server
}

/// Turns each `async fn name(dispatch) { .. }` into a module `name` with
/// one test per dispatch strategy (`name::adaptive`, `name::in_task`,
/// `name::spawned`), each running the body with `dispatch` set to it.
macro_rules! per_dispatch {
    ($($(#[$m:meta])* async fn $name:ident($d:ident) $body:block)*) => {$(
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($d: gateway_fastcgi::Dispatch) $body

            #[tokio::test]
            async fn adaptive() {
                run(gateway_fastcgi::Dispatch::Adaptive).await
            }

            #[tokio::test]
            async fn in_task() {
                run(gateway_fastcgi::Dispatch::InTask).await
            }

            #[tokio::test]
            async fn spawned() {
                run(gateway_fastcgi::Dispatch::Spawned).await
            }
        }
    )*};
}

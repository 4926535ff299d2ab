//! A test application, a server on a loopback port, and a raw SCGI client.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway_core::server::{Listener, Shutdown};
use gateway_core::{Body, BoxError, Limits};
use gateway_scgi::Server;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The length of the `/big` response: more than loopback sockets buffer.
pub const BIG: usize = 48 << 20;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

/// Routes on the path:
/// - `/ignore`: answers `ignored` without reading the body;
/// - `/big`: answers [`BIG`] bytes;
/// - `/env`: the environ, `NAME=VALUE\n` per variable, raw bytes, in order;
/// - `/info`: the `GatewayInfo` flags;
/// - `/fail-after`: one chunk `partial`, then a body error;
/// - `/sleep`: waits 300 ms, then `slept`;
/// - anything else: reads the whole body and echoes it, or answers
///   `body error: ...` (status 200) when reading it fails.
pub async fn app(req: Request<Body>) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = match path.as_str() {
        "/ignore" => full("ignored"),
        "/big" => full(vec![b'b'; BIG]),
        "/env" => {
            let mut out = Vec::new();
            if let Some(env) =
                (req.extensions().get::<gateway_core::RequestContext>()).map(|cx| cx.environ())
            {
                for (n, v) in env.iter() {
                    out.extend_from_slice(n);
                    out.push(b'=');
                    out.extend_from_slice(v);
                    out.push(b'\n');
                }
            }
            full(out)
        }
        "/info" => {
            let info = (req.extensions().get::<gateway_core::RequestContext>())
                .map(|cx| cx.info().clone());
            full(match info {
                Some(i) => format!(
                    "{} multithread={} multiprocess={} run_once={} peer={:?} local={:?}",
                    i.protocol(),
                    i.multithread(),
                    i.multiprocess(),
                    i.run_once(),
                    i.peer_addr().map(|a| a.ip()),
                    i.local_addr().map(|a| a.ip()),
                ),
                None => "no info".to_owned(),
            })
        }
        "/fail-after" => {
            let chunks: Vec<Result<http_body::Frame<Bytes>, BoxError>> = vec![
                Ok(http_body::Frame::data(Bytes::from_static(b"partial"))),
                Err("the body failed".into()),
            ];
            StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync()
        }
        "/sleep" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            full("slept")
        }
        _ => match req.into_body().collect().await {
            Ok(b) => full(b.to_bytes()),
            Err(e) => full(format!("body error: {e}")),
        },
    };
    Ok(Response::new(body))
}

/// A running server on a loopback port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub task: JoinHandle<io::Result<()>>,
}

impl TestServer {
    pub async fn start(limits: Limits) -> TestServer {
        let mut server = Server::new();
        server.limits(limits);
        Self::start_with(server).await
    }

    pub async fn start_with(server: Server) -> TestServer {
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.tcp_addr().unwrap();
        let shutdown = server.shutdown_handle();
        let task =
            tokio::spawn(async move { server.serve(listener, tower::service_fn(app)).await });
        TestServer {
            addr,
            shutdown,
            task,
        }
    }
}

/// An SCGI request: `CONTENT_LENGTH` first, `SCGI=1`, then `pairs`.
pub fn request(pairs: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    let len = body.len().to_string();
    let all = [
        ("CONTENT_LENGTH", len.as_bytes()),
        ("SCGI", b"1".as_slice()),
    ];
    for (name, value) in all.iter().chain(pairs) {
        block.extend_from_slice(name.as_bytes());
        block.push(0);
        block.extend_from_slice(value);
        block.push(0);
    }
    let mut out = format!("{}:", block.len()).into_bytes();
    out.extend_from_slice(&block);
    out.push(b',');
    out.extend_from_slice(body);
    out
}

/// A GET-style request for `uri` with no body.
pub fn get(uri: &str) -> Vec<u8> {
    request(
        &[("REQUEST_METHOD", b"GET"), ("REQUEST_URI", uri.as_bytes())],
        b"",
    )
}

/// Writes `bytes` while reading the whole response (to the server's close).
/// The write side stays open, as web servers keep it.
pub async fn exchange(addr: SocketAddr, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut out)).await;
    let _keep = writer.await;
    match read {
        Ok(Ok(_)) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no end of response",
        )),
    }
}

/// Splits a CGI response into head text and body.
pub fn split(response: &[u8]) -> (String, Vec<u8>) {
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {:?}", String::from_utf8_lossy(response)));
    (
        String::from_utf8_lossy(&response[..at]).into_owned(),
        response[at + 4..].to_vec(),
    )
}

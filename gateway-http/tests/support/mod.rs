//! A test app, a server on a free port, and a raw TCP client.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway_core::server::{Listener, Shutdown};
use gateway_core::{Body, BoxError, Handler};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The server's default `Server` header and `SERVER_SOFTWARE`.
pub const SOFTWARE: &str = concat!("gateway-http/", env!("CARGO_PKG_VERSION"));

fn full(b: impl Into<Bytes>) -> TestBody {
    http_body_util::Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

fn chunks(items: Vec<Result<Bytes, BoxError>>) -> TestBody {
    let stream =
        futures_util::stream::iter(items.into_iter().map(|r| r.map(http_body::Frame::data)));
    StreamBody::new(stream).boxed_unsync()
}

/// The routes the tests use.
pub async fn app(req: Request<Body>) -> Result<Response<TestBody>, BoxError> {
    // Route on the decoded path, so `/%65nviron` and `/environ/%80` work.
    let env = req
        .extensions()
        .get::<gateway_core::RequestContext>()
        .map(|cx| cx.environ().clone())
        .unwrap_or_default();
    let path = String::from_utf8_lossy(env.path_info()).into_owned();
    let path = if path.starts_with("/environ") {
        "/environ".to_owned()
    } else {
        path
    };
    let text = |s: &'static str| {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(full(s))
    };
    let res = match path.as_str() {
        "/" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::DATE, "Mon, 05 Jun 2006 18:49:54 GMT")
            .body(full("Hello, world!"))?,
        "/environ" => {
            let mut out = Vec::new();
            for (k, v) in env.iter() {
                out.extend_from_slice(k);
                out.push(b'=');
                out.extend_from_slice(v);
                out.push(b'\n');
            }
            for v in req.headers().get_all("x-test-header") {
                out.extend_from_slice(b"header x-test-header: ");
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            }
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(full(out))?
        }
        "/echo" => {
            let body = req.into_body().collect().await?.to_bytes();
            Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(full(body))?
        }
        "/stream" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(chunks(vec![Ok("one,".into()), Ok("two".into())]))?,
        "/short" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::CONTENT_LENGTH, "10")
            .body(chunks(vec![Ok("12345".into())]))?,
        "/long" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::CONTENT_LENGTH, "3")
            .body(chunks(vec![Ok("12345".into())]))?,
        "/error-after" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(chunks(vec![Ok("partial".into()), Err("boom".into())]))?,
        "/error-before" => return Err("deliberate".into()),
        "/hop" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::CONNECTION, "close")
            .header("x-kept", "yes")
            .body(full("hop"))?,
        "/no-content" => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::CONTENT_LENGTH, "0")
            .body(full(""))?,
        "/not-modified" => Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(full(""))?,
        "/endless" => {
            // 64 KiB chunks for ever; counts in ENDLESS_DROPPED when the
            // server drops it.
            let guard = DropCounter;
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                let _ = &guard;
                Ok::<_, BoxError>(http_body::Frame::data(chunk.clone()))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(StreamBody::new(stream).boxed_unsync())?
        }
        "/late" => {
            // The second chunk comes after the head went out, and the body
            // ends in the same poll that yields it.
            let stream = futures_util::stream::unfold(0u8, |n| async move {
                match n {
                    0 => Some((
                        Ok::<_, BoxError>(http_body::Frame::data(Bytes::from("one,"))),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Some((Ok(http_body::Frame::data(Bytes::from("two"))), 2))
                    }
                    _ => None,
                }
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(StreamBody::new(stream).boxed_unsync())?
        }
        "/sleep" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            text("slept")?
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(full("not found"))?,
    };
    Ok(res)
}

/// How many `/endless` bodies were dropped.
pub static ENDLESS_DROPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct DropCounter;

impl Drop for DropCounter {
    fn drop(&mut self) {
        ENDLESS_DROPPED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the test app with `handler` on a free port.
pub async fn start_with(handler: Handler) -> Running {
    start_app(handler, |_| {}, tower::service_fn(app)).await
}

/// Starts `app` with `handler` on a free port, after `configure` had its
/// say on the server.
pub async fn start_app<S, B>(
    handler: Handler,
    configure: impl FnOnce(&mut gateway_http::Server),
    app: S,
) -> Running
where
    S: gateway_core::Application<B>,
    B: gateway_core::AppBody,
{
    let mut server = gateway_http::Server::new();
    server.handler(handler);
    configure(&mut server);
    start_server(server, app).await
}

/// Serves `app` with `server` on a free port, with a shutdown of its own
/// (2 s grace period).
pub async fn start_server<S, B>(mut server: gateway_http::Server, app: S) -> Running
where
    S: gateway_core::Application<B>,
    B: gateway_core::AppBody,
{
    let listener = Listener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.tcp_addr().expect("tcp address");
    let shutdown = Shutdown::new();
    server
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_secs(2));
    let task = tokio::spawn(async move { server.serve(listener, app).await });
    Running {
        addr,
        shutdown,
        task,
    }
}

/// A handler with `limits`.
pub fn handler(limits: gateway_core::Limits) -> Handler {
    Handler::builder().limits(limits).build()
}

/// Calls `signal` when dropped: tells a test that the server dropped (or
/// finished) an application's future or body.
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// An HTTP/2 frame: its 9-byte header, then the payload.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The HTTP/2 connection preface and an empty SETTINGS frame: what a
/// prior-knowledge client sends first.
pub fn h2_preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[]));
    out
}

/// Reads one HTTP/2 frame: (type, flags, stream, payload); `None` at the
/// end of the stream.
pub async fn read_h2_frame(s: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}

/// Starts the test app with the default server.
pub async fn start() -> Running {
    let mut limits = gateway_core::Limits::default();
    limits.head_read_timeout(Duration::from_secs(2));
    start_with(Handler::builder().limits(limits).build()).await
}

/// Sends `request` and reads until the server closes (at most 5 s).
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    read_to_close(&mut s).await
}

/// Reads until EOF or a reset (keeping what came), at most 5 s.
pub async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server did not close within 5 s; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// The response bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether the server still answers a plain request.
pub async fn still_serving(addr: SocketAddr) {
    let out = exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        text(&out).starts_with("HTTP/1.0 200 OK\r\n"),
        "server stopped serving: {:?}",
        text(&out)
    );
}

//! The server's public API: one source of limits (the handler), the
//! setters that change it, the grace period, `Connections` in an accept
//! loop of one's own, and the one-line `serve`.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use gateway_core::server::{self, Sniffed, sniff_stream};
use gateway_scgi::{Body, BoxError, Handler, Limits, Listener, PathView, Server};
use http::{Request, Response};
use support::{TestServer, exchange, get, request, split};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `/fail`: an application error before the head; anything else: the path
/// the application sees.
async fn path_or_fail(req: Request<Body>) -> Result<Response<String>, BoxError> {
    if req.uri().path() == "/fail" {
        return Err("the application failed".into());
    }
    Ok(Response::new(req.uri().path().to_owned()))
}

async fn start(server: Server) -> (std::net::SocketAddr, gateway_scgi::Shutdown) {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = server.shutdown_handle();
    tokio::spawn(async move {
        server
            .serve(listener, tower::service_fn(path_or_fail))
            .await
    });
    (addr, shutdown)
}

fn handler_with_error_page() -> Handler {
    Handler::builder().error_body("custom error page").build()
}

fn body_limit(max: u64) -> Limits {
    let mut limits = Limits::default();
    limits.max_body_len(Some(max));
    limits
}

#[tokio::test]
async fn limits_path_view_and_max_connections_keep_the_handler_settings() {
    let mut server = Server::new();
    server
        .handler(handler_with_error_page())
        .limits(body_limit(4))
        .path_view(PathView::Mount("/app".into()))
        .max_connections(8);
    let (addr, shutdown) = start(server).await;

    let out = exchange(addr, get("/fail")).await.unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("Status: 500"), "{head}");
    assert_eq!(body, b"custom error page");

    let big = request(&[("REQUEST_URI", b"/app/x")], b"too long");
    let out = exchange(addr, big).await.unwrap();
    assert!(
        out.starts_with(b"Status: 413"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );

    let out = exchange(addr, get("/app/users/1")).await.unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("Status: 200"), "{head}");
    assert_eq!(body, b"/users/1");
    shutdown.trigger();
}

#[tokio::test]
async fn a_handler_brings_its_own_limits() {
    let mut server = Server::new();
    server
        .limits(body_limit(4))
        .handler(handler_with_error_page());
    let (addr, shutdown) = start(server).await;
    // The handler's (default) limits replaced the earlier ones.
    let out = exchange(
        addr,
        request(&[("REQUEST_URI", b"/x")], b"longer than four"),
    )
    .await
    .unwrap();
    assert!(
        out.starts_with(b"Status: 200"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    shutdown.trigger();
}

#[tokio::test]
async fn max_connections_is_the_connection_cap() {
    let mut server = Server::new();
    server.max_connections(1);
    let server = TestServer::start_with(server).await;
    let _held = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = exchange(server.addr, get("/hello")).await.unwrap();
    let (head, _) = split(&out);
    assert!(head.starts_with("Status: 503"), "{head}");
    assert!(head.contains("Retry-After: 1"), "{head}");
}

#[tokio::test]
async fn the_grace_period_bounds_requests_in_flight() {
    let mut server = Server::new();
    server.grace_period(Duration::from_millis(50));
    let server = TestServer::start_with(server).await;
    let in_flight = tokio::spawn(exchange(server.addr, get("/sleep")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.shutdown.trigger();
    let served = tokio::time::timeout(Duration::from_secs(5), server.task).await;
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    // The 300 ms request was aborted at the end of the grace period.
    let out = in_flight.await.unwrap();
    assert!(!matches!(&out, Ok(b) if b.ends_with(b"slept")), "{out:?}");
}

/// The grace period is the deadline of the server's shutdown whichever is
/// set first, as on every server; a shutdown set with no grace period
/// keeps its own deadline.
#[tokio::test]
async fn the_grace_period_applies_to_a_shutdown_set_later() {
    let mut server = Server::new();
    server.grace_period(Duration::from_millis(50));
    let mut own = gateway_scgi::Shutdown::new();
    own.deadline(Duration::from_secs(7));
    server.shutdown(own.clone());
    assert_eq!(
        server.shutdown_handle().get_deadline(),
        Duration::from_millis(50)
    );
    let mut plain = Server::new();
    plain.shutdown(own);
    assert_eq!(
        plain.shutdown_handle().get_deadline(),
        Duration::from_secs(7)
    );
}

/// `Connections` in an accept loop of one's own: one socket, the protocol
/// told from the first bytes; SCGI is served, anything else closed.
#[tokio::test]
async fn connections_serve_a_sniffed_socket() {
    let server = Server::new();
    let scgi = server.connections(tower::service_fn(path_or_fail));
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let refusal = scgi.refusal();
    let task = tokio::spawn(server::serve(
        listener,
        16,
        shutdown.clone(),
        refusal,
        move |mut conn| {
            let scgi = scgi.clone();
            async move {
                let Ok((found, stream)) = sniff_stream(conn.stream, Duration::from_secs(2)).await
                else {
                    return;
                };
                conn.stream = stream;
                if found == Some(Sniffed::Scgi) {
                    scgi.serve_connection(conn).await;
                }
            }
        },
    ));
    let out = exchange(addr, get("/sniffed")).await.unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("Status: 200"), "{head}");
    assert_eq!(body, b"/sniffed");

    let out = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
        .await
        .unwrap();
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

/// A connection served without a socket: one end of an in-memory pipe.
#[tokio::test]
async fn connections_serve_an_in_memory_pipe() {
    let scgi = Server::new().connections(tower::service_fn(path_or_fail));
    let (mut client, end) = tokio::io::duplex(1024);
    let conn =
        server::Connection::new(server::Stream::Duplex(end), server::Shutdown::new().watch());
    assert_eq!(conn.peer_addr, None);
    let task = tokio::spawn(async move { scgi.serve_connection(conn).await });
    client.write_all(&get("/in-memory")).await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("Status: 200"), "{head}");
    assert_eq!(body, b"/in-memory");
    task.await.unwrap();
}

#[tokio::test]
async fn connections_refuse_with_503() {
    let connections = Server::new().connections(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&get("/")).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        out
    });
    let (stream, _) = listener.accept().await.unwrap();
    connections.refuse(stream).await;
    let out = client.await.unwrap();
    let (head, body) = split(&out);
    assert!(
        head.starts_with("Status: 503 Service Unavailable"),
        "{head}"
    );
    assert!(head.contains("Retry-After: 1"), "{head}");
    assert_eq!(body, b"Service Unavailable\n");
}

#[tokio::test]
async fn serve_rejects_what_is_not_a_listen_address() {
    let app = tower::service_fn(path_or_fail);
    let err = gateway_scgi::serve("local_host:4000", app)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("invalid listen address"), "{err}");
}

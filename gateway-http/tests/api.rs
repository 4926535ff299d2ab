//! The server's shape: any handler serves correct HTTP, one setting for the
//! `Server` header, connections served one by one (also after their first
//! bytes were read), the one-line `serve`.

mod support;

use std::time::Duration;

use gateway_core::server::{Listener, Refusal, Shutdown, Sniffed};
use gateway_http::{Handler, Limits, Server};
use http::Version;
use support::{SOFTWARE, exchange, h2_preface, read_h2_frame, read_to_close, text};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The requests compared across servers.
const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /environ?q=1 HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
    b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /error-before HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /not-modified HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /nowhere HTTP/1.0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
];

/// A response with what differs from one server or connection to the next
/// (the date, the ports) taken out.
fn normalized(out: &[u8]) -> String {
    text(out)
        .split_inclusive('\n')
        .filter(|l| {
            !(l.starts_with("date: ")
                || l.starts_with("SERVER_PORT=")
                || l.starts_with("REMOTE_PORT="))
        })
        .collect()
}

async fn responses(addr: std::net::SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    for req in REQUESTS {
        out.push(normalized(&exchange(addr, req).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_handler_serves_as_the_default_server_does() {
    let app = || tower::service_fn(support::app);
    let default = support::start_server(Server::new(), app()).await;
    let mut bare = Server::new();
    bare.handler(Handler::new());
    let bare = support::start_server(bare, app()).await;
    // A handler made for another backend: HTTP/1.0 status lines and its
    // own Server header. Neither is used here.
    let mut other = Server::new();
    other.handler(
        Handler::builder()
            .http_version(Version::HTTP_10)
            .server_software("elsewhere/1")
            .build(),
    );
    let other = support::start_server(other, app()).await;

    let expected = responses(default.addr).await;
    assert_eq!(responses(bare.addr).await, expected);
    assert_eq!(responses(other.addr).await, expected);

    let get = &expected[0];
    assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
    assert!(
        get.contains(&format!("\r\nserver: {SOFTWARE}\r\n")),
        "{get}"
    );
    assert!(
        expected[1].starts_with("HTTP/1.0 200 OK\r\n"),
        "{}",
        expected[1]
    );
    let env = &expected[3];
    assert!(
        env.contains(&format!("\nSERVER_SOFTWARE={SOFTWARE}\n")),
        "{env}"
    );
    let page = &expected[5];
    assert!(
        page.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{page}"
    );
    assert!(page.ends_with(gateway_core::DEFAULT_ERROR_BODY), "{page}");
    assert!(expected[8].ends_with("\r\n\r\nhello"), "{}", expected[8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_software_setting_is_the_only_one() {
    let mut base = gateway_core::Environ::new();
    base.insert("SERVER_SOFTWARE", "from-the-environ/3");
    let handler = Handler::builder()
        .server_software("from-the-handler/2")
        .base_environ(base)
        .build();
    let mut server = Server::new();
    server
        .handler(handler.clone())
        .server_software(Some("mine/1".into()));
    let srv = support::start_server(server, tower::service_fn(support::app)).await;
    let out = text(&exchange(srv.addr, b"GET /environ HTTP/1.0\r\n\r\n").await);
    assert!(out.contains("\r\nserver: mine/1\r\n"), "{out}");
    assert!(out.contains("\nSERVER_SOFTWARE=mine/1\n"), "{out}");
    assert_eq!(out.matches("server: ").count(), 1, "{out}");

    // None: no header, and an empty SERVER_SOFTWARE.
    let mut server = Server::new();
    server.handler(handler).server_software(None);
    let srv = support::start_server(server, tower::service_fn(support::app)).await;
    let out = text(&exchange(srv.addr, b"GET /environ HTTP/1.0\r\n\r\n").await);
    assert!(!out.to_ascii_lowercase().contains("\r\nserver:"), "{out}");
    assert!(out.contains("\nSERVER_SOFTWARE=\n"), "{out}");
}

/// Answers with the path it routes on; `/fail` fails, `/echo` echoes.
async fn path_app(
    req: http::Request<gateway_http::Body>,
) -> Result<http::Response<String>, gateway_http::BoxError> {
    use http_body_util::BodyExt;
    match req.uri().path() {
        "/fail" => Err("deliberate".into()),
        "/echo" => {
            let body = req.into_body().collect().await?.to_bytes();
            Ok(http::Response::new(
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
        path => Ok(http::Response::new(format!("path {path}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setters_change_the_handler_and_keep_the_rest() {
    let mut server = Server::new();
    server.handler(Handler::builder().error_body("custom page").build());
    let mut limits = Limits::default();
    limits.max_body_len(Some(4));
    server
        .limits(limits)
        .max_connections(3)
        .path_view(gateway_http::PathView::Mount("/app".into()));
    let srv = support::start_server(server, tower::service_fn(path_app)).await;
    // The mount prefix: the application routes on the path below it.
    let out = text(&exchange(srv.addr, b"GET /app/users/1 HTTP/1.0\r\n\r\n").await);
    assert!(out.ends_with("\r\n\r\npath /users/1"), "{out}");
    // The error page is the handler's still.
    let out = text(&exchange(srv.addr, b"GET /app/fail HTTP/1.0\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.0 500 "), "{out}");
    assert!(out.ends_with("custom page"), "{out}");
    // The limits set: a body over 4 bytes is refused, one within passes.
    let out = text(
        &exchange(
            srv.addr,
            b"POST /app/echo HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await,
    );
    assert!(out.starts_with("HTTP/1.0 413 "), "{out}");
    let out = text(
        &exchange(
            srv.addr,
            b"POST /app/echo HTTP/1.0\r\nContent-Length: 4\r\n\r\nhell",
        )
        .await,
    );
    assert!(out.ends_with("\r\n\r\nhell"), "{out}");
    // And max_connections: three held connections fill the server.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /app/x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .unwrap();
        assert!(text(&buf[..n]).starts_with("HTTP/1.1 200 OK\r\n"));
        held.push(s);
    }
    let out = text(&exchange(srv.addr, b"GET / HTTP/1.0\r\n\r\n").await);
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
}

/// A custom accept loop that tells each connection's protocol by its first
/// bytes, as a socket shared by several protocols does, and hands HTTP ones
/// to [`Connections`](gateway_http::Connections): the server reads the
/// bytes the sniffing took again.
async fn sniffing_server(
    max_connections: usize,
) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = Shutdown::new();
    let conns = Server::new()
        .handler(Handler::new())
        .shutdown(shutdown.clone())
        .connections(tower::service_fn(support::app));
    let refusal = {
        let conns = conns.clone();
        Refusal::new(move |stream| {
            let conns = conns.clone();
            async move {
                let (sniffed, stream) =
                    gateway_core::server::sniff_stream(stream, Duration::from_secs(1))
                        .await
                        .unwrap();
                assert_eq!(sniffed, Some(Sniffed::Http));
                assert!(matches!(stream, gateway_core::server::Stream::Replay(_)));
                conns.refuse(stream).await;
            }
        })
    };
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        gateway_core::server::serve(listener, max_connections, stop, refusal, move |conn| {
            let conns = conns.clone();
            async move {
                let (sniffed, conn) = conn.sniff(Duration::from_secs(1)).await.unwrap();
                assert_eq!(sniffed, Some(Sniffed::Http));
                assert!(matches!(
                    conn.stream,
                    gateway_core::server::Stream::Replay(_)
                ));
                conns.serve_connection(conn).await;
            }
        })
        .await
        .unwrap();
    });
    (addr, shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_first_bytes_were_read_is_served_whole() {
    let (addr, shutdown, task) = sniffing_server(16).await;
    // HTTP/1.1: two pipelined requests, the second with a body.
    let out = text(
        &exchange(
            addr,
            b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await,
    );
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
    assert!(out.contains("\nREQUEST_METHOD=GET\n"), "{out}");
    // The peer's address came through the replaying stream.
    assert!(out.contains("\nREMOTE_ADDR=127.0.0.1\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nabc"), "{out}");

    // HTTP/2 with prior knowledge: the preface was read to sniff it.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&h2_preface()).await.unwrap();
    let (kind, _, stream, _) = read_h2_frame(&mut s).await.expect("the server's SETTINGS");
    assert_eq!((kind, stream), (0x4, 0));

    shutdown.trigger();
    drop(s);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the accept loop ended")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_whose_first_bytes_were_read_gets_503() {
    let (addr, _shutdown, _task) = sniffing_server(1).await;
    // Hold the one slot: a connection kept alive after a request.
    let mut held = TcpStream::connect(addr).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !text(&got).ends_with("Hello, world!") {
        let mut buf = [0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut held, &mut buf)
            .await
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let out = text(&exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await);
    assert!(
        out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("\r\nServer: {SOFTWARE}\r\n")),
        "{out}"
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&h2_preface()).await.unwrap();
    let (kind, ..) = read_h2_frame(&mut s).await.expect("SETTINGS");
    assert_eq!(kind, 0x4);
    let (kind, ..) = read_h2_frame(&mut s).await.expect("GOAWAY");
    assert_eq!(kind, 0x7);
    assert!(read_to_close(&mut s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_shutdown_closes_connections_served_one_by_one() {
    // The accept loop runs with a shutdown of its own; the server's
    // shutdown still closes the connections it serves.
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let server_shutdown = Shutdown::new();
    let mut server = Server::new();
    server.shutdown(server_shutdown.clone());
    let conns = server.connections(tower::service_fn(support::app));
    let loop_shutdown = Shutdown::new();
    let stop = loop_shutdown.clone();
    tokio::spawn(async move {
        gateway_core::server::serve(listener, 8, stop, Refusal::close(), move |conn| {
            let conns = conns.clone();
            async move { conns.serve_connection(conn).await }
        })
        .await
    });
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !text(&got).ends_with("Hello, world!") {
        let mut buf = [0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    server_shutdown.trigger();
    // The idle keep-alive connection is closed.
    assert!(read_to_close(&mut s).await.is_empty());
    loop_shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_the_address_first() {
    let app = tower::service_fn(support::app);
    for bad in ["local_host:8000", "127.0.0.1", "unix:", "fd:3"] {
        let err = gateway_http::serve(bad, app).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
        assert!(err.to_string().contains("expected HOST:PORT"), "{err}");
    }
}

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>(_: &T) {}

/// What an accept loop needs to run connections on tasks of their own
/// (`serve_connection`'s future is spawned by the accept loops above).
#[tokio::test]
async fn connections_and_their_futures_are_send() {
    let conns = Server::new().connections(tower::service_fn(support::app));
    assert_send_sync(&conns);
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    assert_send(&conns.refuse(stream));
    assert_send(&conns.serve(listener));
}

#[test]
fn settings_are_kept_in_any_order() {
    let shutdown = Shutdown::new();
    let mut server = Server::new();
    server
        .grace_period(Duration::from_secs(3))
        .shutdown(shutdown.clone());
    assert_eq!(
        server.shutdown_handle().get_deadline(),
        Duration::from_secs(3)
    );
    server.grace_period(Duration::from_secs(4));
    assert_eq!(
        server.shutdown_handle().get_deadline(),
        Duration::from_secs(4)
    );
    // The handle is the server's shutdown.
    server.shutdown_handle().trigger();
    assert!(shutdown.is_triggered());
    // The server holds no application: it can be cloned and printed.
    let copy = server.clone();
    assert!(format!("{copy:?}").starts_with("Server"));
}

/// Each request's URI carries its own `Host`, also when a connection's
/// requests name different hosts (or a bad one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_its_own_host_in_the_uri() {
    let app = tower::service_fn(|req: http::Request<gateway_http::Body>| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(format!("<{}>", req.uri())))
    });
    let srv = support::start_server(Server::new(), app).await;
    let out = text(
        &exchange(
            srv.addr,
            b"GET /a HTTP/1.1\r\nHost: one.example\r\n\r\n\
              GET /b?q HTTP/1.1\r\nHost: one.example\r\n\r\n\
              GET /c HTTP/1.1\r\nHost: two.example:8080\r\n\r\n\
              GET /d HTTP/1.1\r\nHost: one.example\r\n\r\n\
              GET /e HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    let uris: Vec<&str> = out
        .split('<')
        .skip(1)
        .map(|s| s.split('>').next().unwrap_or_default())
        .collect();
    assert_eq!(
        uris,
        [
            "http://one.example/a",
            "http://one.example/b?q",
            "http://two.example:8080/c",
            "http://one.example/d",
        ],
        "{out}"
    );
    assert!(out.contains("HTTP/1.1 400 "), "{out}");
}

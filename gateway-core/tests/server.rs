//! The shared server pieces: accept loop, connection cap, graceful shutdown.
#![cfg(feature = "server")]

use std::time::Duration;

use gateway_core::server::{BindOptions, Listener, Refusal, Shutdown, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn accepts_serves_and_shuts_down_gracefully() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let mut shutdown = Shutdown::new();
    shutdown.deadline(Duration::from_secs(5));
    let server = tokio::spawn(serve(
        listener,
        2,
        shutdown.clone(),
        Refusal::close(),
        |mut c: gateway_core::server::Connection| async move {
            let mut buf = [0u8; 5];
            if c.stream.read_exact(&mut buf).await.is_ok() {
                // An in-flight request finishes even after shutdown starts.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = c.stream.write_all(&buf).await;
            }
        },
    ));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    shutdown.trigger();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn deadline_aborts_stuck_connections() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let mut shutdown = Shutdown::new();
    shutdown.deadline(Duration::from_millis(100));
    let server = tokio::spawn(serve(
        listener,
        8,
        shutdown.clone(),
        Refusal::close(),
        |_c| async move {
            std::future::pending::<()>().await;
        },
    ));
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the deadline ends serve")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn unix_socket_with_mode() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("gw-core-{}.sock", std::process::id()));
    let listener =
        Listener::bind_unix(&path, BindOptions::new().mode(0o660).remove_stale(true)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    assert_eq!(
        listener.local_addr_string(),
        format!("unix:{}", path.display())
    );
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(
        listener,
        1,
        shutdown.clone(),
        Refusal::close(),
        |mut c: gateway_core::server::Connection| async move {
            let _ = c.stream.write_all(b"hi").await;
        },
    ));
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hi");
    shutdown.trigger();
    server.await.unwrap().unwrap();
    assert!(
        !path.exists(),
        "the socket file is removed with the listener"
    );
}

/// F1: fd 0 is not a listening socket in a test run: no listener.
#[tokio::test]
async fn stdin_that_is_not_a_socket_is_not_a_listener() {
    assert!(Listener::from_stdin().unwrap().is_none());
}

/// Past the connection cap a new client is answered at once by the
/// refusal, not left waiting in the backlog.
#[tokio::test]
async fn over_the_cap_a_client_is_refused_at_once() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = Shutdown::new();
    let refusal = Refusal::new(|mut s: gateway_core::server::Stream| async move {
        let _ = s.write_all(b"busy").await;
        gateway_core::server::linger_close(s, Duration::from_secs(1)).await;
    });
    let server = tokio::spawn(serve(
        listener,
        1,
        shutdown.clone(),
        refusal,
        |_c| async move {
            std::future::pending::<()>().await;
        },
    ));
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), second.read_to_end(&mut got))
        .await
        .expect("the refusal comes at once")
        .unwrap();
    assert_eq!(got, b"busy");
    shutdown.trigger();
    drop(server);
}

/// `Refusal::close` closes a connection over the cap without a word.
#[tokio::test]
async fn over_the_cap_a_closing_refusal_closes() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(
        listener,
        1,
        shutdown.clone(),
        Refusal::close(),
        |_c| async move {
            std::future::pending::<()>().await;
        },
    ));
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(1), second.read_to_end(&mut got))
        .await
        .expect("closed at once");
    assert!(r.is_err() || got.is_empty());
    shutdown.trigger();
    drop(server);
}

/// The backlog is the one asked for: with nobody accepting, the kernel
/// completes at most backlog + 1 handshakes.
#[tokio::test]
async fn listen_backlog_is_configurable() {
    let listener = Listener::bind_with("127.0.0.1:0", BindOptions::new().backlog(2))
        .await
        .unwrap();
    let addr = listener.tcp_addr().unwrap();
    let mut done = 0;
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => {
                held.push(s);
                done += 1;
            }
            _ => break,
        }
    }
    assert!(
        (2..=3).contains(&done),
        "{done} connections completed with a backlog of 2"
    );
    drop(listener);
}

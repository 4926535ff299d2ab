//! WebSocket through the conformance example in HTTP mode (`conformance
//! http ADDR`, whose `/ws` echoes each message), straight and behind nginx
//! `proxy_pass` with the upgrade headers (`examples/webservers/http/nginx.conf`,
//! location `= /http/conformance/ws`), with a real client
//! (tokio-tungstenite): echo, a 1 MiB message, the close handshake.
//!
//! These tests need nginx, so they are ignored by a plain `cargo test`;
//! `.ci/run` installs it and runs them with `--ignored`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway_test::frontend_http::HttpServer;
use gateway_test::webserver::example_binary;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(20);

fn server() -> HttpServer {
    let program = example_binary("conformance").unwrap_or_else(|e| panic!("{e}"));
    HttpServer::behind_nginx(&program)
        .unwrap_or_else(|e| panic!("conformance http behind nginx: {e}"))
}

async fn next<S>(ws: &mut S, what: &str) -> Option<Message>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in time"))
        .map(|r| r.unwrap_or_else(|e| panic!("{what}: {e}")))
}

async fn echo_session(url: &str, what: &str, log: impl Fn() -> String) {
    let (mut ws, res) = match tokio_tungstenite::connect_async(url).await {
        Ok(c) => c,
        Err(e) => panic!("{what}: handshake failed: {e}\n{}", log()),
    };
    assert_eq!(res.status(), 101, "{what}");
    for text in ["hello", "second message", ""] {
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(
            next(&mut ws, what).await,
            Some(Message::text(text)),
            "{what}"
        );
    }
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next(&mut ws, what).await {
        Some(Message::Binary(b)) => assert!(b[..] == big[..], "{what}: the echo differs"),
        other => panic!("{what}: expected the 1 MiB echo, got {other:?}"),
    }
    ws.close(None).await.unwrap();
    match next(&mut ws, what).await {
        Some(Message::Close(_)) => {}
        other => panic!("{what}: expected the server's Close, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .is_none(),
        "{what}: the stream goes on after the close handshake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx (run by .ci/run)"]
async fn websocket_echo_direct_and_behind_nginx() {
    let srv = server();
    echo_session(&format!("ws://{}/ws", srv.backend()), "direct", || {
        srv.error_log()
    })
    .await;
    echo_session(
        &format!("ws://{}{}", srv.addr(), srv.target("/ws")),
        "behind nginx",
        || srv.error_log(),
    )
    .await;
    // Several at once through nginx.
    let url = format!("ws://{}{}", srv.addr(), srv.target("/ws"));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let url = url.clone();
        tasks.spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let text = format!("socket {i}");
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(next(&mut ws, "concurrent").await, Some(Message::text(text)));
            ws.close(None).await.unwrap();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // The other routes are as before.
    let hello = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", &srv.url("/hello")])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "Hello, world!\n");
}

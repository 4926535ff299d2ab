//! Protocol upgrades through the core: a backend that can switch protocols
//! keeps `Connection` and `Upgrade` on a proper 101; one that cannot (every
//! CGI-family protocol) answers a 101 with 501; an axum WebSocket route
//! under such a backend gets axum's own rejection at once; the validator
//! accepts a proper 101 and nothing else with those headers.

mod common;

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use bytes::{Bytes, BytesMut};
use common::*;
use gateway_core::validate::ValidateLayer;
use gateway_core::{
    Body, Environ, ErrorStream, Gateway, GatewayInfo, Handler, HeadFormat, ResponseHead,
    StreamGateway, is_proper_switch,
};
use http::{Request, Response, StatusCode};
use tower::Layer;

/// A `StreamGateway` in the origin form that says it can switch protocols.
struct Upgrading(StreamGateway<&'static [u8], Vec<u8>>);

impl Gateway for Upgrading {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.0.write(data).await
    }
    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await
    }
    fn stdin(&mut self, env: &Environ) -> Body {
        self.0.stdin(env)
    }
    fn stderr(&self) -> ErrorStream {
        self.0.stderr()
    }
    fn add_cgi_vars(&mut self, env: &mut Environ) {
        self.0.add_cgi_vars(env);
    }
    fn info(&self) -> GatewayInfo {
        self.0.info().with_origin_server(true)
    }
    fn write_head(&mut self, head: &mut ResponseHead<'_>, format: &HeadFormat, buf: &mut BytesMut) {
        self.0.write_head(head, format, buf);
    }
    fn supports_upgrade(&self) -> bool {
        true
    }
}

fn switch(extra: &[(&'static str, &'static str)]) -> Response<Body> {
    let mut pairs = vec![("connection", "Upgrade"), ("upgrade", "websocket")];
    pairs.extend_from_slice(extra);
    let mut res = response(Body::empty(), &pairs);
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    res
}

fn upgrading() -> Upgrading {
    Upgrading(StreamGateway::origin(
        &b""[..],
        Vec::new(),
        ErrorStream::null(),
        testing_env(),
    ))
}

#[tokio::test]
async fn a_proper_switch_keeps_its_headers_where_the_backend_can_switch() {
    let mut gw = upgrading();
    let app = respond(|| switch(&[("transfer-encoding", "chunked"), ("x-a", "1")]));
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete(), "{outcome:?}");
    let text = String::from_utf8(gw.0.into_writer()).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-A: 1\r\n\r\n"),
        "{text}"
    );
    // Still removed: the other hop-by-hop headers, and no length on a 1xx.
    assert!(!text.contains("Transfer-Encoding"), "{text}");
    assert!(!text.contains("Content-Length"), "{text}");
}

#[tokio::test]
async fn upgrade_headers_are_still_stripped_elsewhere() {
    // Not a 101.
    let mut gw = upgrading();
    let app = respond(|| {
        response(
            Body::from("x"),
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        )
    });
    Handler::new().run(&mut gw, app).await;
    let text = String::from_utf8(gw.0.into_writer()).unwrap();
    assert!(!text.contains("Upgrade"), "{text}");
    // A 101 whose Connection does not name upgrade.
    let mut gw = upgrading();
    let app = respond(|| {
        let mut res = response(
            Body::empty(),
            &[("connection", "keep-alive"), ("upgrade", "websocket")],
        );
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        res
    });
    Handler::new().run(&mut gw, app).await;
    let text = String::from_utf8(gw.0.into_writer()).unwrap();
    assert!(!text.contains("Upgrade"), "{text}");
    assert!(!text.contains("Connection"), "{text}");
}

#[tokio::test]
async fn a_switch_where_the_backend_cannot_is_501() {
    for origin in [false, true] {
        let r = run(
            &Handler::new(),
            testing_env(),
            origin,
            respond(|| switch(&[])),
        )
        .await;
        let text = r.text();
        assert!(text.contains("501 Not Implemented\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\nProtocol upgrades are not supported here\n"),
            "{text}"
        );
        assert!(!text.contains("websocket"), "{text}");
        assert!(r.outcome.is_complete());
    }
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if socket.send(msg).await.is_err() {
            break;
        }
    }
}

/// A WebSocket handshake as a browser sends it, through the CGI form.
fn websocket_request_env() -> Environ {
    env_with(&[
        ("REQUEST_METHOD", "GET"),
        ("PATH_INFO", "/ws"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "example.org"),
        ("HTTP_CONNECTION", "Upgrade"),
        ("HTTP_UPGRADE", "websocket"),
        ("HTTP_SEC_WEBSOCKET_VERSION", "13"),
        ("HTTP_SEC_WEBSOCKET_KEY", "dGhlIHNhbXBsZSBub25jZQ=="),
    ])
}

#[tokio::test]
async fn an_axum_websocket_route_is_refused_at_once_without_upgrades() {
    let router: axum::Router = axum::Router::new().route(
        "/ws",
        axum::routing::get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(echo) }),
    );
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        run(&Handler::new(), websocket_request_env(), false, router),
    )
    .await
    .expect("the request must not hang");
    let text = r.text();
    // axum finds no connection to take over and rejects the handshake.
    assert!(
        text.starts_with("Status: 426 Upgrade Required\r\n"),
        "{text}"
    );
    assert!(text.contains("no upgrade state"), "{text}");
    assert!(r.outcome.is_complete());
}

#[tokio::test]
async fn a_blind_switch_under_cgi_gets_501_not_a_hang() {
    // An application that answers 101 without looking for a connection to
    // take over.
    let app = tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(switch(&[("sec-websocket-accept", "x")]))
    });
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        run(&Handler::new(), websocket_request_env(), false, app),
    )
    .await
    .expect("the request must not hang");
    assert!(
        r.text().starts_with("Status: 501 Not Implemented\r\n"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn the_validator_accepts_a_proper_switch_only() {
    let run_validated = |res: fn() -> Response<Body>| async move {
        let mut gw = upgrading();
        let (errors, captured) = ErrorStream::capture();
        gw.0 = StreamGateway::origin(&b""[..], Vec::new(), errors, testing_env());
        let app = ValidateLayer::new().layer(respond(res));
        Handler::new().run(&mut gw, app).await;
        (
            String::from_utf8(gw.0.into_writer()).unwrap(),
            captured.text(),
        )
    };
    let (out, log) = run_validated(|| switch(&[])).await;
    assert!(out.starts_with("HTTP/1.0 101 "), "{out}");
    assert!(out.contains("\r\nUpgrade: websocket\r\n"), "{out}");
    assert_eq!(log, "");
    let (out, log) = run_validated(|| switch(&[("keep-alive", "timeout=5")])).await;
    assert!(out.starts_with("HTTP/1.0 500 "), "{out}");
    assert!(log.contains("hop-by-hop"), "{log}");
    let (out, log) = run_validated(|| {
        response(
            Body::from("x"),
            &[("content-type", "text/plain"), ("upgrade", "websocket")],
        )
    })
    .await;
    assert!(out.starts_with("HTTP/1.0 500 "), "{out}");
    assert!(log.contains("hop-by-hop"), "{log}");
}

#[test]
fn what_a_proper_switch_is() {
    let s = StatusCode::SWITCHING_PROTOCOLS;
    let h = |pairs: &[(&'static str, &'static str)]| header_map(pairs);
    assert!(is_proper_switch(
        s,
        &h(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])
    ));
    assert!(!is_proper_switch(s, &h(&[("connection", "upgrade")])));
    assert!(!is_proper_switch(
        s,
        &h(&[("connection", "upgrades"), ("upgrade", "websocket")])
    ));
    assert!(!is_proper_switch(
        StatusCode::OK,
        &h(&[("connection", "upgrade"), ("upgrade", "websocket")])
    ));
}

//! `conformance http ADDR`: the conformance app as a HTTP server, with one
//! route more than over the other protocols: a WebSocket at `/ws` (also
//! under a mount prefix, `/PREFIX/ws`) that echoes each text and binary
//! message.

use std::process::ExitCode;

use axum::extract::FromRequestParts;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use gateway_core::Metrics;
use gateway_http::{Body, BoxError, ListenAddr, Server};
use gateway_test::conformance::Conformance;
use http::{Request, Response};
use tower::ServiceExt;

/// Serves `app` over HTTP on `addr` (`HOST:PORT`, `unix:PATH`, `fd:0`,
/// `systemd`) on a current-thread runtime, until SIGTERM or SIGINT.
/// `CONFORMANCE_REUSE_PORT=1` binds a TCP address with `SO_REUSEPORT`.
pub(crate) fn run(addr: Option<&str>, app: Conformance, metrics: &Metrics) -> ExitCode {
    let Some(addr) = addr else {
        eprintln!("conformance http: an address is required (HOST:PORT or unix:PATH)");
        return ExitCode::from(2);
    };
    let addr: ListenAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("conformance http: {e}");
            return ExitCode::from(2);
        }
    };
    let app = tower::service_fn(move |req| with_websocket(app.clone(), req));
    let reuse_port = super::fastcgi::reuse_port();
    match Server::new()
        .metrics(metrics)
        .worker_threads(1)
        .reuse_port(reuse_port)
        .run(&addr, app)
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance http: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `/ws` is the WebSocket echo; everything else goes to the conformance
/// app unchanged.
async fn with_websocket(
    app: Conformance,
    req: Request<Body>,
) -> Result<Response<axum::body::Body>, BoxError> {
    let path = req.uri().path();
    if path == "/ws" || path.ends_with("/ws") {
        let (mut parts, _body) = req.into_parts();
        return Ok(
            match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                Ok(ws) => ws
                    .max_message_size(8 << 20)
                    .on_upgrade(echo)
                    .into_response(),
                Err(rejection) => rejection.into_response(),
            },
        );
    }
    let res = app.oneshot(req).await?;
    Ok(res.map(axum::body::Body::new))
}

/// Echoes text and binary messages; pings and the close handshake are
/// answered by the WebSocket library as it reads.
async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && socket.send(msg).await.is_err() {
            break;
        }
    }
}

//! `conformance fastcgi ADDR`: the conformance app as a FastCGI server.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};

use gateway_core::{Body, BoxError};
use gateway_test::conformance::{ConfBody, Conformance, query_pairs};
use http::{HeaderValue, Request, Response, header};

/// Serves `app` over FastCGI on `addr` (`HOST:PORT`, `unix:PATH`, or none for
/// the listening socket on file descriptor 0, as lighttpd's `bin-path`
/// passes it) until SIGTERM or SIGINT. From the environment:
/// `FCGI_MPXS_CONNS=1` turns on multiplexing, `FCGI_ABORT_WITH_RESET=1`
/// signals a response that fails after its head by resetting the connection
/// ([`gateway_fastcgi::Server::abort_with_reset`]).
///
/// For the abort tests, `GET /error/after?length=N` declares a
/// `Content-Length` of N on the response that fails after `partial`.
pub(crate) fn run(addr: Option<&str>, app: Conformance) -> ExitCode {
    let ready = |listening: &str| eprintln!("conformance: FastCGI on {listening}");
    let mut server = gateway_fastcgi::Server::new(DeclaredLength(app));
    server.multiplex(std::env::var("FCGI_MPXS_CONNS").is_ok_and(|v| v == "1"));
    server.abort_with_reset(std::env::var("FCGI_ABORT_WITH_RESET").is_ok_and(|v| v == "1"));
    match server.run(addr, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance fastcgi: {}: {e}", addr.unwrap_or("fd 0"));
            ExitCode::FAILURE
        }
    }
}

/// The conformance app, with `?length=N` on `/error/after` turned into a
/// declared `Content-Length: N`.
#[derive(Debug, Clone)]
struct DeclaredLength(Conformance);

type ConfFuture = Pin<Box<dyn Future<Output = Result<Response<ConfBody>, BoxError>> + Send>>;

impl tower::Service<Request<Body>> for DeclaredLength {
    type Response = Response<ConfBody>;
    type Error = BoxError;
    type Future = ConfFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> ConfFuture {
        let length = req
            .uri()
            .path()
            .ends_with("/error/after")
            .then(|| query_pairs(req.uri().query().unwrap_or("")))
            .and_then(|pairs| {
                pairs
                    .into_iter()
                    .find(|(k, _)| k == "length")
                    .and_then(|(_, v)| HeaderValue::try_from(v).ok())
            });
        let fut = self.0.call(req);
        Box::pin(async move {
            let mut res = fut.await?;
            if let Some(n) = length {
                res.headers_mut().insert(header::CONTENT_LENGTH, n);
            }
            Ok(res)
        })
    }
}

//! The validator layer on a non-compliant application, served over HTTP.
//!
//! ```text
//! cargo run --example validate            # on 127.0.0.1:8000, or give an address
//! curl -i http://127.0.0.1:8000/           # 500: the app sends `Connection: close`
//! curl -i http://127.0.0.1:8000/short      # truncated: Content-Length 100, 5 bytes sent
//! curl -i http://127.0.0.1:8000/ok         # a compliant answer
//! ```
//!
//! Each violation is logged on standard error with the rule it broke, for
//! example `gateway: application error: validator: hop-by-hop: hop-by-hop
//! header "connection" is not allowed`; the client gets the error page (or,
//! once the head is out, a truncated response).

use std::convert::Infallible;
use std::process::ExitCode;

use gateway_core::Body;
use gateway_core::validate::ValidateLayer;
use http::{Request, Response, header};
use tower::Layer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let app = tower::service_fn(|req: Request<Body>| async move {
        let res = match req.uri().path() {
            "/ok" => Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body("fine\n".to_string()),
            "/short" => Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .header(header::CONTENT_LENGTH, "100")
                .body("short".to_string()),
            // A hop-by-hop header: the core would strip it and go on, the
            // validator makes it an error.
            _ => Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .header(header::CONNECTION, "close")
                .body("Hello, world!\n".to_string()),
        };
        Ok::<_, Infallible>(res.unwrap_or_default())
    });
    let app = ValidateLayer::new().layer(app);
    println!("serving a validated app on http://{addr}/ (try /, /short, /ok)");
    match gateway_http::serve(&addr, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("validate: {e}");
            ExitCode::FAILURE
        }
    }
}

//! An axum `Router` runs unchanged over the handler: path, query and body
//! extraction, the gateway's extensions, 404s, and a mount prefix.

mod common;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Extension, Path, Query};
use axum::routing::{get, post};
use common::*;
use gateway_core::{Handler, RequestContext};

async fn update(
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> String {
    let x = q.get("x").map_or("-", String::as_str);
    format!("id={id} x={x} body={body}")
}

async fn whoami(Extension(cx): Extension<RequestContext>) -> String {
    let (env, info) = (cx.environ(), cx.info());
    let addr = env.get_str("REMOTE_ADDR").unwrap_or("?");
    format!("{} {} {addr}", info.protocol(), info.url_scheme())
}

fn router() -> Router {
    Router::new()
        .route("/users/{id}", post(update))
        .route("/whoami", get(whoami))
}

/// Path, query and body extraction through `StreamGateway` (CGI form).
#[tokio::test]
async fn axum_router_path_query_body() {
    let env = env_with(&[
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", ""),
        ("PATH_INFO", "/users/42"),
        ("QUERY_STRING", "x=1&y=2"),
        ("CONTENT_TYPE", "text/plain"),
        ("CONTENT_LENGTH", "5"),
    ]);
    let r = run_with_input(&Handler::new(), env, false, b"hello, not this", router()).await;
    assert_eq!(
        r.text(),
        "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\n\r\n\
         id=42 x=1 body=hello"
    );
    assert!(r.outcome.is_complete());
}

/// The router reads the gateway's extensions with axum's `Extension`.
#[tokio::test]
async fn axum_router_reads_gateway_extensions() {
    let env = env_with(&[("PATH_INFO", "/whoami"), ("REMOTE_ADDR", "192.0.2.7")]);
    let r = run(&Handler::new(), env, false, router()).await;
    assert!(
        r.text().ends_with("\r\n\r\ncgi http 192.0.2.7"),
        "{}",
        r.text()
    );
}

/// An unknown route is axum's empty 404; a wrong method its 405.
#[tokio::test]
async fn axum_router_not_found_and_method() {
    let env = env_with(&[("PATH_INFO", "/nope")]);
    let r = run(&Handler::new(), env, false, router()).await;
    assert_eq!(r.out, b"Status: 404 Not Found\r\nContent-Length: 0\r\n\r\n");

    let env = env_with(&[("PATH_INFO", "/users/1")]);
    let r = run(&Handler::new(), env, false, router()).await;
    assert!(
        r.text().starts_with("Status: 405 Method Not Allowed\r\n"),
        "{}",
        r.text()
    );
}

/// Mounted under `/app` (the whole path in SCRIPT_NAME, as nginx and Apache
/// send it), in the origin form.
#[tokio::test]
async fn axum_router_mounted_origin() {
    let handler = Handler::builder().mount("/app").build();
    let env = env_with(&[
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", "/app/users/7"),
        ("CONTENT_LENGTH", "2"),
    ]);
    let r = run_with_input(&handler, env, true, b"hi", router()).await;
    let text = r.text();
    assert!(text.starts_with("HTTP/1.0 200 OK\r\nDate: "), "{text}");
    assert!(text.ends_with("\r\n\r\nid=7 x=- body=hi"), "{text}");
}

/// The path below SCRIPT_NAME: a CGI program at `/cgi-bin/app` routes
/// `/cgi-bin/app/users/7` as `/users/7`, while the environ keeps
/// SCRIPT_NAME for links; the default full view sees the whole path (and
/// 404s with this router).
#[tokio::test]
async fn axum_router_script_relative_view() {
    use gateway_core::PathView;
    let env = || {
        env_with(&[
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", "/cgi-bin/app"),
            ("PATH_INFO", "/users/7"),
            ("CONTENT_LENGTH", "2"),
        ])
    };
    let handler = Handler::builder()
        .path_view(PathView::ScriptRelative)
        .build();
    let r = run_with_input(&handler, env(), false, b"hi", router()).await;
    assert!(
        r.text().ends_with("\r\n\r\nid=7 x=- body=hi"),
        "{}",
        r.text()
    );

    let r = run_with_input(&Handler::new(), env(), false, b"hi", router()).await;
    assert!(r.text().starts_with("Status: 404 "), "{}", r.text());

    // Nothing below SCRIPT_NAME is `/`.
    let env = env_with(&[("SCRIPT_NAME", "/cgi-bin/app"), ("PATH_INFO", "")]);
    let app = tower::service_fn(|req: http::Request<gateway_core::Body>| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(req.uri().path().to_owned()))
    });
    let r = run(&handler, env, false, app).await;
    assert!(r.text().ends_with("\r\n\r\n/"), "{}", r.text());
}

/// `mount` and `path_view(PathView::Mount(..))` are one setting.
#[tokio::test]
async fn mount_is_a_path_view() {
    use gateway_core::PathView;
    let handler = Handler::builder()
        .path_view(PathView::Mount("/app/".into()))
        .build();
    let env = env_with(&[
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", "/app/users/7"),
        ("CONTENT_LENGTH", "2"),
    ]);
    let r = run_with_input(&handler, env, false, b"hi", router()).await;
    assert!(
        r.text().ends_with("\r\n\r\nid=7 x=- body=hi"),
        "{}",
        r.text()
    );
}

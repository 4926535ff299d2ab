//! What the application logs while a request runs lands once, with the
//! request's context, on the request's error stream (under CGI the web
//! server's error log is the program's stderr). The test runs itself again
//! as a CGI program, since logging is set up once per process.

use std::process::{Command, Stdio};

const CHILD: &str = "GATEWAY_TEST_ERROR_LOG_CHILD";

fn cgi_child(test: &str, error_log: &str) -> String {
    cgi_child_with(test, error_log, &[])
}

fn cgi_child_with(test: &str, error_log: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env_clear()
        .envs(env.iter().copied())
        .env(CHILD, error_log)
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("SCRIPT_NAME", "/app")
        .env("PATH_INFO", "/x")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Status: 200 OK"), "{stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn serve_one_request(error_log: bool) {
    let app = tower::service_fn(|_req: http::Request<gateway::Body>| async {
        tracing::warn!("from the app");
        tracing::warn_span!("work").in_scope(|| tracing::warn!("from a span of the app"));
        Ok::<_, std::convert::Infallible>(http::Response::new("ok\n".to_string()))
    });
    let code = gateway::Builder::new().error_log(error_log).run(app);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    tracing::warn!("after the request");
}

/// The lines of `stderr` that contain `what`.
fn lines_with<'a>(stderr: &'a str, what: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(what)).collect()
}

#[test]
fn an_app_warning_reaches_the_error_stream_once_with_its_request() {
    match std::env::var(CHILD).as_deref() {
        Ok("on") => serve_one_request(true),
        Ok(_) => serve_one_request(false),
        Err(_) => {
            let name = "an_app_warning_reaches_the_error_stream_once_with_its_request";
            let stderr = cgi_child(name, "on");
            let lines: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("from the app"))
                .collect();
            assert_eq!(lines.len(), 1, "{stderr}");
            assert!(
                lines[0].contains("request{id=") && lines[0].contains("method=GET"),
                "{stderr}"
            );
            // In a span of the application's, inside the request: the same.
            let lines = lines_with(&stderr, "from a span of the app");
            assert_eq!(lines.len(), 1, "{stderr}");
            assert!(lines[0].contains("request{id="), "{stderr}");
            // Outside any request: the process's own log, once.
            let lines = lines_with(&stderr, "after the request");
            assert_eq!(lines.len(), 1, "{stderr}");
            assert!(!lines[0].contains("request{id="), "{stderr}");
            // Without the error log, the process's own log has it once,
            // without the request's context.
            let stderr = cgi_child(name, "off");
            let lines: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("from the app"))
                .collect();
            assert_eq!(lines.len(), 1, "{stderr}");
            assert!(!lines[0].contains("request{id="), "{stderr}");
            for what in ["from a span of the app", "after the request"] {
                assert_eq!(lines_with(&stderr, what).len(), 1, "{stderr}");
            }
        }
    }
}

/// With every level off (`RUST_LOG=off`) requests run without a span (it
/// would cost every request and route nothing); by default they run in one.
#[test]
fn with_every_level_off_requests_get_no_span() {
    match std::env::var(CHILD).as_deref() {
        Ok(expect) => {
            let want_span = expect == "span";
            let app = tower::service_fn(move |_req: http::Request<gateway::Body>| async move {
                let has_span = !tracing::Span::current().is_none();
                let status = if has_span == want_span { 200 } else { 500 };
                let mut res = http::Response::new(format!("span: {has_span}\n"));
                *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok::<_, std::convert::Infallible>(res)
            });
            let code = gateway::Builder::new().run(app);
            assert_eq!(code, std::process::ExitCode::SUCCESS);
        }
        Err(_) => {
            let name = "with_every_level_off_requests_get_no_span";
            cgi_child_with(name, "no span", &[("RUST_LOG", "off")]);
            cgi_child_with(name, "span", &[]);
        }
    }
}

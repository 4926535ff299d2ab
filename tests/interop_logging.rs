//! What the application logs reaches the web server's error log: the
//! conformance app runs as a FastCGI server with
//! `gateway_core::logging::ErrorLogLayer` (`CONFORMANCE_LOG=warn`) and a
//! slow-request threshold (`CONFORMANCE_SLOW_MS`), behind nginx, Apache
//! httpd and lighttpd (`examples/webservers/fastcgi/`). A `tracing::warn!`
//! in the application must show up in the server's error log with the
//! request's id, method and path; an info-level event must not; a request
//! slower than the threshold is logged there once with its phase.
//!
//! These tests need the servers installed, so they are ignored by a plain
//! `cargo test`; `.ci/run` runs them with `--ignored`.

use std::time::{Duration, Instant};

use gateway_test::frontend_fastcgi::{FcgiFront, Front};
use gateway_test::http_client::Request;
use gateway_test::webserver::example_binary;

struct Ctx {
    setup: FcgiFront,
}

impl Ctx {
    fn start(front: Front) -> Ctx {
        let program = example_binary("conformance").unwrap_or_else(|e| panic!("{e}"));
        let env = [("CONFORMANCE_LOG", "warn"), ("CONFORMANCE_SLOW_MS", "300")];
        match FcgiFront::start_with_env(front, &program, &env) {
            Ok(setup) => Ctx { setup },
            Err(e) => panic!("{front}: {e}"),
        }
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "{}: {message}\n{}",
            self.setup.front(),
            self.setup.error_log()
        )
    }

    fn get(&self, path_and_query: &str) -> String {
        let r = Request::new("GET", &self.setup.target(path_and_query))
            .send(self.setup.addr())
            .unwrap_or_else(|e| self.fail(format!("{path_and_query}: {e}")));
        if r.status != 200 {
            self.fail(format!("{path_and_query}: {} {:?}", r.status, r.text()));
        }
        r.text()
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.setup.rundir().join("error.log")).unwrap_or_default()
    }

    /// Waits until the server's error log has a line holding every one of
    /// `parts`, and returns it.
    fn wait_for_line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.server_log();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_owned();
            }
            if Instant::now() > deadline {
                self.fail(format!("no error log line with all of {parts:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn logging_through(front: Front) {
    let ctx = Ctx::start(front);

    // A warning. (Line breaks in messages are escaped, which the unit
    // tests show: lighttpd refuses a URL holding a control character.)
    let body = ctx.get("/log?msg=disk%20quota%20low%20for%20user%2042&level=warn");
    let id: u64 = body
        .trim()
        .strip_prefix("request ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| ctx.fail(format!("/log answered {body:?}")));
    let context = format!("request{{id={id} method=GET path=/fcgi/conformance/log}}");
    let line = ctx.wait_for_line(&["WARN", &context, "conformance: disk quota low for user 42"]);
    eprintln!("{front}: {line}");

    // Below the layer's level: not written.
    ctx.get("/log?msg=only%20for%20debugging&level=info");
    // An error after it, so there is something to wait for.
    let body = ctx.get("/log?msg=after%20the%20info%20line&level=error");
    let id2 = body.trim().trim_start_matches("request ").to_owned();
    ctx.wait_for_line(&["ERROR", &format!("id={id2} "), "after the info line"]);
    if ctx.server_log().contains("only for debugging") {
        ctx.fail("an info-level event reached the error log".into());
    }

    // A request slower than the threshold (300 ms), logged once.
    let body = ctx.get("/sleep?ms=700");
    if body != "done" {
        ctx.fail(format!("/sleep answered {body:?}"));
    }
    let line = ctx.wait_for_line(&[
        "WARN",
        "path=/fcgi/conformance/sleep}",
        "gateway_core::slow_request: slow request",
        "uri=/fcgi/conformance/sleep?ms=700",
        "phase=in the application",
    ]);
    eprintln!("{front}: {line}");
    std::thread::sleep(Duration::from_millis(500));
    let count = ctx.server_log().matches("slow request").count();
    if count != 1 {
        ctx.fail(format!("the slow request was logged {count} times"));
    }
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_error_log() {
    logging_through(Front::Nginx);
}

#[test]
#[ignore = "needs apache2 (run by .ci/run)"]
fn apache_error_log() {
    logging_through(Front::Apache);
}

#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn lighttpd_error_log() {
    logging_through(Front::Lighttpd);
}

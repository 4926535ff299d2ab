//! The conformance example as an SCGI server behind real web servers: nginx
//! (`scgi_pass`), Apache httpd (`mod_proxy_scgi`) and lighttpd (`mod_scgi`),
//! each configured from `examples/webservers/scgi/` and mounted at
//! `/scgi/conformance`. (Caddy and HAProxy do not speak SCGI.)
//!
//! These tests need the servers installed, so they are ignored by a plain
//! `cargo test`; `.ci/run` installs the Debian packages and runs them with
//! `--ignored`. A missing server fails the test with the package to install.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gateway_test::cases;
use gateway_test::frontend_scgi::{Front, ScgiFront};
use gateway_test::http_client::{Completion, Framing, JsonValue, Request, Response};
use gateway_test::webserver::example_binary;

/// wsgiref's `error_body`, the page sent when the app fails before its head.
const ERROR_PAGE: &str = "A server error occurred.  Please contact the administrator.";

struct Ctx {
    setup: ScgiFront,
}

impl Ctx {
    fn start(front: Front) -> Ctx {
        let program = example_binary("conformance").unwrap_or_else(|e| panic!("{e}"));
        match ScgiFront::start(front, &program) {
            Ok(setup) => Ctx { setup },
            Err(e) => panic!("{front}: {e}"),
        }
    }

    fn front(&self) -> Front {
        self.setup.front()
    }

    fn fail(&self, message: String) -> ! {
        panic!("{}: {message}\n{}", self.front(), self.setup.error_log())
    }

    fn check(&self, cond: bool, message: impl FnOnce() -> String) {
        if !cond {
            self.fail(message());
        }
    }

    fn check_eq<T: PartialEq + std::fmt::Debug>(&self, left: T, right: T, what: &str) {
        if left != right {
            self.fail(format!("{what}\n  left: {left:?}\n right: {right:?}"));
        }
    }

    fn request(&self, method: &str, path_and_query: &str) -> Request {
        Request::new(method, &self.setup.target(path_and_query))
    }

    fn send(&self, request: Request) -> Response {
        request.send(self.setup.addr()).unwrap_or_else(|e| {
            self.fail(format!(
                "{} {} failed: {e}",
                request.method(),
                request.target()
            ))
        })
    }

    fn get(&self, path_and_query: &str) -> Response {
        self.send(self.request("GET", path_and_query))
    }

    /// A 200 whose body arrived whole.
    fn ok(&self, r: &Response, what: &str) {
        self.check_eq(r.status, 200, &format!("{what}: status ({:?})", r.text()));
        self.check_eq(
            &r.completion,
            &Completion::Complete,
            &format!("{what}: completion"),
        );
    }

    fn json(&self, r: &Response, what: &str) -> JsonValue {
        self.ok(r, what);
        r.json()
            .unwrap_or_else(|e| self.fail(format!("{what}: not JSON ({e}): {:?}", r.text())))
    }
}

/// 10 MiB with no repeating pattern, so a lost or reordered block shows.
fn ten_mib() -> Vec<u8> {
    cases::pattern(10 << 20)
}

/// Every conformance route through the web server.
fn routes(ctx: &Ctx) {
    // hello
    let r = ctx.get("/hello");
    ctx.ok(&r, "/hello");
    ctx.check_eq(r.header("content-type"), Some("text/plain"), "content-type");
    ctx.check_eq(r.text().as_str(), "Hello, world!\n", "/hello body");
    ctx.check_eq(r.header("status"), None, "a Status header passed on");

    // echo
    let r = ctx.send(
        ctx.request("POST", "/echo")
            .header("Content-Type", "application/x-conformance")
            .body(&b"ping \x00\xff pong"[..]),
    );
    ctx.ok(&r, "/echo");
    ctx.check_eq(r.body.as_slice(), &b"ping \x00\xff pong"[..], "/echo body");
    ctx.check_eq(
        r.header("content-type"),
        Some("application/x-conformance"),
        "/echo content-type",
    );

    // environ: the query, the header round trip, CONTENT_LENGTH (SCGI puts
    // it first), SCGI=1, httpoxy.
    let r = ctx.send(
        ctx.request("GET", "/environ?a=1&b=%20x")
            .header("X-Custom-One", "abc")
            .header("Proxy", "http://127.0.0.1:9/"),
    );
    let doc = ctx.json(&r, "/environ");
    let var = |name: &str| doc["environ"][name].as_str().map(str::to_owned);
    ctx.check_eq(
        var("QUERY_STRING").as_deref(),
        Some("a=1&b=%20x"),
        "QUERY_STRING",
    );
    ctx.check_eq(
        var("REQUEST_METHOD").as_deref(),
        Some("GET"),
        "REQUEST_METHOD",
    );
    ctx.check_eq(var("SCGI").as_deref(), Some("1"), "SCGI");
    ctx.check_eq(
        var("CONTENT_LENGTH").as_deref(),
        Some("0"),
        "CONTENT_LENGTH",
    );
    ctx.check_eq(
        var("HTTP_X_CUSTOM_ONE").as_deref(),
        Some("abc"),
        "HTTP_X_CUSTOM_ONE",
    );
    ctx.check_eq(
        var("REQUEST_URI").as_deref(),
        Some("/scgi/conformance/environ?a=1&b=%20x"),
        "REQUEST_URI",
    );
    ctx.check_eq(
        doc["uri"].as_str(),
        Some("/scgi/conformance/environ?a=1&b=%20x"),
        "the app's uri",
    );
    // How each server splits the path (the configurations' comments).
    let split = (var("SCRIPT_NAME"), var("PATH_INFO"));
    let expected = match ctx.front() {
        Front::Nginx => (None, None),
        Front::Apache => (Some("/scgi/conformance/environ".to_owned()), None),
        Front::Lighttpd => (
            Some("/scgi/conformance".to_owned()),
            Some("/environ".to_owned()),
        ),
    };
    ctx.check_eq(split, expected, "SCRIPT_NAME and PATH_INFO");
    let headers: Vec<(String, String)> = doc["headers"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    ctx.check(
        headers.contains(&("x-custom-one".to_owned(), "abc".to_owned())),
        || format!("x-custom-one missing from {headers:?}"),
    );
    ctx.check(!headers.iter().any(|(n, _)| n == "proxy"), || {
        format!("proxy header reached the app: {headers:?}")
    });

    // status codes
    let r = ctx.get("/status/404");
    ctx.check_eq(r.status, 404, "/status/404");
    ctx.check_eq(r.text().as_str(), "status 404\n", "/status/404 body");
    let r = ctx.get("/status/204");
    ctx.check_eq(r.status, 204, "/status/204");
    ctx.check(r.body.is_empty(), || {
        format!("204 with a body {:?}", r.text())
    });
    let r = ctx.get("/status/201");
    ctx.check_eq(r.status, 201, "/status/201");

    // bytes, stream, headers
    let r = ctx.get("/bytes?n=300000");
    ctx.ok(&r, "/bytes");
    ctx.check_eq(r.body.len(), 300_000, "/bytes length");
    let r = ctx.get("/stream?chunks=4&size=1000&delay_ms=10");
    ctx.ok(&r, "/stream");
    ctx.check_eq(r.body.len(), 4000, "/stream length");
    let r = ctx.get("/headers?X-Conformance=yes%20please");
    ctx.ok(&r, "/headers");
    ctx.check_eq(r.header("x-conformance"), Some("yes please"), "app header");

    // redirect: an explicit 302 passes through everywhere (Apache's
    // SCGIInternalRedirect only acts on 200 + Location).
    let r = ctx.get("/redirect?to=http://example.com/x");
    ctx.check_eq(r.status, 302, "/redirect status");
    ctx.check_eq(
        r.header("location"),
        Some("http://example.com/x"),
        "Location",
    );

    // file
    let r = ctx.get("/file?name=hello.txt");
    ctx.ok(&r, "/file");
    ctx.check_eq(r.text().as_str(), "Hello from a file.\n", "/file body");

    // error before the head and panic: the error page.
    for path in ["/error/before", "/panic"] {
        let r = ctx.get(path);
        ctx.check_eq(r.status, 500, path);
        ctx.check_eq(&r.completion, &Completion::Complete, path);
        ctx.check_eq(r.text().as_str(), ERROR_PAGE, path);
    }

    // error after the head: the SCGI server resets the connection, and each
    // web server passes the failure on its own way. nginx ends the client
    // connection without the last chunk (a truncated body); Apache, which
    // has not sent the head yet, answers with its own 500 page. lighttpd
    // logs the reset ("backend returned error on socket") but, when it still
    // holds the whole partial response, sends it with a Content-Length of
    // what it got: the client cannot see the truncation (a lighttpd
    // limitation; a response too large to hold is cut off). Never the app's
    // error page.
    let r = ctx.get("/error/after");
    let cut = !r.completion.is_complete()
        || r.framing == Framing::Close
        || ctx.front() == Front::Lighttpd;
    ctx.check(
        (r.status == 200 && cut && b"partial".starts_with(&r.body)) || r.status >= 500,
        || {
            format!(
                "/error/after: status {} framing {:?} completion {:?} body {:?}",
                r.status,
                r.framing,
                r.completion,
                r.text()
            )
        },
    );
    ctx.check(!r.text().contains(ERROR_PAGE), || {
        "the error page followed the head".to_owned()
    });

    // sleep
    let r = ctx.get("/sleep?ms=50");
    ctx.ok(&r, "/sleep");
    ctx.check_eq(r.text().as_str(), "done", "/sleep body");
}

/// A 10 MiB upload echoed back and an 8 MiB download, intact.
fn large_bodies(ctx: &Ctx) {
    let body = ten_mib();
    let r = ctx.send(ctx.request("POST", "/echo").body(body.clone()));
    ctx.ok(&r, "POST /echo 10 MiB");
    ctx.check_eq(r.body.len(), body.len(), "echo length");
    let diff = r.body.iter().zip(&body).position(|(a, b)| a != b);
    ctx.check_eq(diff, None, "first differing byte");

    cases::download(&ctx.setup, cases::DOWNLOAD_LEN);
}

/// A client that goes away mid-response, then 200 concurrent requests: the
/// application server keeps serving.
fn disconnect_and_concurrency(ctx: &mut Ctx) {
    for _ in 0..3 {
        let mut stream = TcpStream::connect(ctx.setup.addr())
            .unwrap_or_else(|e| ctx.fail(format!("connect: {e}")));
        let target = ctx.setup.target("/stream?chunks=200&size=65536&delay_ms=5");
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(request.as_bytes());
        let mut some = [0u8; 4096];
        let _ = stream.read(&mut some);
        drop(stream);
    }
    std::thread::sleep(Duration::from_millis(300));
    let running = ctx.setup.backend_running();
    ctx.check(running, || "the SCGI server exited".to_owned());

    let addr = ctx.setup.addr();
    let target = ctx.setup.target("/sleep?ms=20");
    let results: Vec<Result<Response, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let target = target.clone();
                scope.spawn(move || {
                    Request::new("GET", &target)
                        .send(addr)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("thread panicked".to_owned()))
            })
            .collect()
    });
    let bad: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(r) if r.status == 200 && r.text() == "done" => None,
            Ok(r) => Some(format!("{} {:?}", r.status, r.text())),
            Err(e) => Some(e.clone()),
        })
        .collect();
    ctx.check(bad.is_empty(), || {
        format!("{} of 200 failed: {:?}", bad.len(), bad.first())
    });
    let r = ctx.get("/hello");
    ctx.ok(&r, "/hello after the load");
}

/// A repeated request header: Apache, lighttpd and nginx from 1.23 join
/// the values; older nginx (Debian 12 has 1.22) sends the name twice, which
/// the parser merges the same way.
fn repeated_header(ctx: &Ctx) {
    let r = ctx.send(
        ctx.request("GET", "/environ")
            .header("X-Dup", "one")
            .header("X-Dup", "two"),
    );
    let joined = r.status == 200
        && r.json()
            .is_ok_and(|doc| doc["environ"]["HTTP_X_DUP"] == "one, two");
    ctx.check(joined, || {
        format!("repeated header: {} {:?}", r.status, r.text())
    });
}

/// A chunked upload: nginx and lighttpd hold the whole body and send its
/// exact CONTENT_LENGTH (SCGI requires one); Apache refuses it with 411.
fn chunked_upload(ctx: &Ctx) {
    match ctx.front() {
        Front::Apache => cases::chunked_upload_refused(&ctx.setup, 1 << 20, 411),
        Front::Nginx | Front::Lighttpd => {
            cases::chunked_upload(&ctx.setup, 10 << 20);
            let (length, read) = cases::chunked_environ(&ctx.setup, 1 << 20);
            ctx.check_eq(
                length,
                Some((1 << 20).to_string()),
                "CONTENT_LENGTH of a chunked upload",
            );
            ctx.check_eq(read, 1 << 20, "body length the application read");
        }
    }
}

/// 40 requests that each take 500 ms, at once: all succeed, in far less
/// than 40 times 500 ms.
fn slow_requests_at_once(ctx: &Ctx) {
    let delay = Duration::from_millis(500);
    let took = cases::concurrent_slow(&ctx.setup, delay);
    eprintln!(
        "{}: {} requests of {delay:?} at once took {took:?}",
        ctx.front(),
        cases::SLOW_REQUESTS
    );
    ctx.check(took < delay * 10, || {
        format!(
            "{} requests of {delay:?} took {took:?}",
            cases::SLOW_REQUESTS
        )
    });
}

/// The listening socket on file descriptor 0 (how a process manager hands
/// one over): `conformance scgi` without an address serves it.
#[test]
fn scgi_on_fd0() {
    use std::process::{Command, Stdio};
    let program = example_binary("conformance").unwrap_or_else(|e| panic!("{e}"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = std::os::fd::OwnedFd::from(listener);
    let mut child = Command::new(program)
        .arg("scgi")
        .stdin(Stdio::from(fd))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let request = b"62:CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_METHOD\x00GET\x00REQUEST_URI\x00/hello\x00,";
    let result = (|| -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(request)?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out)?;
        Ok(out)
    })();
    let _ = child.kill();
    let _ = child.wait();
    let out = result.unwrap();
    assert!(
        out.starts_with(b"Status: 200 OK\r\n") && out.ends_with(b"Hello, world!\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

macro_rules! suite {
    ($module:ident, $front:expr, $reason:literal) => {
        mod $module {
            use super::*;

            #[test]
            #[ignore = $reason]
            fn every_route() {
                routes(&Ctx::start($front));
            }

            #[test]
            #[ignore = $reason]
            fn repeated_header() {
                super::repeated_header(&Ctx::start($front));
            }

            #[test]
            #[ignore = $reason]
            fn ten_mib_up_eight_mib_down() {
                large_bodies(&Ctx::start($front));
            }

            #[test]
            #[ignore = $reason]
            fn disconnect_then_200_concurrent() {
                disconnect_and_concurrency(&mut Ctx::start($front));
            }

            #[test]
            #[ignore = $reason]
            fn chunked_upload() {
                super::chunked_upload(&Ctx::start($front));
            }

            #[test]
            #[ignore = $reason]
            fn streamed_response() {
                cases::streamed_response(&Ctx::start($front).setup, 10);
            }

            #[test]
            #[ignore = $reason]
            fn head() {
                cases::head(&Ctx::start($front).setup);
            }

            #[test]
            #[ignore = $reason]
            fn forty_slow_requests_at_once() {
                slow_requests_at_once(&Ctx::start($front));
            }

            #[test]
            #[ignore = $reason]
            fn status_page_and_metrics() {
                cases::metrics(&Ctx::start($front).setup);
            }
        }
    };
}

suite!(nginx, Front::Nginx, "needs nginx (run by .ci/run)");
suite!(apache, Front::Apache, "needs apache2 (run by .ci/run)");
suite!(lighttpd, Front::Lighttpd, "needs lighttpd (run by .ci/run)");

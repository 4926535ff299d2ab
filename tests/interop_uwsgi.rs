//! The `uwsgi` example (a uwsgi server built on gateway-core's public API
//! alone) behind nginx's `uwsgi_pass`, configured from
//! `examples/webservers/uwsgi/nginx.conf` with the distribution's
//! `uwsgi_params`, and mounted at `/uwsgi/conformance`.
//!
//! These tests need nginx installed, so they are ignored by a plain
//! `cargo test`; `.ci/run` installs it and runs them with `--ignored`. A
//! missing nginx fails the test with the package to install.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use gateway_test::cases;
use gateway_test::frontend_uwsgi::UwsgiFront;
use gateway_test::http_client::{Completion, JsonValue, Request, Response, parse_response};
use gateway_test::webserver::example_binary;

/// wsgiref's `error_body`, the page sent when the app fails before its head.
const ERROR_PAGE: &str = "A server error occurred.  Please contact the administrator.";

struct Ctx {
    setup: UwsgiFront,
}

impl Ctx {
    fn start() -> Ctx {
        let program = example_binary("uwsgi").unwrap_or_else(|e| panic!("{e}"));
        match UwsgiFront::start(&program) {
            Ok(setup) => Ctx { setup },
            Err(e) => panic!("nginx with uwsgi: {e}"),
        }
    }

    fn fail(&self, message: String) -> ! {
        panic!("{message}\n{}", self.setup.error_log())
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
        request
            .send(self.setup.addr())
            .unwrap_or_else(|e| self.fail(format!("request failed: {e}")))
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

    /// Sends `packet` straight to the uwsgi server, as a broken web server
    /// would, ends the sending side, and returns what came back before the
    /// server closed the connection.
    fn raw(&self, packet: &[u8]) -> Vec<u8> {
        let exchange = || -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect(self.setup.backend())?;
            stream.set_read_timeout(Some(Duration::from_secs(20)))?;
            stream.write_all(packet)?;
            stream.shutdown(Shutdown::Write)?;
            let mut out = Vec::new();
            stream.read_to_end(&mut out)?;
            Ok(out)
        };
        exchange().unwrap_or_else(|e| self.fail(format!("raw exchange failed: {e}")))
    }
}

/// `n` bytes with no repeating pattern, so a lost or reordered block shows.
fn noise(n: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A uwsgi request packet: the header, then the variables.
fn packet(modifier1: u8, vars: &[(&str, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (name, value) in vars {
        for s in [name, value] {
            data.extend_from_slice(&u16::try_from(s.len()).unwrap().to_le_bytes());
            data.extend_from_slice(s.as_bytes());
        }
    }
    let size = u16::try_from(data.len()).unwrap().to_le_bytes();
    let mut out = vec![modifier1, size[0], size[1], 0];
    out.extend_from_slice(&data);
    out
}

/// GET, the environ nginx's stock uwsgi_params make, a 404 from the app, an
/// unknown route, the error page and an aborted response.
#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn get_environ_and_statuses() {
    let ctx = Ctx::start();
    let r = ctx.get("/hello");
    ctx.ok(&r, "/hello");
    ctx.check_eq(r.header("content-type"), Some("text/plain"), "content-type");
    ctx.check_eq(r.text().as_str(), "Hello, world!\n", "/hello body");

    let r = ctx.send(
        ctx.request("GET", "/environ?a=1&b=%20x")
            .header("X-Custom-One", "abc")
            .header("Proxy", "http://127.0.0.1:9/")
            .header("X-Dup", "one")
            .header("X-Dup", "two")
            .header("Cookie", "a=1")
            .header("Cookie", "b=2"),
    );
    let doc = ctx.json(&r, "/environ");
    let var = |name: &str| doc["environ"][name].as_str().map(str::to_owned);
    let expect = [
        ("REQUEST_METHOD", Some("GET")),
        ("QUERY_STRING", Some("a=1&b=%20x")),
        ("REQUEST_URI", Some("/uwsgi/conformance/environ?a=1&b=%20x")),
        // uwsgi_params: PATH_INFO is the whole decoded path, and there is
        // no SCRIPT_NAME.
        ("PATH_INFO", Some("/uwsgi/conformance/environ")),
        ("SCRIPT_NAME", None),
        // $content_length is empty without a body; it is sent all the same.
        ("CONTENT_LENGTH", Some("")),
        ("HTTP_X_CUSTOM_ONE", Some("abc")),
        // A header on two lines: nginx 1.23 and later join the values, 1.22
        // sends two variables, which the server joins the same way.
        ("HTTP_X_DUP", Some("one, two")),
        ("HTTP_COOKIE", Some("a=1; b=2")),
        // Debian's uwsgi_params send $host (no port) as HTTP_HOST instead of
        // the client's Host header.
        ("HTTP_HOST", Some("127.0.0.1")),
        ("SERVER_PROTOCOL", Some("HTTP/1.1")),
    ];
    for (name, value) in expect {
        ctx.check_eq(var(name).as_deref(), value, name);
    }
    ctx.check_eq(
        doc["uri"].as_str(),
        Some("/uwsgi/conformance/environ?a=1&b=%20x"),
        "the app's uri",
    );
    let headers = doc["headers"].to_string();
    ctx.check(!headers.contains("\"proxy\""), || {
        format!("the Proxy header reached the app: {headers}")
    });

    let r = ctx.get("/status/404");
    ctx.check_eq(r.status, 404, "/status/404");
    ctx.check_eq(r.text().as_str(), "status 404\n", "/status/404 body");
    let r = ctx.get("/no-such-route");
    ctx.check_eq(r.status, 404, "unknown route");
    let r = ctx.get("/status/204");
    ctx.check_eq(r.status, 204, "/status/204");
    ctx.check(r.body.is_empty(), || {
        format!("204 with a body {:?}", r.text())
    });
    let r = ctx.get("/redirect?to=http://example.com/x");
    ctx.check_eq(r.status, 302, "/redirect");
    ctx.check_eq(
        r.header("location"),
        Some("http://example.com/x"),
        "Location",
    );
    let r = ctx.send(ctx.request("HEAD", "/hello"));
    ctx.check_eq(r.status, 200, "HEAD");
    ctx.check(r.body.is_empty(), || format!("HEAD body {:?}", r.text()));

    for path in ["/error/before", "/panic"] {
        let r = ctx.get(path);
        ctx.check_eq(r.status, 500, path);
        ctx.check_eq(r.text().as_str(), ERROR_PAGE, path);
    }
    // A failure after the head: the server resets the connection and nginx
    // ends the client's response short of its end.
    let r = ctx.get("/error/after");
    ctx.check(
        (r.status == 200 && !r.completion.is_complete() && b"partial".starts_with(&r.body))
            || r.status >= 500,
        || {
            format!(
                "/error/after: {} {:?} {:?}",
                r.status,
                r.completion,
                r.text()
            )
        },
    );
    let r = ctx.get("/stream?chunks=4&size=1000&delay_ms=10");
    ctx.ok(&r, "/stream");
    ctx.check_eq(r.body.len(), 4000, "/stream length");
}

/// Request bodies: a few hundred KB echoed intact, a chunked upload (nginx
/// buffers it and sends its exact CONTENT_LENGTH), a 10 MiB download.
#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn bodies_up_and_down() {
    let ctx = Ctx::start();
    let body = noise(300_000);
    let r = ctx.send(
        ctx.request("POST", "/echo")
            .header("Content-Type", "application/x-noise")
            .body(body.clone()),
    );
    ctx.ok(&r, "POST /echo");
    ctx.check_eq(r.body.len(), body.len(), "echo length");
    let diff = r.body.iter().zip(&body).position(|(a, b)| a != b);
    ctx.check_eq(diff, None, "first differing byte");
    ctx.check_eq(
        r.header("content-type"),
        Some("application/x-noise"),
        "echo content-type",
    );

    let r = ctx.send(
        ctx.request("POST", "/echo")
            .header("Transfer-Encoding", "chunked")
            .body(&b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..]),
    );
    ctx.ok(&r, "chunked upload");
    ctx.check_eq(r.text().as_str(), "hello world", "chunked upload body");

    let r = ctx.get("/bytes?n=10485760");
    ctx.ok(&r, "GET /bytes 10 MiB");
    ctx.check_eq(r.body.len(), 10 << 20, "download length");
}

/// Malformed packets sent straight to the server get a 400 or a close, and
/// the server keeps serving nginx; SIGTERM then stops it cleanly.
#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn survives_malformed_packets_and_stops_on_sigterm() {
    let mut ctx = Ctx::start();
    let bad_request = |raw: &[u8], what: &str| {
        let r = parse_response(raw, false)
            .unwrap_or_else(|e| ctx.fail(format!("{what}: {e}: {raw:?}")));
        ctx.check_eq(r.status, 400, what);
        ctx.check_eq(r.version.as_str(), "HTTP/1.0", what);
    };
    // An HTTP request where a uwsgi packet belongs: modifier1 is 'G'.
    let raw = ctx.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    bad_request(&raw, "an HTTP request");
    // A variable whose size runs past the packet.
    let mut cut = packet(0, &[("REQUEST_METHOD", "GET")]);
    cut[4] = 200;
    bad_request(&ctx.raw(&cut), "a variable cut short");
    // A modifier this server does not speak.
    bad_request(&ctx.raw(&packet(5, &[])), "modifier1 5");
    // A packet that ends before its declared size: the server closes
    // without an answer.
    let raw = ctx.raw(&[0, 0xff, 0x7f, 0, 1, 0]);
    ctx.check(raw.is_empty(), || format!("a truncated packet got {raw:?}"));
    // Garbage.
    let raw = ctx.raw(&noise(1000));
    ctx.check(raw.is_empty() || raw.starts_with(b"HTTP/1.0 400 "), || {
        format!("garbage got {:?}", String::from_utf8_lossy(&raw))
    });
    // A well-formed request straight to the server.
    let raw = ctx.raw(&packet(
        0,
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/hello"),
            ("CONTENT_LENGTH", ""),
        ],
    ));
    ctx.check(
        raw.starts_with(b"HTTP/1.0 200 OK\r\n") && raw.ends_with(b"\r\n\r\nHello, world!\n"),
        || format!("direct request got {:?}", String::from_utf8_lossy(&raw)),
    );

    let running = ctx.setup.backend_running();
    ctx.check(running, || "the uwsgi server exited".to_owned());
    let r = ctx.get("/hello");
    ctx.ok(&r, "/hello after the malformed packets");

    let status = ctx
        .setup
        .stop_backend(Duration::from_secs(10))
        .unwrap_or_else(|e| ctx.fail(format!("stopping the uwsgi server: {e}")));
    ctx.check(status.success(), || {
        format!("the uwsgi server did not stop cleanly on SIGTERM: {status}")
    });
}

/// The cases every front end runs: a chunked upload (nginx holds the whole
/// body and sends its length), a streamed response, an 8 MiB download, HEAD,
/// and 40 slow requests at once.
#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn chunked_upload() {
    let ctx = Ctx::start();
    cases::chunked_upload(&ctx.setup, 1 << 20);
    let (length, read) = cases::chunked_environ(&ctx.setup, 100_000);
    ctx.check_eq(length.as_deref(), Some("100000"), "CONTENT_LENGTH");
    ctx.check_eq(read, 100_000, "body length the application read");
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn streamed_response() {
    cases::streamed_response(&Ctx::start().setup, 10);
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn download_8mib() {
    cases::download(&Ctx::start().setup, cases::DOWNLOAD_LEN);
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn head() {
    cases::head(&Ctx::start().setup);
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn forty_slow_requests_at_once() {
    let ctx = Ctx::start();
    let delay = Duration::from_millis(500);
    let took = cases::concurrent_slow(&ctx.setup, delay);
    ctx.check(took < delay * 10, || {
        format!(
            "{} requests of {delay:?} took {took:?}",
            cases::SLOW_REQUESTS
        )
    });
}

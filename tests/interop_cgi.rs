//! The conformance example as a CGI program behind real web servers:
//! Apache httpd (mod_cgid), lighttpd (mod_cgi) and nginx with fcgiwrap, each
//! configured from `examples/webservers/cgi/` and mounted at
//! `/cgi/conformance`. (Caddy and HAProxy cannot run CGI programs.)
//!
//! These tests need the servers installed, so they are ignored by a plain
//! `cargo test`; `.ci/run` installs the Debian packages and runs them with
//! `--ignored`. A missing server fails the test with the package to
//! install. Each test starts its own server on a free loopback port.

use std::time::Duration;

use gateway_test::cases;
use gateway_test::http_client::{Completion, Framing, JsonValue, Request, Response};
use gateway_test::webserver::{Kind, WebServer, example_binary};

/// wsgiref's `error_body`, the page sent when the app fails before its head.
const ERROR_PAGE: &[u8] = b"A server error occurred.  Please contact the administrator.";

/// A running server plus helpers whose failures carry its logs.
struct Ctx {
    server: WebServer,
}

/// Like `assert!`, with the server's logs in the message.
macro_rules! check {
    ($ctx:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $ctx.fail(format!($($msg)+));
        }
    };
}

/// Like `assert_eq!`, with the server's logs in the message.
macro_rules! check_eq {
    ($ctx:expr, $left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            $ctx.fail(format!("{}\n  left: {:?}\n right: {:?}", format!($($msg)+), left, right));
        }
    }};
}

impl Ctx {
    fn start(kind: Kind) -> Ctx {
        let program = conformance_program();
        match WebServer::start(kind, &program) {
            Ok(server) => Ctx { server },
            Err(e) => panic!("{kind}: {e}"),
        }
    }

    fn kind(&self) -> Kind {
        self.server.kind()
    }

    fn fail(&self, message: String) -> ! {
        panic!("{}: {message}\n{}", self.kind(), self.server.error_log())
    }

    fn send(&self, request: Request) -> Response {
        match request.send(self.server.addr()) {
            Ok(response) => response,
            Err(e) => self.fail(format!("request failed: {e}")),
        }
    }

    /// `method` on `path_and_query` under the mount prefix.
    fn request(&self, method: &str, path_and_query: &str) -> Request {
        Request::new(method, &self.server.target(path_and_query))
    }

    fn get(&self, path_and_query: &str) -> Response {
        self.send(self.request("GET", path_and_query))
    }

    /// A 200 response whose body arrived whole.
    fn ok(&self, response: &Response, what: &str) {
        check_eq!(
            self,
            response.status,
            200,
            "{what}: status; body {:?}",
            response.text()
        );
        check_eq!(
            self,
            response.completion,
            Completion::Complete,
            "{what}: body completion"
        );
    }

    /// GET `/environ...` and its JSON document.
    fn environ(&self, request: Request, what: &str) -> Environ {
        let response = self.send(request);
        self.ok(&response, what);
        check!(
            self,
            response
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{what}: content-type {:?}",
            response.header("content-type")
        );
        match response.json() {
            Ok(doc) => Environ { doc },
            Err(e) => self.fail(format!(
                "{what}: body is not JSON ({e}): {:?}",
                response.text()
            )),
        }
    }
}

/// The `/environ` document.
struct Environ {
    doc: JsonValue,
}

impl Environ {
    /// A CGI meta-variable as the app saw it.
    fn var(&self, name: &str) -> Option<&str> {
        self.doc["environ"][name].as_str()
    }

    /// The path and query the app saw.
    fn uri(&self) -> Option<&str> {
        self.doc["uri"].as_str()
    }

    /// The request headers the app saw, in order.
    fn headers(&self) -> Vec<(&str, &str)> {
        self.doc["headers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|pair| Some((pair[0].as_str()?, pair[1].as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn conformance_program() -> std::path::PathBuf {
    example_binary("conformance").unwrap_or_else(|e| panic!("{e}"))
}

/// 1 MiB with no repeating pattern (xorshift), so a lost, doubled or
/// reordered block shows.
fn one_mib() -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// GET /hello: a plain document response; the program's Status header is
/// consumed, not passed on.
fn hello(ctx: &Ctx) {
    let r = ctx.get("/hello");
    ctx.ok(&r, "GET /hello");
    check_eq!(
        ctx,
        r.header("content-type"),
        Some("text/plain"),
        "content-type"
    );
    check_eq!(ctx, r.text(), "Hello, world!\n", "body");
    check_eq!(ctx, r.header("status"), None, "a Status header passed on");
}

/// The request line and the CGI meta-variables for a GET with a query:
/// QUERY_STRING stays raw, and the app's URI keeps the mount prefix and the
/// query.
fn query_string(ctx: &Ctx) {
    let env = ctx.environ(
        ctx.request("GET", "/environ?a=1&b=%20x"),
        "GET /environ?a=1&b=%20x",
    );
    let port = ctx.server.addr().port().to_string();
    check_eq!(
        ctx,
        env.var("QUERY_STRING"),
        Some("a=1&b=%20x"),
        "QUERY_STRING"
    );
    check_eq!(
        ctx,
        env.uri(),
        Some("/cgi/conformance/environ?a=1&b=%20x"),
        "uri"
    );
    check_eq!(ctx, env.doc["method"].as_str(), Some("GET"), "method");
    check_eq!(
        ctx,
        env.var("REQUEST_METHOD"),
        Some("GET"),
        "REQUEST_METHOD"
    );
    check_eq!(
        ctx,
        env.var("SCRIPT_NAME"),
        Some("/cgi/conformance"),
        "SCRIPT_NAME"
    );
    check_eq!(ctx, env.var("PATH_INFO"), Some("/environ"), "PATH_INFO");
    check_eq!(
        ctx,
        env.var("GATEWAY_INTERFACE"),
        Some("CGI/1.1"),
        "GATEWAY_INTERFACE"
    );
    check_eq!(
        ctx,
        env.var("SERVER_PROTOCOL"),
        Some("HTTP/1.1"),
        "SERVER_PROTOCOL"
    );
    check_eq!(
        ctx,
        env.var("SERVER_PORT"),
        Some(port.as_str()),
        "SERVER_PORT"
    );
    check_eq!(
        ctx,
        env.var("REMOTE_ADDR"),
        Some("127.0.0.1"),
        "REMOTE_ADDR"
    );
    check_eq!(ctx, env.doc["body_len"].as_u64(), Some(0), "body_len");
}

/// POST of 1 MiB to /echo comes back byte for byte (the body is read up to
/// CONTENT_LENGTH, and the response streams out whole).
///
/// Apache's mod_cgid and fcgiwrap write the whole request body to the
/// program before they read its output, so a program that answers while it
/// still reads its input must not block on a full output pipe: if this
/// test times out behind those two but passes behind lighttpd, that is the
/// cause.
fn post_echo_1mib(ctx: &Ctx) {
    let body = one_mib();
    let r = ctx.send(
        ctx.request("POST", "/echo")
            .header("Content-Type", "application/x-conformance")
            .body(body.clone()),
    );
    ctx.ok(&r, "POST /echo (1 MiB)");
    check_eq!(
        ctx,
        r.header("content-type"),
        Some("application/x-conformance"),
        "content-type"
    );
    check_eq!(ctx, r.body.len(), body.len(), "echoed length");
    let first_diff = r.body.iter().zip(&body).position(|(a, b)| a != b);
    check_eq!(ctx, first_diff, None, "first differing byte");
}

/// Request headers reach the app both as headers and as HTTP_* variables;
/// Authorization is passed (Apache only with `CGIPassAuth On`);
/// a client's `Proxy:` header never becomes HTTP_PROXY (httpoxy).
fn request_headers(ctx: &Ctx) {
    let request = ctx
        .request("GET", "/environ")
        .header("X-Custom-One", "abc")
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .header("Proxy", "http://127.0.0.1:9/");
    let env = ctx.environ(request, "GET /environ with headers");
    let headers = env.headers();
    check!(
        ctx,
        headers.contains(&("x-custom-one", "abc")),
        "x-custom-one missing from {headers:?}"
    );
    check_eq!(
        ctx,
        env.var("HTTP_X_CUSTOM_ONE"),
        Some("abc"),
        "HTTP_X_CUSTOM_ONE"
    );
    check!(
        ctx,
        headers.contains(&("authorization", "Basic Zm9vOmJhcg==")),
        "authorization missing from {headers:?}"
    );
    check!(
        ctx,
        !headers.iter().any(|(n, _)| *n == "proxy"),
        "proxy header reached the app: {headers:?}"
    );
    check!(
        ctx,
        env.var("HTTP_PROXY").is_none_or(str::is_empty),
        "HTTP_PROXY reached the app: {:?}",
        env.var("HTTP_PROXY")
    );
}

/// A PATH_INFO with percent-encoded characters, `%2F` included. The servers
/// decode PATH_INFO (RFC 3875 §4.1.5) but keep the raw REQUEST_URI, so the
/// app's URI must come out with `%20` and `%2F` as sent.
fn path_info_encoded(ctx: &Ctx) {
    let target = "/environ/a%20b/c%2Fd";
    let env = ctx.environ(ctx.request("GET", target), "GET /environ/a%20b/c%2Fd");
    check_eq!(
        ctx,
        env.var("SCRIPT_NAME"),
        Some("/cgi/conformance"),
        "SCRIPT_NAME"
    );
    check!(
        ctx,
        env.uri().is_some_and(|u| u.ends_with(target)),
        "uri {:?} does not end with {target}",
        env.uri()
    );
    check_eq!(
        ctx,
        env.uri(),
        Some("/cgi/conformance/environ/a%20b/c%2Fd"),
        "uri"
    );
    check_eq!(
        ctx,
        env.var("REQUEST_URI"),
        Some("/cgi/conformance/environ/a%20b/c%2Fd"),
        "REQUEST_URI (raw)"
    );
    let expected_path_info = match ctx.kind() {
        // `AllowEncodedSlashes NoDecode` decodes everything but `%2F`.
        Kind::Apache => "/environ/a b/c%2Fd",
        // lighttpd and nginx decode `%2F` to `/` like any other escape.
        Kind::Lighttpd | Kind::NginxFcgiwrap => "/environ/a b/c/d",
    };
    check_eq!(
        ctx,
        env.var("PATH_INFO"),
        Some(expected_path_info),
        "PATH_INFO as the server sets it"
    );
}

/// HEAD: the status and headers of GET, no body.
fn head(ctx: &Ctx) {
    let r = ctx.send(ctx.request("HEAD", "/hello"));
    check_eq!(ctx, r.status, 200, "HEAD /hello status");
    check_eq!(ctx, r.framing, Framing::None, "framing");
    check_eq!(
        ctx,
        r.header("content-type"),
        Some("text/plain"),
        "content-type"
    );
    check!(
        ctx,
        r.body.is_empty(),
        "HEAD response has a body: {:?}",
        r.text()
    );
}

/// Statuses pass through; 204 has no body.
fn status(ctx: &Ctx) {
    let r = ctx.get("/status/404");
    check_eq!(ctx, r.status, 404, "/status/404 status");
    check_eq!(
        ctx,
        r.completion,
        Completion::Complete,
        "/status/404 completion"
    );
    check_eq!(ctx, r.text(), "status 404\n", "/status/404 body");
    let r = ctx.get("/status/204");
    check_eq!(ctx, r.status, 204, "/status/204 status");
    check!(
        ctx,
        r.body.is_empty(),
        "/status/204 has a body: {:?}",
        r.text()
    );
}

/// A client redirect: an explicit 302 with an absolute Location. Apache
/// turns a Location into a redirect only when the status is 200; an
/// explicit 302 passes through on every server.
fn redirect(ctx: &Ctx) {
    let r = ctx.get("/redirect?to=http://example.com/x");
    check_eq!(ctx, r.status, 302, "status; body {:?}", r.text());
    check_eq!(
        ctx,
        r.header("location"),
        Some("http://example.com/x"),
        "Location"
    );
}

/// The app fails before its head: wsgiref's error page, never the error
/// text.
fn error_before(ctx: &Ctx) {
    for path in ["/error/before", "/panic"] {
        let r = ctx.get(path);
        check_eq!(ctx, r.status, 500, "{path} status");
        check_eq!(ctx, r.completion, Completion::Complete, "{path} completion");
        check_eq!(
            ctx,
            r.header("content-type"),
            Some("text/plain"),
            "{path} content-type"
        );
        check_eq!(
            ctx,
            r.text(),
            String::from_utf8_lossy(ERROR_PAGE),
            "{path} body"
        );
    }
}

/// The app fails after its first chunk: the head is out, so the response is
/// cut short (the program exits with status 1) and never becomes the error
/// page. None of the three servers can tell the client that a CGI body was
/// cut (they end the chunked body cleanly when the program exits), so only
/// the content is checked.
fn error_after(ctx: &Ctx) {
    let r = ctx.get("/error/after");
    check_eq!(ctx, r.status, 200, "status; body {:?}", r.text());
    check!(
        ctx,
        r.body == b"partial" || r.body.is_empty(),
        "body {:?}",
        r.text()
    );
    check!(
        ctx,
        !r.body.windows(ERROR_PAGE.len()).any(|w| w == ERROR_PAGE),
        "the error page followed the head"
    );
}

/// A file body from the fixture directory.
fn file(ctx: &Ctx) {
    let r = ctx.get("/file?name=hello.txt");
    ctx.ok(&r, "GET /file?name=hello.txt");
    check_eq!(
        ctx,
        r.header("content-type"),
        Some("text/plain"),
        "content-type"
    );
    check_eq!(ctx, r.text(), "Hello from a file.\n", "body");
}

/// Larger and streamed bodies arrive whole; response headers set by the app
/// arrive.
fn bodies_and_headers(ctx: &Ctx) {
    let r = ctx.get("/bytes?n=300000");
    ctx.ok(&r, "GET /bytes?n=300000");
    check_eq!(ctx, r.body.len(), 300_000, "/bytes length");
    check!(ctx, r.body.iter().all(|&b| b == b'x'), "/bytes content");
    let r = ctx.get("/stream?chunks=4&size=1000&delay_ms=10");
    ctx.ok(&r, "GET /stream");
    check_eq!(ctx, r.body.len(), 4000, "/stream length");
    let r = ctx.get("/headers?X-Conformance=yes%20please");
    ctx.ok(&r, "GET /headers");
    check_eq!(
        ctx,
        r.header("x-conformance"),
        Some("yes please"),
        "app header"
    );
}

/// A chunked upload comes back whole, and the CONTENT_LENGTH the server
/// sets for it: lighttpd and nginx hold the whole body and set its length;
/// Apache streams it without CONTENT_LENGTH (and with
/// HTTP_TRANSFER_ENCODING), and the program reads to the end of its input.
fn chunked_upload(ctx: &Ctx) {
    cases::chunked_upload(&ctx.server, 1 << 20);
    let (length, read) = cases::chunked_environ(&ctx.server, 100_000);
    let expected = match ctx.kind() {
        Kind::Apache => None,
        Kind::Lighttpd | Kind::NginxFcgiwrap => Some("100000".to_owned()),
    };
    check_eq!(ctx, length, expected, "CONTENT_LENGTH of a chunked upload");
    check_eq!(ctx, read, 100_000, "body length the program read");
}

/// A streamed response reaches the client as the program writes it.
/// fcgiwrap holds the program's output in a buffer until it is full or the
/// program exits: small chunks arrive together at the end, large ones as
/// they come.
fn streamed_response(ctx: &Ctx) {
    if ctx.kind() == Kind::NginxFcgiwrap {
        cases::held_response(&ctx.server, 10);
        cases::streamed_response(&ctx.server, 100_000);
    } else {
        cases::streamed_response(&ctx.server, 10);
    }
}

/// An 8 MiB download arrives whole.
fn download(ctx: &Ctx) {
    cases::download(&ctx.server, cases::DOWNLOAD_LEN);
}

/// 40 requests that each take 300 ms, at once: every one succeeds (each is
/// a process of its own; nginx's fcgiwrap runs two at a time).
fn slow_requests_at_once(ctx: &Ctx) {
    let delay = Duration::from_millis(300);
    let took = cases::concurrent_slow(&ctx.server, delay);
    eprintln!(
        "{}: {} requests of {delay:?} at once took {took:?}",
        ctx.kind(),
        cases::SLOW_REQUESTS
    );
}

fn run(kind: Kind, case: fn(&Ctx)) {
    let ctx = Ctx::start(kind);
    case(&ctx);
}

/// One test per case for a server; the reason names the package.
macro_rules! suite {
    ($module:ident, $kind:expr, $reason:literal) => {
        mod $module {
            use super::*;

            #[test]
            #[ignore = $reason]
            fn hello() {
                run($kind, super::hello);
            }

            #[test]
            #[ignore = $reason]
            fn query_string() {
                run($kind, super::query_string);
            }

            #[test]
            #[ignore = $reason]
            fn post_echo_1mib() {
                run($kind, super::post_echo_1mib);
            }

            #[test]
            #[ignore = $reason]
            fn request_headers() {
                run($kind, super::request_headers);
            }

            #[test]
            #[ignore = $reason]
            fn path_info_encoded() {
                run($kind, super::path_info_encoded);
            }

            #[test]
            #[ignore = $reason]
            fn head() {
                run($kind, super::head);
            }

            #[test]
            #[ignore = $reason]
            fn status() {
                run($kind, super::status);
            }

            #[test]
            #[ignore = $reason]
            fn redirect() {
                run($kind, super::redirect);
            }

            #[test]
            #[ignore = $reason]
            fn error_before() {
                run($kind, super::error_before);
            }

            #[test]
            #[ignore = $reason]
            fn error_after() {
                run($kind, super::error_after);
            }

            #[test]
            #[ignore = $reason]
            fn file() {
                run($kind, super::file);
            }

            #[test]
            #[ignore = $reason]
            fn bodies_and_headers() {
                run($kind, super::bodies_and_headers);
            }

            #[test]
            #[ignore = $reason]
            fn chunked_upload() {
                run($kind, super::chunked_upload);
            }

            #[test]
            #[ignore = $reason]
            fn streamed_response() {
                run($kind, super::streamed_response);
            }

            #[test]
            #[ignore = $reason]
            fn download_8mib() {
                run($kind, super::download);
            }

            #[test]
            #[ignore = $reason]
            fn forty_slow_requests_at_once() {
                run($kind, super::slow_requests_at_once);
            }
        }
    };
}

suite!(apache, Kind::Apache, "needs apache2 (run by .ci/run)");
suite!(lighttpd, Kind::Lighttpd, "needs lighttpd (run by .ci/run)");
suite!(
    nginx_fcgiwrap,
    Kind::NginxFcgiwrap,
    "needs nginx and fcgiwrap (run by .ci/run)"
);

//! The conformance example as an HTTP server (`conformance http ADDR`), with
//! real clients: curl (HTTP/1.0, 1.1, keep-alive, chunked upload, HTTP/2
//! with prior knowledge), Python's `http.client`, concurrent clients, bad
//! input over raw sockets; and behind reverse proxies: nginx (`proxy_pass`
//! with upstream keep-alive), Apache httpd (`mod_proxy_http`), lighttpd
//! (`mod_proxy`), Caddy (`reverse_proxy`) and HAProxy (HTTP mode), each
//! configured from `examples/webservers/http/` and mounted at
//! `/http/conformance`.
//!
//! Tests that need curl, python3 or a web server are ignored by a plain
//! `cargo test` and run by `.ci/run`; a missing tool fails them loudly.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gateway_test::cases;
use gateway_test::frontend_http::{HTTP_MOUNT, HttpFront, HttpServer};
use gateway_test::http_client::{Completion, Framing, Request, exchange};
use gateway_test::webserver::example_binary;
use gateway_test::webserver::process::established_to;

fn program() -> PathBuf {
    example_binary("conformance").unwrap_or_else(|e| panic!("conformance example: {e}"))
}

fn server() -> HttpServer {
    HttpServer::start(&program()).unwrap_or_else(|e| panic!("conformance http: {e}"))
}

/// Runs a tool, failing loudly when it is not installed.
fn run(tool: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} is needed (Debian package {tool}): {e}"));
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).expect("stdin");
    }
    child.wait_with_output().expect("wait")
}

fn curl(args: &[&str]) -> Output {
    let mut all = vec!["-sS", "--max-time", "20"];
    all.extend_from_slice(args);
    run("curl", &all, b"")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs curl (run by .ci/run)"]
fn curl_http10_http11_keepalive_chunked_http2() {
    let srv = server();
    let hello = srv.url("/hello");
    let o = curl(&["-0", "-i", &hello]);
    assert!(stdout(&o).starts_with("HTTP/1.0 200 OK\r\n"), "{o:?}");
    assert!(stdout(&o).ends_with("Hello, world!\n"), "{o:?}");

    // Two URLs on one connection: the second reuses it (no new connect).
    let o = curl(&["-w", "[%{num_connects}]", &hello, &hello]);
    assert_eq!(stdout(&o), "Hello, world!\n[1]Hello, world!\n[0]", "{o:?}");

    let o = run(
        "curl",
        &[
            "-sS",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            &srv.url("/echo"),
        ],
        b"chunked upload body",
    );
    assert_eq!(stdout(&o), "chunked upload body", "{o:?}");

    let o = curl(&["--http2-prior-knowledge", "-w", "[%{http_version}]", &hello]);
    assert_eq!(stdout(&o), "Hello, world!\n[2]", "{o:?}");

    // Large and streamed bodies arrive whole over both versions, with and
    // without a Content-Length (the handler finishes as its last chunk goes
    // out, after the head).
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        for (path, size) in [
            ("/bytes?n=10485760", "10485760"),
            ("/stream?chunks=100&size=100000", "10000000"),
            ("/stream?chunks=5&size=3&delay_ms=20", "15"),
        ] {
            let o = curl(&[
                version,
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                &srv.url(path),
            ]);
            assert!(o.status.success(), "{version} {path}: {o:?}");
            assert_eq!(stdout(&o), size, "{version} {path}");
        }
    }

    // A body error after the head: curl sees the transfer cut.
    let o = curl(&[&srv.url("/error/after")]);
    assert!(!o.status.success(), "{o:?}");
    assert!(stdout(&o).starts_with("partial"), "{o:?}");
}

#[test]
#[ignore = "needs python3 (run by .ci/run)"]
fn python_http_client() {
    let srv = server();
    let script = format!(
        r#"
import http.client, json
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=20)
c.request("GET", "/hello")
r = c.getresponse(); assert r.status == 200, r.status; assert r.read() == b"Hello, world!\n"
c.request("POST", "/echo", body=b"abc", headers={{"Content-Type": "x/y"}})
r = c.getresponse(); assert r.read() == b"abc"; assert r.getheader("Content-Type") == "x/y"
c.request("HEAD", "/bytes?n=7")
r = c.getresponse(); assert r.getheader("Content-Length") == "7"; assert r.read() == b""
c.request("GET", "/environ?a=1", headers={{"X-Test": "v"}})
e = json.loads(c.getresponse().read())["environ"]
assert e["SCRIPT_NAME"] == "" and e["PATH_INFO"] == "/environ" and e["QUERY_STRING"] == "a=1", e
assert e["HTTP_X_TEST"] == "v" and e["SERVER_PROTOCOL"] == "HTTP/1.1", e
c.request("GET", "/stream?chunks=3&size=2")
r = c.getresponse(); assert r.getheader("Transfer-Encoding") == "chunked"; assert r.read() == b"xxxxxx"
print("ok")
"#,
        port = srv.addr().port()
    );
    let o = run("python3", &["-c", &script], b"");
    assert_eq!(
        stdout(&o).trim(),
        "ok",
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        srv.error_log()
    );
}

#[test]
fn concurrent_clients() {
    let srv = server();
    let addr = srv.addr();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let r = Request::new("GET", "/bytes?n=1000")
                        .send(addr)
                        .expect("send");
                    assert_eq!(r.status, 200);
                    assert_eq!(r.body.len(), 1000);
                    assert!(r.completion.is_complete());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn bad_input_over_raw_sockets_keeps_the_server_up() {
    let mut srv = server();
    let addr = srv.addr();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "raw non-ASCII target",
            b"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            " 400 ",
        ),
        (
            "two Content-Lengths",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
            " 400 ",
        ),
        (
            "obs-fold",
            b"GET /hello HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n".to_vec(),
            " 400 ",
        ),
        ("head over 64 KiB", long_target.into_bytes(), " 431 "),
    ];
    for (what, req, want) in cases {
        let out = exchange(addr, &req).unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1") && text.contains(want),
            "{what}: {text}"
        );
        let r = Request::new("GET", "/hello")
            .send(addr)
            .expect("still serving");
        assert_eq!(r.status, 200, "{what}");
    }
    assert!(srv.backend_running());
}

/// The five cases every front end runs, against the server alone.
#[test]
fn alone_chunked_upload() {
    let srv = server();
    cases::chunked_upload(&srv, 1 << 20);
    cases::chunked_environ(&srv, 100_000);
}

#[test]
fn alone_streamed_response() {
    cases::streamed_response(&server(), 10);
}

#[test]
fn alone_download_8mib() {
    cases::download(&server(), cases::DOWNLOAD_LEN);
}

#[test]
fn alone_head() {
    cases::head(&server());
}

#[test]
fn alone_forty_slow_requests_at_once() {
    let took = cases::concurrent_slow(&server(), Duration::from_millis(500));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A reverse proxy in front of the server.
struct Proxied {
    srv: HttpServer,
    front: HttpFront,
}

impl Proxied {
    fn start(front: HttpFront) -> Proxied {
        let srv = HttpServer::behind(front, &program()).unwrap_or_else(|e| panic!("{front}: {e}"));
        Proxied { srv, front }
    }

    fn fail(&self, message: String) -> ! {
        cases::fail(&self.srv, &message)
    }

    fn get(&self, path: &str) -> gateway_test::http_client::Response {
        cases::send(&self.srv, &Request::new("GET", &self.srv.target(path)))
    }
}

/// What a client may see of a response the application aborts after its
/// head (`/error/after`, chunked): a cut-off body, except through Caddy,
/// which ends it like a whole one, and lighttpd, which sends what it got
/// with its length when the whole partial response arrived before it had
/// sent anything (both look whole).
fn abort_seen(front: HttpFront) -> &'static [(Framing, Completion)] {
    match front {
        HttpFront::Caddy => &[(Framing::Chunked, Completion::Complete)],
        HttpFront::Lighttpd => &[
            (Framing::Chunked, Completion::Truncated),
            (Framing::ContentLength(7), Completion::Complete),
        ],
        _ => &[(Framing::Chunked, Completion::Truncated)],
    }
}

/// Routes through the proxy: the path as sent, the forwarding headers, an
/// upload, a stream, and a response aborted after its head; connections to
/// the application are kept open between requests except by lighttpd.
fn proxied_routes(p: &Proxied) {
    let srv = &p.srv;
    for _ in 0..5 {
        let r = p.get("/hello");
        cases::expect_ok(srv, &r, "/hello");
        if r.text() != "Hello, world!\n" {
            p.fail(format!("/hello body {:?}", r.text()));
        }
    }
    let keeps = p.front != HttpFront::Lighttpd;
    // lighttpd closes each connection after its response: give it time.
    let mut open = established_to(srv.backend().port());
    for _ in 0..50 {
        if keeps || open == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        open = established_to(srv.backend().port());
    }
    if keeps != (open > 0) {
        p.fail(format!(
            "{open} connections from the proxy to the application left open"
        ));
    }
    let r = cases::send(
        srv,
        &Request::new("POST", &srv.target("/echo"))
            .header("Content-Type", "a/b")
            .body(vec![b'q'; 100_000]),
    );
    cases::expect_ok(srv, &r, "POST /echo");
    if r.body.len() != 100_000 || r.header("content-type") != Some("a/b") {
        p.fail(format!(
            "POST /echo: {} bytes, {:?}",
            r.body.len(),
            r.header("content-type")
        ));
    }
    let r = p.get("/environ/a%20b?x=1");
    cases::expect_ok(srv, &r, "/environ");
    let doc = r
        .json()
        .unwrap_or_else(|e| p.fail(format!("/environ: not JSON: {e}")));
    let env = &doc["environ"];
    if env["PATH_INFO"] != format!("{HTTP_MOUNT}/environ/a b")
        || env["REQUEST_URI"] != format!("{HTTP_MOUNT}/environ/a%20b?x=1")
        || env["QUERY_STRING"] != "x=1"
        || env["REMOTE_ADDR"] != "127.0.0.1"
        || !env["HTTP_X_FORWARDED_FOR"].is_string()
    {
        p.fail(format!("/environ: {env}"));
    }
    let r = p.get("/error/after");
    let seen = (r.framing, r.completion.clone());
    if r.status != 200 || !b"partial".starts_with(&r.body) || !abort_seen(p.front).contains(&seen) {
        p.fail(format!(
            "/error/after: status {} {:?} {:?} body {:?}",
            r.status,
            r.framing,
            r.completion,
            r.text()
        ));
    }
    // With a declared length, every proxy shows the cut.
    let r = p.get("/error/after?length=100");
    if r.status != 200 || r.completion != Completion::Truncated {
        p.fail(format!(
            "/error/after?length=100: status {} {:?} {:?} body {:?}",
            r.status,
            r.framing,
            r.completion,
            r.text()
        ));
    }
    cases::expect_ok(srv, &p.get("/hello"), "/hello after the abort");
}

macro_rules! proxy_suite {
    ($module:ident, $front:expr, $reason:literal) => {
        mod $module {
            use super::*;

            #[test]
            #[ignore = $reason]
            fn routes() {
                proxied_routes(&Proxied::start($front));
            }

            #[test]
            #[ignore = $reason]
            fn chunked_upload() {
                let p = Proxied::start($front);
                cases::chunked_upload(&p.srv, 10 << 20);
                let (length, read) = cases::chunked_environ(&p.srv, 100_000);
                // The application server sees the proxy's framing: lighttpd
                // holds the whole body and sends its length, the others pass
                // it on chunked.
                let expected = ($front == HttpFront::Lighttpd).then(|| "100000".to_owned());
                if read != 100_000 || length != expected {
                    p.fail(format!(
                        "chunked upload: CONTENT_LENGTH {length:?}, read {read}"
                    ));
                }
            }

            #[test]
            #[ignore = $reason]
            fn streamed_response() {
                cases::streamed_response(&Proxied::start($front).srv, 10);
            }

            #[test]
            #[ignore = $reason]
            fn download_8mib() {
                cases::download(&Proxied::start($front).srv, cases::DOWNLOAD_LEN);
            }

            #[test]
            #[ignore = $reason]
            fn head() {
                cases::head(&Proxied::start($front).srv);
            }

            #[test]
            #[ignore = $reason]
            fn status_page_and_metrics() {
                cases::metrics(&Proxied::start($front).srv);
            }

            #[test]
            #[ignore = $reason]
            fn forty_slow_requests_at_once() {
                let p = Proxied::start($front);
                let delay = Duration::from_millis(500);
                let took = cases::concurrent_slow(&p.srv, delay);
                eprintln!(
                    "{}: {} requests of {delay:?} at once took {took:?}",
                    p.front,
                    cases::SLOW_REQUESTS
                );
                if took > delay * 10 {
                    p.fail(format!(
                        "{} requests of {delay:?} took {took:?}",
                        cases::SLOW_REQUESTS
                    ));
                }
            }
        }
    };
}

proxy_suite!(nginx, HttpFront::Nginx, "needs nginx (run by .ci/run)");
proxy_suite!(apache, HttpFront::Apache, "needs apache2 (run by .ci/run)");
proxy_suite!(
    lighttpd,
    HttpFront::Lighttpd,
    "needs lighttpd (run by .ci/run)"
);
proxy_suite!(caddy, HttpFront::Caddy, "needs caddy (run by .ci/run)");
proxy_suite!(
    haproxy,
    HttpFront::Haproxy,
    "needs haproxy (run by .ci/run)"
);

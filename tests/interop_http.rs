//! The conformance example as an HTTP server (`conformance http ADDR`), with
//! real clients: curl (HTTP/1.0, 1.1, keep-alive, chunked upload, HTTP/2
//! with prior knowledge), Python's `http.client`, concurrent clients, bad
//! input over raw sockets, and nginx in front with `proxy_pass` and upstream
//! keep-alive (`examples/webservers/http/nginx.conf`).
//!
//! Tests that need curl, python3 or nginx are ignored by a plain
//! `cargo test` and run by `.ci/run`; a missing tool fails them loudly.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use gateway_test::frontend_http::HttpServer;
use gateway_test::http_client::{Completion, Request, exchange};
use gateway_test::webserver::example_binary;

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

    // H11: a body error after the head: curl sees the transfer cut.
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
            "raw non-ASCII target (H5)",
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
        ("head over 64 KiB (B8)", long_target.into_bytes(), " 431 "),
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

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_proxy_pass_with_upstream_keepalive() {
    let srv = HttpServer::behind_nginx(&program()).unwrap_or_else(|e| panic!("nginx: {e}"));
    let addr = srv.addr();
    for _ in 0..5 {
        let r = Request::new("GET", &srv.target("/hello"))
            .send(addr)
            .expect("send");
        assert_eq!(r.status, 200, "{}", srv.error_log());
        assert_eq!(r.text(), "Hello, world!\n");
    }
    let r = Request::new("POST", &srv.target("/echo"))
        .header("Content-Type", "a/b")
        .body(vec![b'q'; 100_000])
        .send(addr)
        .expect("send");
    assert_eq!(r.body.len(), 100_000, "{}", srv.error_log());
    let r = Request::new("GET", &srv.target("/environ"))
        .send(addr)
        .expect("send");
    let env = &r.json().expect("json")["environ"];
    assert_eq!(
        env["PATH_INFO"],
        format!("{}/environ", gateway_test::frontend_http::HTTP_MOUNT)
    );
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert!(env["HTTP_X_FORWARDED_FOR"].is_string(), "{env}");
    let r = Request::new("GET", &srv.target("/stream?chunks=4&size=3"))
        .send(addr)
        .expect("send");
    assert_eq!(r.text(), "x".repeat(12), "{}", srv.error_log());
    // H11 through the proxy: nginx passes the cut on as a cut.
    let r = Request::new("GET", &srv.target("/error/after"))
        .send(addr)
        .expect("send");
    assert_eq!(r.completion, Completion::Truncated, "{r:?}");
}

//! The CGI backend as a real process: the `conformance` example run the way
//! a web server runs a CGI program (CHECKLIST G3, G8, G9, G10, httpoxy).
//! Hermetic: no web server needed.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `<target>/debug/examples/conformance`, built by cargo before the tests.
fn conformance() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("conformance");
    assert!(
        bin.exists(),
        "{} is missing: build the examples first",
        bin.display()
    );
    bin
}

struct Run {
    stdout: Vec<u8>,
    stderr: String,
    code: Option<i32>,
}

fn cgi(args: &[&str], vars: &[(&str, &[u8])], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(conformance());
    cmd.args(args).env_clear();
    cmd.env("GATEWAY_INTERFACE", "CGI/1.1");
    for (n, v) in vars {
        cmd.env(n, std::ffi::OsStr::from_bytes(v));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn conformance");
    let mut input = child.stdin.take().expect("stdin");
    // A program that answers without reading its body (a 400) may exit
    // before the write: a broken pipe here is the program's right.
    if let Err(e) = input.write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait");
    Run {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

fn split(out: &[u8]) -> (String, Vec<u8>) {
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line after the head");
    (
        String::from_utf8_lossy(&out[..at]).into_owned(),
        out[at + 4..].to_vec(),
    )
}

#[test]
fn hello_is_a_cgi_response() {
    let r = cgi(
        &[],
        &[("REQUEST_METHOD", b"GET"), ("PATH_INFO", b"/hello")],
        b"",
    );
    assert_eq!(
        r.stdout,
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n"
    );
    assert_eq!(r.code, Some(0));
    assert_eq!(r.stderr, "");
}

/// G3: the body is CONTENT_LENGTH bytes of stdin, echoed intact.
#[test]
fn g3_post_body_is_echoed() {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let len = body.len().to_string();
    let r = cgi(
        &[],
        &[
            ("REQUEST_METHOD", b"POST"),
            ("PATH_INFO", b"/echo"),
            ("CONTENT_LENGTH", len.as_bytes()),
            ("CONTENT_TYPE", b"application/x-test"),
        ],
        &body,
    );
    let (head, got) = split(&r.stdout);
    assert!(head.contains("Content-Type: application/x-test"), "{head}");
    assert!(head.contains(&format!("Content-Length: {len}")), "{head}");
    assert!(got == body, "echoed body differs");
}

/// A chunked upload as Apache's mod_cgid passes it: no CONTENT_LENGTH,
/// `HTTP_TRANSFER_ENCODING: chunked`, the body on stdin up to end of file.
/// The body reaches the application whole; it is never dropped.
#[test]
fn chunked_upload_without_a_length_is_read_to_end_of_file() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let r = cgi(
        &[],
        &[
            ("REQUEST_METHOD", b"POST"),
            ("PATH_INFO", b"/echo"),
            ("HTTP_TRANSFER_ENCODING", b"chunked"),
            ("CONTENT_TYPE", b"application/x-test"),
        ],
        &body,
    );
    let (head, got) = split(&r.stdout);
    assert!(head.starts_with("Status: 200 OK"), "{head}");
    assert!(got == body, "echoed body differs ({} bytes)", got.len());
}

/// `CONTENT_LENGTH: -1` (a body of unknown length) is read to end of file
/// too, and bounded by nothing else here.
#[test]
fn content_length_minus_one_is_read_to_end_of_file() {
    let r = cgi(
        &[],
        &[
            ("REQUEST_METHOD", b"POST"),
            ("PATH_INFO", b"/echo"),
            ("CONTENT_LENGTH", b"-1"),
        ],
        b"unknown length",
    );
    let (_, got) = split(&r.stdout);
    assert_eq!(got, b"unknown length");
}

/// G8: NPH mode writes a full status line with the request's version, Date,
/// and Connection: close.
#[test]
fn g8_nph_head() {
    let r = cgi(
        &["nph"],
        &[
            ("REQUEST_METHOD", b"GET"),
            ("PATH_INFO", b"/hello"),
            ("SERVER_PROTOCOL", b"HTTP/1.1"),
        ],
        b"",
    );
    let (head, body) = split(&r.stdout);
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.1 200 OK");
    assert!(
        lines[1].starts_with("Date: ") && lines[1].ends_with(" GMT"),
        "{head}"
    );
    assert!(lines.contains(&"Connection: close"), "{head}");
    assert!(!head.contains("Status:"), "{head}");
    assert_eq!(body, b"Hello, world!\n");
}

/// G9: the error page exits 0 (the page is the report); an aborted response
/// exits non-zero so the web server can tell.
#[test]
fn g9_exit_status() {
    let r = cgi(
        &[],
        &[("REQUEST_METHOD", b"GET"), ("PATH_INFO", b"/error/before")],
        b"",
    );
    assert!(
        r.stdout
            .starts_with(b"Status: 500 Internal Server Error\r\n")
    );
    assert_eq!(r.code, Some(0));
    assert!(
        r.stderr.contains("deliberate failure before the body"),
        "{}",
        r.stderr
    );

    let r = cgi(
        &[],
        &[("REQUEST_METHOD", b"GET"), ("PATH_INFO", b"/error/after")],
        b"",
    );
    let (head, body) = split(&r.stdout);
    assert!(head.starts_with("Status: 200 OK"), "{head}");
    assert_eq!(body, b"partial");
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("deliberate failure after the first chunk"),
        "{}",
        r.stderr
    );
}

/// G10: the environment is read as raw bytes: a value that is not UTF-8
/// reaches the app unchanged (the JSON decodes bytes as ISO-8859-1).
#[test]
fn g10_raw_environment_bytes() {
    let r = cgi(
        &[],
        &[
            ("REQUEST_METHOD", b"GET"),
            ("PATH_INFO", b"/environ/caf\xe9"),
            ("HTTP_X_RAW", b"\xff\xfe ok"),
        ],
        b"",
    );
    let (_, body) = split(&r.stdout);
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(doc["environ"]["PATH_INFO"], "/environ/caf\u{e9}");
    assert_eq!(doc["environ"]["HTTP_X_RAW"], "\u{ff}\u{fe} ok");
    assert_eq!(doc["uri"], "/environ/caf%E9");
    // A header value may hold obs-text bytes: it reaches the app too.
    let headers = doc["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "x-raw" && h[1] == "\u{ff}\u{fe} ok")
    );
}

/// httpoxy: a client's `Proxy:` header arrives as HTTP_PROXY; the program
/// re-executes without it, so neither the environment nor the headers
/// carry it.
#[test]
fn httpoxy_http_proxy_is_removed() {
    let r = cgi(
        &[],
        &[
            ("REQUEST_METHOD", b"GET"),
            ("PATH_INFO", b"/environ"),
            ("HTTP_PROXY", b"http://attacker.example:3128"),
        ],
        b"",
    );
    let (_, body) = split(&r.stdout);
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(doc["environ"].get("HTTP_PROXY").is_none(), "{doc}");
    assert!(doc["environ"]["PATH_INFO"] == "/environ", "{doc}");
    let headers = doc["headers"].as_array().unwrap();
    assert!(!headers.iter().any(|h| h[0] == "proxy"), "{doc}");
}

/// B6: a non-numeric CONTENT_LENGTH is answered 400, not a crash.
#[test]
fn b6_bad_content_length() {
    let r = cgi(
        &[],
        &[
            ("REQUEST_METHOD", b"POST"),
            ("PATH_INFO", b"/echo"),
            ("CONTENT_LENGTH", b"ten"),
        ],
        b"0123456789",
    );
    assert!(r.stdout.starts_with(b"Status: 400 Bad Request\r\n"));
    assert_eq!(r.code, Some(0));
}

/// A program that writes a large response before reading a large body must
/// not deadlock against a web server that writes the whole body first (as
/// Apache and fcgiwrap do, and as this test does): the gateway reads the
/// body ahead once the response passes a pipe's worth.
#[test]
fn large_response_before_reading_large_body_does_not_deadlock() {
    let body = vec![b'b'; 3 << 20];
    let len = body.len().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = cgi(
            &[],
            &[
                ("REQUEST_METHOD", b"POST"),
                ("PATH_INFO", b"/bytes"),
                ("QUERY_STRING", b"n=1000000"),
                ("CONTENT_LENGTH", len.as_bytes()),
            ],
            &body,
        );
        let _ = tx.send(r);
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the CGI program and its client deadlocked");
    let (head, got) = split(&r.stdout);
    assert!(head.contains("Content-Length: 1000000"), "{head}");
    assert_eq!(got.len(), 1_000_000);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

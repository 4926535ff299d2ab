//! The conformance example run as a CGI program the way IIS runs it, and as
//! a plain CGI program, with the environment and stdin a web server would
//! give it. Hermetic: no web server is needed, the process is started
//! directly.
//!
//! IIS's CGI repeats SCRIPT_NAME at the start of PATH_INFO (CHECKLIST I1);
//! `conformance iis-cgi` must undo that before anything else.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gateway_test::http_client::{JsonValue, Response, parse_cgi_output};
use gateway_test::webserver::example_binary;

const ERROR_PAGE: &str = "A server error occurred.  Please contact the administrator.";

/// What one run of the program gave.
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn response(&self) -> Response {
        parse_cgi_output(&self.stdout).unwrap_or_else(|e| panic!("{e}\n{self:?}"))
    }

    fn environ(&self) -> JsonValue {
        let response = self.response();
        assert_eq!(response.status, 200, "{self:?}");
        response
            .json()
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}; stdout {:?}; stderr {:?}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

/// Runs the conformance program with `args`, exactly the environment `env`
/// and `stdin`, killing it if it takes more than 30 s.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let program = example_binary("conformance").unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the conformance program");
    let mut input = child.stdin.take().expect("stdin");
    let mut output = child.stdout.take().expect("stdout");
    let mut errors = child.stderr.take().expect("stderr");
    let stdin = stdin.to_vec();
    // A program that stops reading early closes the pipe: not an error here.
    let writer = std::thread::spawn(move || drop(input.write_all(&stdin)));
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        output.read_to_end(&mut out).map(|_| out)
    });
    let error_reader = std::thread::spawn(move || {
        let mut err = String::new();
        errors.read_to_string(&mut err).map(|_| err)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the conformance program did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    writer.join().expect("stdin writer");
    Run {
        status,
        stdout: reader.join().expect("stdout reader").expect("read stdout"),
        stderr: error_reader
            .join()
            .expect("stderr reader")
            .expect("read stderr"),
    }
}

/// The variables IIS 10 sets for a CGI request, with SCRIPT_NAME and
/// PATH_INFO as given (IIS puts the script's path into both).
fn iis_env<'a>(
    method: &'a str,
    script_name: &'a str,
    path_info: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("SERVER_SOFTWARE", "Microsoft-IIS/10.0"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", method),
        ("SCRIPT_NAME", script_name),
        ("HTTPS", "off"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("QUERY_STRING", "q=1"),
        ("HTTP_HOST", "example.com"),
        ("CONTENT_LENGTH", "0"),
    ];
    if let Some(path_info) = path_info {
        env.push(("PATH_INFO", path_info));
    }
    env
}

fn var<'a>(doc: &'a JsonValue, name: &str) -> Option<&'a str> {
    doc["environ"][name].as_str()
}

/// I1: IIS's PATH_INFO `/app.exe/environ/x` for SCRIPT_NAME `/app.exe`
/// becomes `/environ/x`; the app's path is `/app.exe/environ/x`.
#[test]
fn i1_iis_path_info_loses_the_script_name() {
    let run = run(
        &["iis-cgi"],
        &iis_env("GET", "/app.exe", Some("/app.exe/environ/x")),
        b"",
    );
    assert!(run.stdout.starts_with(b"Status: 200 OK\r\n"), "{run:?}");
    assert!(run.status.success(), "{run:?}");
    let doc = run.environ();
    assert_eq!(var(&doc, "PATH_INFO"), Some("/environ/x"), "{run:?}");
    assert_eq!(var(&doc, "SCRIPT_NAME"), Some("/app.exe"), "{run:?}");
    assert_eq!(
        var(&doc, "SERVER_SOFTWARE"),
        Some("Microsoft-IIS/10.0"),
        "{run:?}"
    );
    assert_eq!(
        doc["uri"].as_str(),
        Some("/app.exe/environ/x?q=1"),
        "{run:?}"
    );
    assert_eq!(doc["method"].as_str(), Some("GET"), "{run:?}");
}

/// I1 vectors, as far as the app's path shows them (the route must be a
/// path segment, so some vectors use a script named `environ`).
#[test]
fn i1_vectors() {
    // (SCRIPT_NAME, PATH_INFO, PATH_INFO after the fix, the app's path)
    let vectors: [(&str, Option<&str>, &str, &str); 6] = [
        // PATH_INFO == SCRIPT_NAME → "".
        ("/environ", Some("/environ"), "", "/environ"),
        // A trailing slash survives.
        ("/environ", Some("/environ/"), "/", "/environ/"),
        // SCRIPT_NAME is a prefix, but not at a segment boundary: unchanged.
        (
            "/app",
            Some("/appx/environ"),
            "/appx/environ",
            "/app/appx/environ",
        ),
        // Not a prefix at all: unchanged.
        ("/app.exe", Some("/environ"), "/environ", "/app.exe/environ"),
        // I2: the comparison is case-sensitive.
        (
            "/App.exe",
            Some("/app.exe/environ"),
            "/app.exe/environ",
            "/App.exe/app.exe/environ",
        ),
        // No PATH_INFO at all.
        ("/environ", None, "", "/environ"),
    ];
    for (script_name, path_info, fixed, path) in vectors {
        let run = run(&["iis-cgi"], &iis_env("GET", script_name, path_info), b"");
        let doc = run.environ();
        let what = format!("SCRIPT_NAME={script_name:?} PATH_INFO={path_info:?}: {run:?}");
        assert_eq!(var(&doc, "PATH_INFO").unwrap_or(""), fixed, "{what}");
        assert_eq!(
            doc["uri"].as_str(),
            Some(format!("{path}?q=1").as_str()),
            "{what}"
        );
    }
}

/// A POST body under IIS comes back whole, and no byte past CONTENT_LENGTH
/// is read (G3).
#[test]
fn iis_post_echo_reads_content_length_only() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let length = body.len().to_string();
    let mut env = iis_env("POST", "/app.exe", Some("/app.exe/echo"));
    env.retain(|(name, _)| *name != "CONTENT_LENGTH");
    env.push(("CONTENT_LENGTH", &length));
    env.push(("CONTENT_TYPE", "application/x-conformance"));
    let mut stdin = body.clone();
    stdin.extend_from_slice(b"NOT PART OF THE BODY");
    let run = run(&["iis-cgi"], &env, &stdin);
    let response = run.response();
    assert_eq!(response.status, 200, "{run:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/x-conformance"),
        "{run:?}"
    );
    assert_eq!(response.body.len(), body.len(), "{run:?}");
    assert!(response.body == body, "echoed body differs");
}

fn cgi_env<'a>(path_info: &'a str, query: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "Apache/2.4"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/cgi/conformance"),
        ("PATH_INFO", path_info),
        ("QUERY_STRING", query),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("HTTP_HOST", "localhost"),
    ]
}

/// G5: a plain CGI response, byte for byte.
#[test]
fn g5_plain_cgi_hello_exact_output() {
    let run = run(&[], &cgi_env("/hello", ""), b"");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n",
        "{run:?}"
    );
}

/// I3: plain CGI leaves a PATH_INFO that repeats SCRIPT_NAME alone.
#[test]
fn i3_plain_cgi_keeps_a_repeated_script_name() {
    let mut env = cgi_env("/app.exe/environ/x", "");
    env.retain(|(name, _)| *name != "SCRIPT_NAME");
    env.push(("SCRIPT_NAME", "/app.exe"));
    let run = run(&[], &env, b"");
    let doc = run.environ();
    assert_eq!(
        var(&doc, "PATH_INFO"),
        Some("/app.exe/environ/x"),
        "{run:?}"
    );
    assert_eq!(
        doc["uri"].as_str(),
        Some("/app.exe/app.exe/environ/x"),
        "{run:?}"
    );
}

/// G9/C36: a failure before the head is the error page, and the process
/// still exits 0 (the page is the report).
#[test]
fn g9_error_before_head_is_the_error_page() {
    for path in ["/error/before", "/panic"] {
        let run = run(&[], &cgi_env(path, ""), b"");
        assert!(run.status.success(), "{path}: {run:?}");
        let response = run.response();
        assert_eq!(response.status, 500, "{path}: {run:?}");
        assert_eq!(
            response.header("content-type"),
            Some("text/plain"),
            "{path}: {run:?}"
        );
        assert_eq!(response.text(), ERROR_PAGE, "{path}: {run:?}");
        assert!(
            !String::from_utf8_lossy(&run.stdout).contains("deliberate"),
            "{path}: {run:?}"
        );
    }
}

/// C36: a failure after the head cuts the response short: no error page,
/// and exit status 1 so the web server can tell.
#[test]
fn c36_error_after_head_aborts() {
    let run = run(&[], &cgi_env("/error/after", ""), b"");
    assert!(!run.status.success(), "{run:?}");
    let response = run.response();
    assert_eq!(response.status, 200, "{run:?}");
    assert!(
        response.body == b"partial" || response.body.is_empty(),
        "{run:?}"
    );
    assert!(!response.text().contains(ERROR_PAGE), "{run:?}");
}

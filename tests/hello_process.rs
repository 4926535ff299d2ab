//! The `hello` example as a real process, started each way `gateway::run`
//! tells apart: from a shell (HTTP), with `PORT`, as a CGI program (stdin a
//! pipe, or a connected socket as Apache's mod_cgid gives), with a
//! listening socket on fd 0 (FastCGI, SCGI and HTTP on one socket), with an
//! explicit `GATEWAY_PROTOCOL`, and with sockets passed the way systemd
//! passes them (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, readiness on
//! `NOTIFY_SOCKET`). Hermetic: no web server needed.
//!
//! Every wait is bounded, and a child still running when a test ends
//! (passing or not) is killed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use gateway_fastcgi::proto::{self, RecordType};

/// The longest any step may take before the test fails; a passing step
/// takes milliseconds.
const WAIT: Duration = Duration::from_secs(5);

const HELLO: &str = "Hello, world!\n";

/// `<target>/<profile>/examples/hello`, built by cargo before the tests.
fn hello() -> PathBuf {
    gateway_test::webserver::example_binary("hello").unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh path under the temp directory, unique to this test process,
/// removed when dropped (a test that fails leaves nothing behind).
struct TempPath(PathBuf);

impl TempPath {
    fn new(label: &str) -> TempPath {
        static N: AtomicU32 = AtomicU32::new(0);
        TempPath(std::env::temp_dir().join(format!(
            "gateway-hello-{}-{}-{label}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl std::ops::Deref for TempPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `hello` with an empty environment, stdin and stdout on `/dev/null`.
fn hello_command() -> Command {
    let mut cmd = Command::new(hello());
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// A running `hello` (or a shell about to become it), its stderr kept in a
/// file for failure messages. Dropping it kills a process still running.
struct Proc {
    what: String,
    child: Child,
    stderr: TempPath,
}

impl Proc {
    fn spawn(what: &str, mut cmd: Command) -> Proc {
        let stderr = TempPath::new("stderr");
        let file = File::create(&stderr).expect("create the stderr file");
        cmd.stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
        // `cmd` (and the descriptors it was given) is dropped here, so the
        // child holds the only copies.
        Proc {
            what: what.to_owned(),
            child,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    #[track_caller]
    fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!("{}: {message}\n--- stderr:\n{}", self.what, self.log())
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `ready` holds; fails if the process exits first or the
    /// time runs out.
    #[track_caller]
    fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if ready() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(format!("exited ({status}) before {what}"));
            }
            if Instant::now() >= deadline {
                self.fail(format!("not ready after {WAIT:?}: {what}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM (std has no `kill(2)`, and unsafe code is forbidden).
    fn term(&self) {
        let status = Command::new("/bin/sh")
            .args([
                "-c",
                "kill -s TERM \"$1\"",
                "sh",
                &self.child.id().to_string(),
            ])
            .status()
            .expect("run kill");
        assert!(status.success(), "{}: kill -s TERM failed", self.what);
    }

    /// Waits for the process to exit.
    #[track_caller]
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => self.fail(format!("still running after {WAIT:?}")),
                Err(e) => self.fail(format!("wait: {e}")),
            }
        }
    }

    /// SIGTERM, then exit status 0.
    #[track_caller]
    fn stop(&mut self) {
        self.term();
        let status = self.exit();
        if status.code() != Some(0) {
            self.fail(format!("SIGTERM gave {status}, not exit status 0"));
        }
    }

    /// Checks the start-up line: what was decided, and why.
    #[track_caller]
    fn decided(&self, start: &str) {
        // The line may reach the log a moment after the socket accepts.
        let line = format!("starting {start}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log().contains(&line) {
            if Instant::now() > deadline {
                self.fail(format!("no start-up line \"{line}\""));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `hello` on a free loopback port `make(port)` configures, waiting
/// until it accepts connections. Another process may take the port between
/// the probe and the bind: then it tries again with another.
fn on_free_port(what: &str, probe: Ipv4Addr, make: impl Fn(u16) -> Command) -> (Proc, u16) {
    for _ in 0..3 {
        let port = TcpListener::bind((probe, 0))
            .and_then(|l| l.local_addr())
            .expect("probe a free port")
            .port();
        let mut p = Proc::spawn(what, make(port));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (p, port);
            }
            if !p.running() {
                break;
            }
            if Instant::now() >= deadline {
                p.fail(format!("does not accept on {addr} after {WAIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !p.log().contains("cannot listen") {
            p.fail("exited before it accepted connections");
        }
    }
    panic!("{what}: no free port after three tries");
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

fn unix(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Writes `request`, then reads until the server closes.
fn exchange(mut s: impl Read + Write, request: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(request)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// An HTTP/1.1 GET that asks the server to close after the response.
const HTTP_GET: &[u8] =
    b"GET /any/path?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// The response to [`HTTP_GET`] is `200` with the body `Hello, world!`.
#[track_caller]
fn check_http(p: &Proc, out: io::Result<Vec<u8>>) {
    let text = match out {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => p.fail(format!("HTTP exchange: {e}")),
    };
    if !text.starts_with("HTTP/1.1 200 OK\r\n") || !text.ends_with(&format!("\r\n\r\n{HELLO}")) {
        p.fail(format!("not a Hello response over HTTP: {text:?}"));
    }
}

/// A FastCGI responder request as a web server sends it: BEGIN_REQUEST
/// (without FCGI_KEEP_CONN, so the application closes when it is done),
/// the parameters, their end, and an empty body.
fn fastcgi_request() -> Vec<u8> {
    let mut w = BytesMut::new();
    proto::encode_begin_request(&mut w, 1, 1, 0);
    proto::encode_params(
        &mut w,
        1,
        [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", ""),
            ("PATH_INFO", "/any/path"),
            ("REQUEST_URI", "/any/path?x=1"),
            ("QUERY_STRING", "x=1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_HOST", "localhost"),
        ],
    )
    .expect("encode params");
    proto::encode_stream_end(&mut w, RecordType::Stdin, 1);
    w.to_vec()
}

/// The FastCGI reply to [`fastcgi_request`]: its STDOUT is a CGI response
/// with status 200 and the body `Hello, world!`, and END_REQUEST says the
/// request completed with application status 0.
#[track_caller]
fn check_fastcgi(p: &Proc, out: io::Result<Vec<u8>>) {
    let bytes = out.unwrap_or_else(|e| p.fail(format!("FastCGI exchange: {e}")));
    let mut buf = BytesMut::from(&bytes[..]);
    let mut stdout = Vec::new();
    let mut end = None;
    loop {
        match proto::decode(&mut buf) {
            Ok(Some(r)) if r.record_type == RecordType::Stdout => {
                stdout.extend_from_slice(&r.content)
            }
            Ok(Some(r)) if r.record_type == RecordType::EndRequest => end = Some(r.content),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => p.fail(format!("bad FastCGI reply ({e}): {bytes:?}")),
        }
    }
    if !buf.is_empty() {
        p.fail(format!("a truncated FastCGI record: {bytes:?}"));
    }
    let text = String::from_utf8_lossy(&stdout);
    if !text.starts_with("Status: 200") || !text.ends_with(&format!("\r\n\r\n{HELLO}")) {
        p.fail(format!("not a Hello response over FastCGI: {text:?}"));
    }
    // appStatus (4 bytes) 0, protocolStatus FCGI_REQUEST_COMPLETE (0).
    match end {
        Some(body) if body.get(..5) == Some(&[0, 0, 0, 0, 0][..]) => {}
        other => p.fail(format!("END_REQUEST: {other:?}")),
    }
}

/// An SCGI request: the netstring of headers (`CONTENT_LENGTH` first,
/// `SCGI` 1), then the (empty) body.
fn scgi_request() -> Vec<u8> {
    let headers: Vec<u8> = [
        ("CONTENT_LENGTH", "0"),
        ("SCGI", "1"),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/any/path?x=1"),
        ("QUERY_STRING", "x=1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("HTTP_HOST", "localhost"),
    ]
    .iter()
    .flat_map(|(k, v)| [k.as_bytes(), b"\0", v.as_bytes(), b"\0"].concat())
    .collect();
    let mut out = format!("{}:", headers.len()).into_bytes();
    out.extend_from_slice(&headers);
    out.push(b',');
    out
}

/// The SCGI reply to [`scgi_request`]: a CGI response, status 200, body
/// `Hello, world!`.
#[track_caller]
fn check_scgi(p: &Proc, out: io::Result<Vec<u8>>) {
    let text = match out {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => p.fail(format!("SCGI exchange: {e}")),
    };
    if !text.starts_with("Status: 200") || !text.ends_with(&format!("\r\n\r\n{HELLO}")) {
        p.fail(format!("not a Hello response over SCGI: {text:?}"));
    }
}

/// The CGI response `hello` writes for a GET.
const CGI_HELLO: &str = "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\nHello, world!\n";

/// A few bytes of a TLS ClientHello: none of the three protocols.
const GARBAGE: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";

/// Sends `GARBAGE` and expects the connection closed without a reply.
#[track_caller]
fn check_garbage_closed(p: &Proc, s: impl Read + Write) {
    match exchange(s, GARBAGE) {
        Ok(reply) if reply.is_empty() => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(reply) => p.fail(format!("garbage got a reply: {reply:?}")),
        Err(e) => p.fail(format!("garbage: the connection was not closed: {e}")),
    }
}

/// Started from a shell with nothing set but the address: HTTP. SIGTERM
/// stops it with exit status 0.
#[test]
fn nothing_set_serves_http_and_sigterm_stops_it() {
    let (mut p, port) = on_free_port("hello (HTTP)", Ipv4Addr::LOCALHOST, |port| {
        let mut cmd = hello_command();
        cmd.env("GATEWAY_ADDR", format!("127.0.0.1:{port}"));
        cmd
    });
    p.decided(&format!("HTTP on 127.0.0.1:{port} (the default: HTTP)"));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    check_http(&p, exchange(tcp(addr), HTTP_GET));
    // Kept-alive connections are served too: two requests, one connection.
    let mut s = tcp(addr);
    let two = [
        &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
    ]
    .concat();
    s.write_all(&two).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| p.fail(format!("two requests: {e}")));
    if out.matches(HELLO).count() != 2 {
        p.fail(format!("two requests, not two answers: {out:?}"));
    }
    p.stop();
}

/// `PORT` (the platform convention): HTTP on every interface.
#[test]
fn port_serves_http_on_every_interface() {
    let (mut p, port) = on_free_port("hello (PORT)", Ipv4Addr::UNSPECIFIED, |port| {
        let mut cmd = hello_command();
        cmd.env("PORT", port.to_string());
        cmd
    });
    p.decided(&format!("HTTP on 0.0.0.0:{port}"));
    check_http(
        &p,
        exchange(tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))), HTTP_GET),
    );
    p.stop();
}

/// A CGI request: `GATEWAY_INTERFACE` set, stdin a pipe, the response on
/// stdout, exit status 0.
#[test]
fn gateway_interface_with_a_pipe_is_one_cgi_request() {
    let mut cmd = hello_command();
    cmd.env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SCRIPT_NAME", "/cgi-bin/hello")
        .env("PATH_INFO", "/any/path")
        .env("QUERY_STRING", "x=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut p = Proc::spawn("hello (CGI, pipe)", cmd);
    drop(p.child.stdin.take());
    let status = p.exit();
    let mut out = String::new();
    p.child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .unwrap();
    if status.code() != Some(0) || out != CGI_HELLO {
        p.fail(format!("{status}, stdout {out:?}"));
    }
    // CGI logs at warn level: a good request writes nothing to the web
    // server's error log.
    if !p.log().is_empty() {
        p.fail("wrote to stderr");
    }
}

/// Apache's mod_cgid runs a CGI program with a connected Unix socket as
/// both stdin and stdout: still one CGI request, the body read from the
/// socket and the response written to it.
#[test]
fn a_connected_socket_on_fd_0_is_cgi_stdin() {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(WAIT)).unwrap();
    let body = b"name=world&x=1";
    let mut cmd = hello_command();
    cmd.env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "POST")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SCRIPT_NAME", "/cgi-bin/hello")
        .env("CONTENT_TYPE", "application/x-www-form-urlencoded")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdout(Stdio::from(OwnedFd::from(theirs.try_clone().unwrap())))
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    // The body waits in the socket: `hello` answers without reading it and
    // may be gone before a write after the spawn.
    ours.write_all(body).unwrap();
    ours.shutdown(Shutdown::Write).unwrap();
    let mut p = Proc::spawn("hello (CGI, connected socket)", cmd);
    // Linux resets a Unix socket closed with unread data (the body `hello`
    // never read): the response comes first, then ECONNRESET instead of
    // end of file. (Apache takes that reset as a failed response; see
    // `an_unread_body_is_drained_before_exit`.)
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match ours.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => p.fail(format!("reading the response from the socket: {e}")),
        }
    }
    let out = String::from_utf8_lossy(&out);
    let status = p.exit();
    if status.code() != Some(0) || out != CGI_HELLO {
        p.fail(format!("{status}, response {out:?}"));
    }
}

/// A CGI program that answers without reading its body leaves the body in
/// the socket mod_cgid gave it, and on Linux closing a Unix socket with
/// unread data resets the peer: Apache then reads ECONNRESET after the
/// response and sends it truncated (logged as `AH00574:
/// ap_content_length_filter: apr_bucket_read() failed`), even for a
/// 10-byte body. fcgiwrap, writing the whole body to the program's stdin
/// pipe first, answers 502 once an unread body passes the pipe's 64 KiB.
/// So the program reads the rest of the body (up to `CONTENT_LENGTH`, 16
/// MiB at most, 2 s at most) before it exits.
#[test]
fn an_unread_body_is_drained_before_exit() {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(WAIT)).unwrap();
    let body = b"name=world&x=1";
    let mut cmd = hello_command();
    cmd.env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "POST")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdout(Stdio::from(OwnedFd::from(theirs.try_clone().unwrap())))
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    ours.write_all(body).unwrap();
    ours.shutdown(Shutdown::Write).unwrap();
    let mut p = Proc::spawn("hello (CGI, unread body)", cmd);
    let mut out = String::new();
    if let Err(e) = ours.read_to_string(&mut out) {
        p.fail(format!(
            "the response did not end cleanly: {e}; got {out:?}"
        ));
    }
    let status = p.exit();
    if status.code() != Some(0) || out != CGI_HELLO {
        p.fail(format!("{status}, response {out:?}"));
    }
}

/// A listening socket on fd 0 (lighttpd `bin-path`, `spawn-fcgi`): each
/// connection's protocol is told by its first bytes, so FastCGI, SCGI and
/// HTTP clients are all answered on the one socket; a connection in none
/// of them is closed and the server goes on.
#[test]
fn a_listening_socket_on_fd_0_serves_fastcgi_scgi_and_http() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cmd = hello_command();
    // A CGI variable a parent left behind does not turn it into CGI.
    cmd.env("GATEWAY_INTERFACE", "CGI/1.1")
        .stdin(Stdio::from(OwnedFd::from(listener)));
    let mut p = Proc::spawn("hello (fd 0)", cmd);
    check_fastcgi(&p, exchange(tcp(addr), &fastcgi_request()));
    p.decided("FastCGI, SCGI or HTTP (told per connection) on fd:0 (a listening socket on fd 0)");
    check_scgi(&p, exchange(tcp(addr), &scgi_request()));
    check_http(&p, exchange(tcp(addr), HTTP_GET));
    check_garbage_closed(&p, tcp(addr));
    // A client that connects and says nothing holds up neither the others
    // nor, below, the shutdown (SIGTERM closes it at once, not after the
    // 30 s head-read timeout).
    let _silent = tcp(addr);
    check_http(&p, exchange(tcp(addr), HTTP_GET));
    check_fastcgi(&p, exchange(tcp(addr), &fastcgi_request()));
    // Several at once.
    let clients: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || match i % 3 {
                0 => (i, exchange(tcp(addr), &fastcgi_request())),
                1 => (i, exchange(tcp(addr), &scgi_request())),
                _ => (i, exchange(tcp(addr), HTTP_GET)),
            })
        })
        .collect();
    for c in clients {
        let (i, out) = c.join().unwrap();
        match i % 3 {
            0 => check_fastcgi(&p, out),
            1 => check_scgi(&p, out),
            _ => check_http(&p, out),
        }
    }
    p.stop();
}

/// The same with a Unix socket on fd 0, as lighttpd makes it.
#[test]
fn a_listening_unix_socket_on_fd_0_serves_fastcgi_and_http() {
    let path = TempPath::new("fd0.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut cmd = hello_command();
    cmd.stdin(Stdio::from(OwnedFd::from(listener)));
    let mut p = Proc::spawn("hello (Unix socket on fd 0)", cmd);
    check_fastcgi(&p, exchange(unix(&path), &fastcgi_request()));
    check_http(&p, exchange(unix(&path), HTTP_GET));
    p.stop();
}

/// Runs `hello` with `env` and expects it to refuse to start: exit status
/// 2 and one line on stderr, which is returned.
#[track_caller]
fn refused(what: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = hello_command();
    cmd.envs(env.iter().copied());
    let mut p = Proc::spawn(what, cmd);
    let status = p.exit();
    let log = p.log();
    if status.code() != Some(2) {
        p.fail(format!("exit {status}, not 2"));
    }
    if !log.starts_with("gateway: cannot start: ") || log.lines().count() != 1 {
        p.fail("not one line \"gateway: cannot start: ...\"");
    }
    log
}

/// Starts that cannot work are refused with one line and exit status 2.
#[test]
fn bad_starts_exit_2_with_one_line() {
    let log = refused("GATEWAY_PROTOCOL=gopher", &[("GATEWAY_PROTOCOL", "gopher")]);
    assert!(
        log.contains("\"gopher\"") && log.contains("cgi, iis-cgi, fastcgi, scgi or http"),
        "{log}"
    );
    let log = refused("GATEWAY_PROTOCOL=cgi", &[("GATEWAY_PROTOCOL", "cgi")]);
    assert!(log.contains("GATEWAY_INTERFACE is not set"), "{log}");
    let log = refused("PORT=http", &[("PORT", "http")]);
    assert!(log.contains("PORT"), "{log}");
    let log = refused("GATEWAY_ADDR=nowhere", &[("GATEWAY_ADDR", "nowhere")]);
    assert!(log.contains("GATEWAY_ADDR"), "{log}");
}

/// `GATEWAY_PROTOCOL=fastcgi` with a Unix `GATEWAY_ADDR`: FastCGI only
/// (no sniffing: an HTTP request there is not answered), and the socket
/// file is removed on SIGTERM.
#[test]
fn explicit_fastcgi_on_a_unix_socket() {
    let path = TempPath::new("fcgi.sock");
    let mut cmd = hello_command();
    cmd.env("GATEWAY_PROTOCOL", "fastcgi")
        .env("GATEWAY_ADDR", format!("unix:{}", path.display()));
    let mut p = Proc::spawn("hello (GATEWAY_PROTOCOL=fastcgi)", cmd);
    p.wait_for("the Unix socket accepts", || {
        UnixStream::connect(&path).is_ok()
    });
    p.decided(&format!(
        "FastCGI on unix:{} (chosen explicitly)",
        path.display()
    ));
    check_fastcgi(&p, exchange(unix(&path), &fastcgi_request()));
    match exchange(unix(&path), HTTP_GET) {
        Ok(out) if !String::from_utf8_lossy(&out).contains("Hello") => {}
        Err(_) => {}
        Ok(out) => p.fail(format!("a FastCGI socket answered HTTP: {out:?}")),
    }
    p.stop();
    if path.exists() {
        p.fail("the socket file is left behind");
    }
}

/// Rust's runtime reopens a closed fd 0 on `/dev/null` before `main`, so a
/// program started with stdin closed sees `/dev/null`: with nothing else
/// set it serves HTTP, as from a shell.
#[test]
fn a_closed_stdin_reads_as_dev_null() {
    let (mut p, port) = on_free_port("hello (stdin closed)", Ipv4Addr::LOCALHOST, |port| {
        let mut cmd = Command::new("/bin/sh");
        cmd.env_clear()
            .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
            .args(["-c", "exec \"$0\" <&-"])
            .arg(hello())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    });
    p.decided(&format!("HTTP on 127.0.0.1:{port} (the default: HTTP)"));
    check_http(
        &p,
        exchange(tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))), HTTP_GET),
    );
    p.stop();
}

/// Starts `hello` the way systemd starts a socket-activated service: the
/// listening sockets at fds 3, 4, … (not close-on-exec), `LISTEN_PID` the
/// service's own pid, `LISTEN_FDS` their count and `LISTEN_FDNAMES` their
/// names (`None`: unset). std cannot place a descriptor at fd 3 without
/// unsafe code, so a shell does it: the sockets come in as its stdin and
/// stdout, it moves them to fds 3 and 4, puts its own pid (which `exec`
/// keeps) in `LISTEN_PID` and replaces itself with `hello`.
fn systemd_command(sockets: Vec<OwnedFd>, names: Option<&str>, notify: &Path) -> Command {
    assert!(matches!(sockets.len(), 1 | 2), "one or two sockets");
    let mut cmd = Command::new("/bin/sh");
    cmd.env_clear()
        .env("LISTEN_FDS", sockets.len().to_string())
        .env("NOTIFY_SOCKET", notify)
        .arg("-c")
        .arg(if sockets.len() == 1 {
            "LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" 3<&0 </dev/null"
        } else {
            "LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" 3<&0 4<&1 </dev/null >&2"
        })
        .arg(hello());
    if let Some(names) = names {
        cmd.env("LISTEN_FDNAMES", names);
    }
    let mut sockets = sockets.into_iter();
    cmd.stdin(Stdio::from(sockets.next().unwrap()));
    cmd.stdout(sockets.next().map_or_else(Stdio::null, Stdio::from));
    cmd
}

/// The service manager's end of `NOTIFY_SOCKET`.
struct Notify {
    path: TempPath,
    sock: UnixDatagram,
}

impl Notify {
    fn new() -> Notify {
        let path = TempPath::new("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        Notify { path, sock }
    }

    /// The next message.
    #[track_caller]
    fn recv(&self, p: &Proc) -> String {
        let mut buf = [0u8; 1024];
        match self.sock.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => p.fail(format!("no notification within {WAIT:?}: {e}")),
        }
    }
}

/// Two sockets passed the systemd way, named `http` (TCP) and `fastcgi`
/// (Unix): each serves its protocol only. The service manager hears
/// `READY=1` once both listen, and `STOPPING=1` on SIGTERM; the exit status
/// is 0.
#[test]
fn systemd_named_sockets_serve_their_protocols() {
    let http = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let http_addr = http.local_addr().unwrap();
    let fcgi_path = TempPath::new("systemd-fcgi.sock");
    let fcgi = UnixListener::bind(&fcgi_path).unwrap();
    let notify = Notify::new();
    let cmd = systemd_command(
        vec![OwnedFd::from(http), OwnedFd::from(fcgi)],
        Some("http:fastcgi"),
        &notify.path,
    );
    let mut p = Proc::spawn("hello (systemd, named sockets)", cmd);
    let ready = notify.recv(&p);
    if !ready.starts_with("READY=1\n") || !ready.contains("STATUS=serving ") {
        p.fail(format!("first notification {ready:?}"));
    }
    p.decided(
        "each socket's named protocol (else told per connection) on systemd's sockets \
         (http, fastcgi) (sockets passed by systemd)",
    );
    let status = format!(
        "STATUS=serving HTTP on {http_addr}, FastCGI on unix:{}",
        fcgi_path.display()
    );
    if !ready.contains(&status) {
        p.fail(format!("READY=1 without {status:?}: {ready:?}"));
    }
    check_http(&p, exchange(tcp(http_addr), HTTP_GET));
    check_fastcgi(&p, exchange(unix(&fcgi_path), &fastcgi_request()));
    // A named socket serves its protocol only.
    match exchange(tcp(http_addr), &fastcgi_request()) {
        Ok(out) if !String::from_utf8_lossy(&out).contains("Hello") => {}
        Err(_) => {}
        Ok(out) => p.fail(format!("the http socket answered FastCGI: {out:?}")),
    }
    p.term();
    let stopping = notify.recv(&p);
    if !stopping.starts_with("STOPPING=1\n") {
        p.fail(format!("after SIGTERM: {stopping:?}"));
    }
    let exit = p.exit();
    if exit.code() != Some(0) {
        p.fail(format!("SIGTERM gave {exit}"));
    }
}

/// The names of the process's threads (`/proc/PID/task/*/comm`).
fn thread_names(p: &Proc) -> Vec<String> {
    let dir = format!("/proc/{}/task", p.child.id());
    let Ok(tasks) = std::fs::read_dir(&dir) else {
        p.fail(format!("cannot read {dir}"));
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// One unnamed socket passed the systemd way: FastCGI, SCGI and HTTP told
/// per connection, as on fd 0. The sockets are served as the servers' own
/// `run` serves theirs: on single-threaded runtimes, the main thread's or
/// one per thread of their own (no work-stealing workers).
#[test]
fn systemd_unnamed_socket_serves_every_protocol() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let notify = Notify::new();
    let cmd = systemd_command(vec![OwnedFd::from(listener)], None, &notify.path);
    let mut p = Proc::spawn("hello (systemd, one socket)", cmd);
    let ready = notify.recv(&p);
    let status = format!("STATUS=serving FastCGI/SCGI/HTTP on {addr}");
    if !ready.starts_with("READY=1\n") || !ready.contains(&status) {
        p.fail(format!("first notification {ready:?}, expected {status:?}"));
    }
    check_fastcgi(&p, exchange(tcp(addr), &fastcgi_request()));
    check_scgi(&p, exchange(tcp(addr), &scgi_request()));
    check_http(&p, exchange(tcp(addr), HTTP_GET));
    check_garbage_closed(&p, tcp(addr));
    check_http(&p, exchange(tcp(addr), HTTP_GET));
    // Half the CPUs: one is the main thread's runtime; more are threads of
    // their own.
    let threads = thread_names(&p);
    let serving = threads.iter().filter(|t| t.starts_with("gateway-")).count();
    let half = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
    let expected = if half > 1 { half } else { 0 };
    if serving != expected || threads.iter().any(|t| t.starts_with("tokio-")) {
        p.fail(format!(
            "expected {expected} serving threads of their own (half the CPUs: {half}) \
             and no tokio workers: {threads:?}"
        ));
    }
    p.term();
    let stopping = notify.recv(&p);
    if !stopping.starts_with("STOPPING=1\n") {
        p.fail(format!("after SIGTERM: {stopping:?}"));
    }
    let exit = p.exit();
    if exit.code() != Some(0) {
        p.fail(format!("SIGTERM gave {exit}"));
    }
}

/// `GATEWAY_PROTOCOL` forces one protocol on systemd's sockets, whatever
/// their names.
#[test]
fn systemd_sockets_with_an_explicit_protocol() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let notify = Notify::new();
    let mut cmd = systemd_command(vec![OwnedFd::from(listener)], Some("http"), &notify.path);
    cmd.env("GATEWAY_PROTOCOL", "scgi");
    let mut p = Proc::spawn("hello (systemd, GATEWAY_PROTOCOL=scgi)", cmd);
    let ready = notify.recv(&p);
    if !ready.contains(&format!("STATUS=serving SCGI on {addr}")) {
        p.fail(format!("first notification {ready:?}"));
    }
    check_scgi(&p, exchange(tcp(addr), &scgi_request()));
    p.stop();
}

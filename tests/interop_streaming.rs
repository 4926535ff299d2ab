//! Streamed responses reach the client as they are produced, through every
//! front end the interop suites run: `GET /stream?chunks=4&size=10&delay_ms=D`
//! (the conformance app: four chunks of ten bytes, `D` ms apart, no
//! Content-Length), timed chunk by chunk at the client. The first chunk must
//! arrive within 200 ms of the request, and each chunk within 250 ms of
//! when the application produced it (so they arrive about `D` apart).
//!
//! The web servers run the configurations shipped in `examples/webservers/`
//! (which turn response buffering off where the server has a setting for
//! it), and nginx also runs with its stock buffering left on, where only
//! the application's `X-Accel-Buffering: no` (added by the core to every
//! streamed response) makes it stream; with `X-Accel-Buffering: yes` from
//! the application, nginx buffers the response to its end, which shows the
//! header is what it reads.
//!
//! These tests need the servers installed, so they are ignored by a plain
//! `cargo test`; `.ci/run` installs the Debian packages and runs them with
//! `--ignored`. A missing server fails the test with the package to install.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gateway_test::frontend_fastcgi::{FcgiFront, Front as FcgiKind};
use gateway_test::frontend_http::HttpServer;
use gateway_test::frontend_scgi::{Front as ScgiKind, ScgiFront};
use gateway_test::frontend_uwsgi::UwsgiFront;
use gateway_test::webserver::{
    Kind, START_TIMEOUT, WebServer, example_binary, process, render, templates_dir,
};

const CHUNKS: usize = 4;
const SIZE: usize = 10;
/// The first chunk must arrive within this of the request.
const FIRST_WITHIN: Duration = Duration::from_millis(200);
/// Each later chunk within this of when it was produced.
const LATE_BY_AT_MOST: Duration = Duration::from_millis(250);

fn conformance() -> PathBuf {
    example_binary("conformance").unwrap_or_else(|e| panic!("{e}"))
}

fn stream_target(delay_ms: u64) -> String {
    stream_target_sized(SIZE, delay_ms)
}

fn stream_target_sized(size: usize, delay_ms: u64) -> String {
    format!("/stream?chunks={CHUNKS}&size={size}&delay_ms={delay_ms}")
}

/// Sends `GET target` and returns when each chunk's last byte arrived,
/// counted from the request, and the whole response.
fn chunk_times(addr: SocketAddr, target: &str) -> (Vec<Duration>, String) {
    chunk_times_sized(addr, target, SIZE)
}

/// [`chunk_times`] for chunks of `size` bytes.
fn chunk_times_sized(addr: SocketAddr, target: &str, size: usize) -> (Vec<Duration>, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let started = Instant::now();
    s.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut times = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => panic!(
                "reading from {addr}: {e}\n{}",
                String::from_utf8_lossy(&got)
            ),
        };
        let at = started.elapsed();
        got.extend_from_slice(&buf[..n]);
        // The body's `x` bytes so far (chunk-size lines hold hex digits,
        // never `x`).
        let xs = body_of(&got).iter().filter(|&&b| b == b'x').count();
        while times.len() < CHUNKS && xs >= (times.len() + 1) * size {
            times.push(at);
        }
    }
    (times, String::from_utf8_lossy(&got).into_owned())
}

fn body_of(response: &[u8]) -> &[u8] {
    match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &response[i + 4..],
        None => &[],
    }
}

/// Checks that the chunks streamed; returns the first chunk's time.
fn assert_streams(
    what: &str,
    addr: SocketAddr,
    prefix: &str,
    delay_ms: u64,
    log: impl Fn() -> String,
) -> Duration {
    let (times, response) = chunk_times(addr, &format!("{prefix}{}", stream_target(delay_ms)));
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        response.starts_with("HTTP/1.1 200 "),
        "{what}: {response}\n{}",
        log()
    );
    assert_eq!(times.len(), CHUNKS, "{what}: {response}\n{}", log());
    let delay = Duration::from_millis(delay_ms);
    let report = format!("{what}: chunks at {times:?} (every {delay:?})\n{head}");
    assert!(times[0] <= FIRST_WITHIN, "first chunk late: {report}");
    for (k, t) in times.iter().enumerate().skip(1) {
        let produced = delay * k as u32;
        assert!(
            *t + Duration::from_millis(20) >= produced,
            "chunk {k} before it was produced: {report}"
        );
        assert!(
            *t <= produced + LATE_BY_AT_MOST,
            "chunk {k} held back: {report}"
        );
    }
    eprintln!("{report}");
    times[0]
}

/// Checks that the response came whole at its end (buffered).
fn assert_buffered(what: &str, addr: SocketAddr, target: &str, delay_ms: u64) {
    let (times, response) = chunk_times(addr, target);
    assert_eq!(times.len(), CHUNKS, "{what}: {response}");
    let end = Duration::from_millis(delay_ms) * (CHUNKS as u32 - 1);
    assert!(
        times[0] + Duration::from_millis(20) >= end,
        "{what}: expected buffering, chunks at {times:?}"
    );
}

fn fastcgi(kind: FcgiKind, delay_ms: u64) {
    let front = FcgiFront::start(kind, &conformance()).unwrap_or_else(|e| panic!("{kind}: {e}"));
    let prefix = front.target("");
    assert_streams(
        &format!("FastCGI {kind}"),
        front.addr(),
        &prefix,
        delay_ms,
        || front.error_log(),
    );
}

fn scgi(kind: ScgiKind, delay_ms: u64) {
    let front = ScgiFront::start(kind, &conformance()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    let prefix = front.target("");
    assert_streams(
        &format!("SCGI {kind:?}"),
        front.addr(),
        &prefix,
        delay_ms,
        || front.error_log(),
    );
}

fn cgi(kind: Kind, delay_ms: u64) {
    let server = WebServer::start(kind, &conformance()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    let prefix = server.target("");
    assert_streams(
        &format!("CGI {kind:?}"),
        server.addr(),
        &prefix,
        delay_ms,
        || server.error_log(),
    );
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_fastcgi_streams() {
    fastcgi(FcgiKind::Nginx, 300);
    fastcgi(FcgiKind::NginxClose, 300);
}

#[test]
#[ignore = "needs apache2 (run by .ci/run)"]
fn apache_mod_proxy_fcgi_streams() {
    fastcgi(FcgiKind::Apache, 300);
    fastcgi(FcgiKind::ApacheNoReuse, 300);
}

#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn lighttpd_fastcgi_streams() {
    fastcgi(FcgiKind::Lighttpd, 300);
    fastcgi(FcgiKind::LighttpdSpawn, 300);
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_scgi_streams() {
    scgi(ScgiKind::Nginx, 300);
}

#[test]
#[ignore = "needs apache2 (run by .ci/run)"]
fn apache_mod_proxy_scgi_streams() {
    scgi(ScgiKind::Apache, 300);
}

#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn lighttpd_scgi_streams() {
    scgi(ScgiKind::Lighttpd, 300);
}

#[test]
#[ignore = "needs apache2 (run by .ci/run)"]
fn apache_cgi_streams() {
    cgi(Kind::Apache, 300);
}

#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn lighttpd_cgi_streams() {
    cgi(Kind::Lighttpd, 300);
}

/// fcgiwrap passes the CGI program's output on in blocks of its FastCGI
/// stream buffer (8 KiB): small chunks wait until the block fills or the
/// program exits, whatever nginx is told; chunks of 8 KiB or more stream.
#[test]
#[ignore = "needs nginx and fcgiwrap (run by .ci/run)"]
fn nginx_fcgiwrap_cgi_streams_in_8_kib_blocks() {
    let server = WebServer::start(Kind::NginxFcgiwrap, &conformance())
        .unwrap_or_else(|e| panic!("nginx with fcgiwrap: {e}"));
    let small = server.target(&stream_target(300));
    assert_buffered(
        "CGI behind nginx and fcgiwrap, small chunks",
        server.addr(),
        &small,
        300,
    );
    // With chunks of 8 KiB the first block (the head and most of the
    // first chunk) leaves at once; each chunk's tail follows with the next
    // block.
    let big = 8192;
    let target = server.target(&stream_target_sized(big, 300));
    let (first, response) = chunk_times_sized(server.addr(), &target, 1);
    assert!(!first.is_empty(), "{response:.300}\n{}", server.error_log());
    assert!(
        first[0] <= FIRST_WITHIN,
        "the first block at {:?}",
        first[0]
    );
    let (times, _) = chunk_times_sized(server.addr(), &target, big);
    assert_eq!(times.len(), CHUNKS);
    for (k, t) in times.iter().enumerate().take(CHUNKS - 1) {
        let next = Duration::from_millis(300) * (k as u32 + 1);
        assert!(*t <= next + LATE_BY_AT_MOST, "8 KiB chunks at {times:?}");
    }
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_proxy_pass_and_direct_http_stream() {
    let srv = HttpServer::behind_nginx(&conformance()).unwrap_or_else(|e| panic!("{e}"));
    let prefix = srv.target("");
    assert_streams("HTTP behind nginx", srv.addr(), &prefix, 300, || {
        srv.error_log()
    });
    // And straight from the server, with one-second gaps.
    assert_streams("HTTP direct", srv.backend(), "", 1000, || srv.error_log());
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_uwsgi_streams() {
    let program = example_binary("uwsgi").unwrap_or_else(|e| panic!("{e}"));
    let front = UwsgiFront::start(&program).unwrap_or_else(|e| panic!("nginx with uwsgi: {e}"));
    let prefix = front.target("");
    assert_streams("uwsgi behind nginx", front.addr(), &prefix, 300, || {
        front.error_log()
    });
}

/// nginx with its stock response buffering (the shipped configuration less
/// its `*_buffering off` line) in front of the conformance app.
struct StockNginx {
    addr: SocketAddr,
    rundir: PathBuf,
    children: Vec<Child>,
}

impl StockNginx {
    /// `protocol`: `fastcgi`, `scgi` or `http` (the app's mode and the
    /// template's directory); `template`: the file in that directory.
    fn start(protocol: &str, template: &str, buffering_line: &str) -> StockNginx {
        let nginx = process::find_binary("nginx", "nginx").unwrap_or_else(|e| panic!("{e}"));
        let rundir = process::make_rundir(&format!("stock-nginx-{protocol}")).unwrap();
        let backend = SocketAddr::from(([127, 0, 0, 1], process::free_port().unwrap()));
        let addr = SocketAddr::from(([127, 0, 0, 1], process::free_port().unwrap()));
        let mut me = StockNginx {
            addr,
            rundir,
            children: Vec::new(),
        };
        let mut app = Command::new(conformance());
        app.arg(protocol).arg(backend.to_string());
        let mut child = process::spawn(app, &me.rundir, "app").unwrap();
        let waited = process::wait_until(&mut child, START_TIMEOUT, "the app's port", || {
            process::accepts(backend)
        });
        me.children.push(child);
        waited.unwrap_or_else(|e| panic!("{e}\n{}", me.log()));

        let path = templates_dir().join(protocol).join(template);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(buffering_line),
            "{} no longer has {buffering_line:?}",
            path.display()
        );
        let text = text.replace(buffering_line, "");
        let config_text = render(
            &text,
            &[
                ("PORT", &addr.port().to_string()),
                ("RUNDIR", me.rundir.to_str().unwrap()),
                ("BACKEND_HOST", "127.0.0.1"),
                ("BACKEND_PORT", &backend.port().to_string()),
            ],
        )
        .unwrap();
        let config = me.rundir.join("nginx.conf");
        std::fs::write(&config, config_text).unwrap();
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(&me.rundir)
            .arg("-e")
            .arg(me.rundir.join("error.log"))
            .arg("-c")
            .arg(&config)
            .arg("-g")
            .arg("daemon off;");
        let mut child = process::spawn(command, &me.rundir, "nginx").unwrap();
        let waited = process::wait_until(&mut child, START_TIMEOUT, "the nginx port", || {
            process::accepts(addr)
        });
        me.children.push(child);
        waited.unwrap_or_else(|e| panic!("{e}\n{}", me.log()));
        me
    }

    fn log(&self) -> String {
        process::collect_logs("stock nginx", &self.rundir)
    }

    fn rundir(&self) -> &Path {
        &self.rundir
    }
}

impl Drop for StockNginx {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

/// `yes_buffers`: with `X-Accel-Buffering: yes` from the application, nginx
/// holds this response to its end.
fn stock(protocol: &str, template: &str, buffering_line: &str, prefix: &str, yes_buffers: bool) {
    let nginx = StockNginx::start(protocol, template, buffering_line);
    let _ = nginx.rundir();
    let what = format!("{protocol} behind nginx with stock buffering");
    assert_streams(&what, nginx.addr, prefix, 300, || nginx.log());
    let target = format!("{prefix}{}&accel=yes", stream_target(300));
    let what = format!("{what}, X-Accel-Buffering: yes");
    if yes_buffers {
        // The application's own value wins, and nginx buffers.
        assert_buffered(&what, nginx.addr, &target, 300);
    } else {
        // nginx's proxy module passes small chunks on as they come even
        // with buffering on: the header changes nothing there.
        assert_streams(&what, nginx.addr, &target, 300, || nginx.log());
    }
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn stock_nginx_fastcgi_streams_on_the_header() {
    stock(
        "fastcgi",
        "nginx-close.conf",
        "fastcgi_buffering off;",
        "/fcgi/conformance",
        true,
    );
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn stock_nginx_scgi_streams_on_the_header() {
    stock(
        "scgi",
        "nginx.conf",
        "scgi_buffering off;",
        "/scgi/conformance",
        true,
    );
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn stock_nginx_proxy_pass_streams_on_the_header() {
    stock(
        "http",
        "nginx.conf",
        "proxy_buffering off;",
        "/http/conformance",
        false,
    );
}

#[test]
#[ignore = "needs haproxy (run by .ci/run)"]
fn haproxy_fastcgi_streams() {
    fastcgi(FcgiKind::Haproxy, 300);
    fastcgi(FcgiKind::HaproxyMpxs, 300);
}

/// Caddy's FastCGI transport holds the response until about 64 KiB of it,
/// or its end, have arrived: small chunks come together at the end,
/// whatever `flush_interval` says; chunks of 64 KiB or more stream.
#[test]
#[ignore = "needs caddy (run by .ci/run)"]
fn caddy_fastcgi_streams_in_64_kib_pieces() {
    let front =
        FcgiFront::start(FcgiKind::Caddy, &conformance()).unwrap_or_else(|e| panic!("caddy: {e}"));
    let small = front.target(&stream_target(300));
    assert_buffered(
        "FastCGI behind Caddy, small chunks",
        front.addr(),
        &small,
        300,
    );
    let big = 64 << 10;
    let target = front.target(&stream_target_sized(big, 300));
    let (times, response) = chunk_times_sized(front.addr(), &target, big);
    assert_eq!(
        times.len(),
        CHUNKS,
        "{response:.300}\n{}",
        front.error_log()
    );
    for (k, t) in times.iter().enumerate().take(CHUNKS - 1) {
        let next = Duration::from_millis(300) * (k as u32 + 1);
        assert!(*t <= next + LATE_BY_AT_MOST, "64 KiB chunks at {times:?}");
    }
}

/// Apache `mod_proxy_http`, lighttpd `mod_proxy`, Caddy `reverse_proxy` and
/// HAProxy pass a streamed response from the HTTP server on as it comes.
#[test]
#[ignore = "needs apache2, lighttpd, caddy and haproxy (run by .ci/run)"]
fn http_reverse_proxies_stream() {
    use gateway_test::frontend_http::HttpFront;
    for front in [
        HttpFront::Apache,
        HttpFront::Lighttpd,
        HttpFront::Caddy,
        HttpFront::Haproxy,
    ] {
        let srv = HttpServer::behind(front, &conformance()).unwrap_or_else(|e| panic!("{e}"));
        let prefix = srv.target("");
        assert_streams(
            &format!("HTTP behind {front}"),
            srv.addr(),
            &prefix,
            300,
            || srv.error_log(),
        );
    }
}

//! One program, the `hello` example, unchanged behind real web servers,
//! each starting it its own way:
//!
//! - Apache httpd (mod_cgid), lighttpd (mod_cgi) and nginx with fcgiwrap
//!   run it as a CGI program (`examples/webservers/cgi/`);
//! - lighttpd starts it itself with a listening socket on fd 0
//!   (`bin-path`, `examples/webservers/fastcgi/lighttpd-spawn.conf`);
//! - `systemd-socket-activate` starts it with two named sockets, `fastcgi`
//!   (Unix) and `http` (TCP), behind nginx
//!   (`examples/webservers/hello/nginx-named-sockets.conf`);
//! - `systemd-socket-activate` starts it with one unnamed socket to which
//!   nginx speaks FastCGI, SCGI and HTTP at once
//!   (`examples/webservers/hello/nginx-one-socket.conf`).
//!
//! Each answers `Hello, world!` through the web server to a real HTTP
//! client. These need the servers installed, so they are ignored by a plain
//! `cargo test`; `.ci/run` installs the Debian packages and runs them. A
//! missing binary fails the test with the package to install.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use gateway_test::frontend_fastcgi::{FcgiFront, Front};
use gateway_test::http_client::{Request, Response};
use gateway_test::webserver::{
    Kind, START_TIMEOUT, WebServer, example_binary, process, render, templates_dir,
};

const HELLO: &str = "Hello, world!\n";

fn hello() -> PathBuf {
    example_binary("hello").unwrap_or_else(|e| panic!("{e}"))
}

/// `response` is a complete 200 whose body is `Hello, world!`.
#[track_caller]
fn check_hello(what: &str, response: std::io::Result<Response>, logs: impl Fn() -> String) {
    match response {
        Ok(r) if r.status == 200 && r.completion.is_complete() && r.text() == HELLO => {}
        Ok(r) => panic!(
            "{what}: {} {:?} ({:?})\n{}",
            r.status,
            r.text(),
            r.completion,
            logs()
        ),
        Err(e) => panic!("{what}: request failed: {e}\n{}", logs()),
    }
}

/// Runs `hello` as a CGI program behind `kind`: GETs on the mount and below
/// it.
fn cgi_behind(kind: Kind) {
    let server = WebServer::start(kind, &hello()).unwrap_or_else(|e| panic!("{kind}: {e}"));
    let logs = || server.error_log();
    for target in ["", "/", "/any/path?x=1"] {
        let response = Request::new("GET", &server.target(target)).send(server.addr());
        check_hello(&format!("{kind}: GET {target:?}"), response, logs);
    }
}

/// Apache's mod_cgid hands the program a connected Unix socket as stdin
/// and stdout: it is still one CGI request.
#[test]
#[ignore = "needs apache2 (run by .ci/run)"]
fn hello_as_cgi_behind_apache() {
    cgi_behind(Kind::Apache);
}

#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn hello_as_cgi_behind_lighttpd() {
    cgi_behind(Kind::Lighttpd);
}

#[test]
#[ignore = "needs nginx and fcgiwrap (run by .ci/run)"]
fn hello_as_cgi_behind_nginx_fcgiwrap() {
    cgi_behind(Kind::NginxFcgiwrap);
}

/// lighttpd `bin-path` starts the program with a listening Unix socket on
/// fd 0 and speaks FastCGI to it.
#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn hello_spawned_by_lighttpd_on_fd_0() {
    let front = FcgiFront::start(Front::LighttpdSpawn, &hello())
        .unwrap_or_else(|e| panic!("lighttpd: {e}"));
    let logs = || front.error_log();
    for target in ["/", "/any/path?x=1", "/again"] {
        let response = Request::new("GET", &front.target(target)).send(front.addr());
        check_hello(
            &format!("lighttpd bin-path: GET {target:?}"),
            response,
            logs,
        );
    }
    let log = logs();
    assert!(
        log.contains("a listening socket on fd 0"),
        "the program did not decide by its fd 0:\n{log}"
    );
}

/// Which sockets `systemd-socket-activate` passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sockets {
    /// `http` on TCP, `fastcgi` on a Unix socket.
    Named,
    /// One TCP socket, no name.
    One,
}

impl Sockets {
    fn template(self) -> &'static str {
        match self {
            Sockets::Named => "hello/nginx-named-sockets.conf",
            Sockets::One => "hello/nginx-one-socket.conf",
        }
    }
}

/// `hello` under `systemd-socket-activate`, with nginx in front. Dropping
/// it stops both and removes the run directory.
struct Activated {
    rundir: PathBuf,
    addr: SocketAddr,
    backend: SocketAddr,
    /// `systemd-socket-activate` (which becomes `hello`), then nginx.
    children: Vec<Child>,
    /// The service manager's end of `NOTIFY_SOCKET`.
    notify: UnixDatagram,
}

impl Activated {
    fn start(sockets: Sockets) -> Activated {
        let activate = process::find_binary("systemd-socket-activate", "systemd")
            .unwrap_or_else(|e| panic!("{e}"));
        let nginx = process::find_binary("nginx", "nginx").unwrap_or_else(|e| panic!("{e}"));
        let program = hello();
        process::start_with_retries(
            || Self::try_start(sockets, &activate, &nginx, &program),
            |_| true,
        )
        .unwrap_or_else(|e| panic!("systemd-socket-activate and nginx ({sockets:?}): {e}"))
    }

    fn try_start(
        sockets: Sockets,
        activate: &Path,
        nginx: &Path,
        program: &Path,
    ) -> std::io::Result<Activated> {
        let rundir = process::make_rundir("hello-activate")?;
        let notify_path = rundir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(START_TIMEOUT))?;
        let mut me = Activated {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            backend: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            rundir,
            children: Vec::new(),
            notify,
        };
        match me.launch(sockets, activate, nginx, program, &notify_path) {
            Ok(()) => Ok(me),
            Err(e) => Err(std::io::Error::new(
                e.kind(),
                format!("did not start: {e}\n{}", me.logs()),
            )),
        }
    }

    fn launch(
        &mut self,
        sockets: Sockets,
        activate: &Path,
        nginx: &Path,
        program: &Path,
        notify: &Path,
    ) -> std::io::Result<()> {
        let text = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| std::io::Error::other(format!("not UTF-8: {}", p.display())))
        };
        let unix = self.rundir.join("hello.sock");
        let mut command = Command::new(activate);
        command.arg("-l").arg(self.backend.to_string());
        if sockets == Sockets::Named {
            command
                .arg("--fdname=http")
                .arg("-l")
                .arg(&unix)
                .arg("--fdname=fastcgi");
        }
        // systemd-socket-activate passes on only what -E names.
        command
            .arg("-E")
            .arg(format!("NOTIFY_SOCKET={}", text(notify)?))
            .arg(program);
        let mut child = process::spawn(command, &self.rundir, "hello")?;
        // It listens at once and starts the program on the first
        // connection; this probe is that connection (it closes without a
        // byte, which the program takes in its stride).
        let backend = self.backend;
        let waited = process::wait_until(
            &mut child,
            START_TIMEOUT,
            "systemd-socket-activate listens",
            || process::accepts(backend),
        );
        self.children.push(child);
        waited?;
        if sockets == Sockets::Named {
            // Made 0644 by systemd-socket-activate: the nginx workers
            // (www-data) need to write to it.
            std::fs::set_permissions(&unix, std::fs::Permissions::from_mode(0o666))?;
        }

        let template = std::fs::read_to_string(templates_dir().join(sockets.template()))?;
        let config_text = render(
            &template,
            &[
                ("PORT", &self.addr.port().to_string()),
                ("RUNDIR", &text(&self.rundir)?),
                ("BACKEND_HOST", &self.backend.ip().to_string()),
                ("BACKEND_PORT", &self.backend.port().to_string()),
            ],
        )?;
        let config = self.rundir.join("nginx.conf");
        std::fs::write(&config, config_text)?;
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(&self.rundir)
            .arg("-e")
            .arg(self.rundir.join("error.log"))
            .arg("-c")
            .arg(&config)
            .arg("-g")
            .arg("daemon off;");
        let mut child = process::spawn(command, &self.rundir, "nginx")?;
        let addr = self.addr;
        let waited = process::wait_until(&mut child, START_TIMEOUT, "nginx listens", || {
            process::accepts(addr)
        });
        self.children.push(child);
        waited
    }

    fn logs(&self) -> String {
        process::collect_logs("systemd-socket-activate + nginx", &self.rundir)
    }

    /// GET `target` through nginx: `Hello, world!`.
    #[track_caller]
    fn check(&self, target: &str) {
        let response = Request::new("GET", target).send(self.addr);
        check_hello(&format!("GET {target}"), response, || self.logs());
    }

    /// The next message on `NOTIFY_SOCKET`.
    #[track_caller]
    fn notification(&self) -> String {
        let mut buf = [0u8; 1024];
        match self.notify.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => panic!("no notification: {e}\n{}", self.logs()),
        }
    }

    /// SIGTERM to the program (nginx keeps running), and its exit status.
    fn stop_program(&mut self) -> Option<ExitStatus> {
        let child = self.children.first_mut()?;
        process::stop(child, Duration::from_secs(10));
        child.try_wait().ok().flatten()
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

/// Two named sockets: nginx passes FastCGI to the one named `fastcgi` (a
/// Unix socket) and proxies HTTP to the one named `http`. The program tells
/// the service manager it is ready and, on SIGTERM, that it is stopping,
/// and exits with status 0.
#[test]
#[ignore = "needs nginx and systemd-socket-activate (run by .ci/run)"]
fn hello_under_systemd_socket_activate_with_named_sockets_behind_nginx() {
    let mut a = Activated::start(Sockets::Named);
    let ready = a.notification();
    assert!(
        ready.starts_with("READY=1\n")
            && ready.contains(&format!("STATUS=serving HTTP on {}", a.backend))
            && ready.contains("FastCGI on unix:"),
        "{ready:?}\n{}",
        a.logs()
    );
    for _ in 0..3 {
        a.check("/fastcgi/any/path?x=1");
        a.check("/http/any/path?x=1");
    }
    let log = a.logs();
    assert!(
        log.contains("sockets passed by systemd"),
        "not started from systemd's sockets:\n{log}"
    );
    let status = a.stop_program();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM\n{}",
        a.logs()
    );
    let stopping = a.notification();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
}

/// One unnamed socket: nginx speaks FastCGI, SCGI and HTTP to it, and the
/// program tells each connection's protocol by its first bytes.
#[test]
#[ignore = "needs nginx and systemd-socket-activate (run by .ci/run)"]
fn hello_under_systemd_socket_activate_with_one_socket_behind_nginx() {
    let mut a = Activated::start(Sockets::One);
    let ready = a.notification();
    assert!(
        ready.contains(&format!(
            "STATUS=serving FastCGI/SCGI/HTTP on {}",
            a.backend
        )),
        "{ready:?}\n{}",
        a.logs()
    );
    // Interleaved, and repeated so that nginx reuses kept-alive FastCGI
    // and HTTP connections.
    for _ in 0..3 {
        a.check("/fastcgi/any/path?x=1");
        a.check("/scgi/any/path?x=1");
        a.check("/http/any/path?x=1");
    }
    let status = a.stop_program();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM\n{}",
        a.logs()
    );
}

/// The templates render with the placeholders the harness fills in
/// (checked without a server).
#[test]
fn hello_templates_render() {
    for sockets in [Sockets::Named, Sockets::One] {
        let text = std::fs::read_to_string(templates_dir().join(sockets.template())).unwrap();
        let out = render(
            &text,
            &[
                ("PORT", "8080"),
                ("RUNDIR", "/tmp/r"),
                ("BACKEND_HOST", "127.0.0.1"),
                ("BACKEND_PORT", "9000"),
            ],
        )
        .unwrap();
        assert!(out.contains("listen 127.0.0.1:8080;"), "{sockets:?}");
        assert!(out.contains("127.0.0.1:9000"), "{sockets:?}");
    }
}

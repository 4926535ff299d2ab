//! A FastCGI application server behind a real web server, for interop tests.
//!
//! [`FcgiFront::start`] runs a program as a FastCGI server on a free
//! loopback port (`PROGRAM fastcgi 127.0.0.1:PORT`, as the `conformance`
//! example takes it), waits until it accepts connections, then starts nginx
//! (`fastcgi_pass`), Apache httpd (`mod_proxy_fcgi`), lighttpd
//! (`mod_fastcgi`), Caddy (`reverse_proxy` with the `fastcgi` transport) or
//! HAProxy (an `fcgi-app`) from the templates in
//! `examples/webservers/fastcgi/`, on another free port. With
//! [`Front::LighttpdSpawn`] lighttpd starts the program itself
//! (`bin-path`), handing it the listening socket on file descriptor 0.
//! Dropping it stops everything and removes the run directory.
//!
//! [`cgi_fcgi`] runs libfcgi's `cgi-fcgi -bind -connect` as a client.
//!
//! A missing web-server binary is an error naming the Debian package, so a
//! test fails loudly instead of passing without having run.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::cases::Setup;
use crate::webserver::daemon::Daemon;
use crate::webserver::process;
use crate::webserver::{render, templates_dir};

/// The URL prefix the FastCGI configurations mount the application at.
pub const FCGI_MOUNT: &str = "/fcgi/conformance";

/// A web server that speaks FastCGI to the application, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Front {
    /// nginx, kept-alive upstream connections (`fastcgi_keep_conn on`),
    /// unbuffered uploads (`fastcgi/nginx.conf`).
    Nginx,
    /// nginx, a connection per request (`fastcgi/nginx-close.conf`).
    NginxClose,
    /// Apache httpd `mod_proxy_fcgi`, reused connections
    /// (`fastcgi/apache2.conf`).
    Apache,
    /// Apache httpd `mod_proxy_fcgi`, a connection per request
    /// (`fastcgi/apache2-no-reuse.conf`).
    ApacheNoReuse,
    /// lighttpd `mod_fastcgi` to a running server over TCP
    /// (`fastcgi/lighttpd.conf`).
    Lighttpd,
    /// lighttpd `mod_fastcgi` spawning the program with the socket on fd 0
    /// (`fastcgi/lighttpd-spawn.conf`).
    LighttpdSpawn,
    /// Caddy `reverse_proxy` with the `fastcgi` transport, a connection per
    /// request (`fastcgi/Caddyfile`).
    Caddy,
    /// HAProxy `fcgi-app` with `option keep-conn`, a request at a time on
    /// each connection (`fastcgi/haproxy.cfg`).
    Haproxy,
    /// HAProxy `fcgi-app` with `option mpxs-conns` and `option get-values`,
    /// many requests at once on one connection when the application
    /// announces `FCGI_MPXS_CONNS=1` (`fastcgi/haproxy-mpxs.cfg`; the
    /// application is started with multiplexing on, see
    /// [`Front::app_env`]).
    HaproxyMpxs,
}

impl Front {
    /// Every front end.
    pub const ALL: [Front; 9] = [
        Front::Nginx,
        Front::NginxClose,
        Front::Apache,
        Front::ApacheNoReuse,
        Front::Lighttpd,
        Front::LighttpdSpawn,
        Front::Caddy,
        Front::Haproxy,
        Front::HaproxyMpxs,
    ];

    /// A short name (directory names, messages).
    pub fn name(self) -> &'static str {
        match self {
            Front::Nginx => "nginx",
            Front::NginxClose => "nginx-close",
            Front::Apache => "apache2",
            Front::ApacheNoReuse => "apache2-no-reuse",
            Front::Lighttpd => "lighttpd",
            Front::LighttpdSpawn => "lighttpd-spawn",
            Front::Caddy => "caddy",
            Front::Haproxy => "haproxy",
            Front::HaproxyMpxs => "haproxy-mpxs",
        }
    }

    /// The configuration template, relative to [`templates_dir`].
    pub fn template(self) -> &'static str {
        match self {
            Front::Nginx => "fastcgi/nginx.conf",
            Front::NginxClose => "fastcgi/nginx-close.conf",
            Front::Apache => "fastcgi/apache2.conf",
            Front::ApacheNoReuse => "fastcgi/apache2-no-reuse.conf",
            Front::Lighttpd => "fastcgi/lighttpd.conf",
            Front::LighttpdSpawn => "fastcgi/lighttpd-spawn.conf",
            Front::Caddy => "fastcgi/Caddyfile",
            Front::Haproxy => "fastcgi/haproxy.cfg",
            Front::HaproxyMpxs => "fastcgi/haproxy-mpxs.cfg",
        }
    }

    fn daemon(self) -> Daemon {
        match self {
            Front::Nginx | Front::NginxClose => Daemon::Nginx,
            Front::Apache | Front::ApacheNoReuse => Daemon::Apache,
            Front::Lighttpd | Front::LighttpdSpawn => Daemon::Lighttpd,
            Front::Caddy => Daemon::Caddy,
            Front::Haproxy | Front::HaproxyMpxs => Daemon::Haproxy,
        }
    }

    /// The web server's binary and its Debian package.
    pub fn binary(self) -> (&'static str, &'static str) {
        self.daemon().binary()
    }

    /// The environment the application server is started with for this
    /// front end (before any the caller adds): `FCGI_MPXS_CONNS=1`, which
    /// turns multiplexing on in the `conformance` example, for
    /// [`Front::HaproxyMpxs`].
    pub fn app_env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Front::HaproxyMpxs => &[("FCGI_MPXS_CONNS", "1")],
            _ => &[],
        }
    }

    /// Whether the web server starts the application itself.
    pub fn spawns(self) -> bool {
        self == Front::LighttpdSpawn
    }
}

impl fmt::Display for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A web server in front of a FastCGI application server; dropping it stops
/// both.
#[derive(Debug)]
pub struct FcgiFront {
    front: Front,
    addr: SocketAddr,
    backend: SocketAddr,
    rundir: PathBuf,
    /// The application server, then the web server.
    children: Vec<Child>,
    /// Extra environment for the application server.
    env: Vec<(String, String)>,
}

impl FcgiFront {
    /// Starts `program fastcgi 127.0.0.1:PORT` and `front` in front of it
    /// (or only `front`, which then spawns `program fastcgi`).
    pub fn start(front: Front, program: &Path) -> io::Result<FcgiFront> {
        Self::start_with_env(front, program, &[])
    }

    /// As [`start`](Self::start), with `env` added to the application
    /// server's environment after [`Front::app_env`] (so it can override
    /// it). A front end that spawns the program
    /// ([`Front::spawns`]) passes it only what its configuration says, so
    /// `env` is refused there.
    pub fn start_with_env(
        front: Front,
        program: &Path,
        env: &[(&str, &str)],
    ) -> io::Result<FcgiFront> {
        if front.spawns() && !env.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{front} spawns the program itself: no extra environment"),
            ));
        }
        let (name, package) = front.binary();
        let binary = process::find_binary(name, package)?;
        process::start_with_retries(
            || Self::try_start(front, &binary, Some(program), None, env),
            |_| true,
        )
    }

    /// Starts only `front`, in front of a FastCGI server that already
    /// listens on `backend` (a test's own, say).
    pub fn in_front_of(front: Front, backend: SocketAddr) -> io::Result<FcgiFront> {
        if front.spawns() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{front} spawns the program itself"),
            ));
        }
        let (name, package) = front.binary();
        let binary = process::find_binary(name, package)?;
        process::start_with_retries(
            || Self::try_start(front, &binary, None, Some(backend), &[]),
            |_| true,
        )
    }

    fn try_start(
        front: Front,
        binary: &Path,
        program: Option<&Path>,
        backend: Option<SocketAddr>,
        env: &[(&str, &str)],
    ) -> io::Result<FcgiFront> {
        let rundir = process::make_rundir(&format!("fcgi-{}", front.name()))?;
        let backend = match backend {
            Some(addr) => addr,
            None => SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
        };
        let mut me = FcgiFront {
            front,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            backend,
            rundir,
            children: Vec::new(),
            env: front
                .app_env()
                .iter()
                .chain(env)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        match me.launch(binary, program) {
            Ok(()) => Ok(me),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "{front} with FastCGI did not start: {e}\n{}",
                    me.error_log()
                ),
            )),
        }
    }

    fn launch(&mut self, binary: &Path, program: Option<&Path>) -> io::Result<()> {
        if let Some(program) = program.filter(|_| !self.front.spawns()) {
            let mut app = Command::new(program);
            app.arg("fastcgi").arg(self.backend.to_string());
            let env: Vec<(&str, &str)> = self
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut child = process::spawn_with_env(app, &self.rundir, "app", &env)?;
            let backend = self.backend;
            let waited = process::wait_for_port(&mut child, "the FastCGI port", backend);
            self.children.push(child);
            waited?;
        }

        // A spawned program runs as the web server's user: it must be able
        // to execute it.
        let program = match program {
            Some(program)
                if self.front.spawns()
                    && process::running_as_root()
                    && !process::usable_by_anyone(program) =>
            {
                process::copy_program(program, &self.rundir)?
            }
            Some(program) => program.to_path_buf(),
            None => PathBuf::new(),
        };
        let text = std::fs::read_to_string(templates_dir().join(self.front.template()))?;
        let rundir = text_of(&self.rundir)?.to_owned();
        let config_text = render(
            &text,
            &[
                ("PORT", &self.addr.port().to_string()),
                ("RUNDIR", &rundir),
                ("BACKEND_HOST", &self.backend.ip().to_string()),
                ("BACKEND_PORT", &self.backend.port().to_string()),
                ("PROGRAM", text_of(&program)?),
            ],
        )?;
        let file = Path::new(self.front.template())
            .file_name()
            .ok_or_else(|| io::Error::other("template has no file name"))?;
        let config = self.rundir.join(file);
        std::fs::write(&config, config_text)?;

        let daemon = self.front.daemon();
        let command = daemon.command(binary, &config, &self.rundir);
        let mut child = process::spawn_with_env(
            command,
            &self.rundir,
            self.front.name(),
            &daemon.env(&self.rundir),
        )?;
        let addr = self.addr;
        let waited = process::wait_for_port(&mut child, "the HTTP port", addr);
        self.children.push(child);
        waited
    }

    /// The web server.
    pub fn front(&self) -> Front {
        self.front
    }

    /// The web server's loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The FastCGI application server's address (unused when the web server
    /// spawns it).
    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// The request target for `path_and_query` under [`FCGI_MOUNT`].
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{FCGI_MOUNT}{path_and_query}")
    }

    /// Whether the application server (or, when the web server spawned it,
    /// the web server) is still running.
    pub fn backend_running(&mut self) -> bool {
        self.children
            .first_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether the web server is still running.
    pub fn front_running(&mut self) -> bool {
        self.children
            .last_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The run directory.
    pub fn rundir(&self) -> &Path {
        &self.rundir
    }

    /// The logs and captured output of both processes, for assertion
    /// messages.
    pub fn error_log(&self) -> String {
        process::collect_logs(&self.front.to_string(), &self.rundir)
    }

    /// What the web server alone logged so far (its log files and captured
    /// output, without the application server's output).
    pub fn server_log(&self) -> String {
        process::collect_logs_but(&self.front.to_string(), &self.rundir, &["app.out"])
    }
}

impl Setup for FcgiFront {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn target(&self, path_and_query: &str) -> String {
        FcgiFront::target(self, path_and_query)
    }

    fn label(&self) -> String {
        format!("{} (FastCGI)", self.front)
    }

    fn logs(&self) -> String {
        self.error_log()
    }
}

impl Drop for FcgiFront {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

/// Runs libfcgi's `cgi-fcgi -bind -connect ADDR` (Debian `libfcgi-bin`)
/// with the CGI variables `env` and `stdin` as the request body, and returns
/// what it printed: the application's CGI response.
pub fn cgi_fcgi(addr: &str, env: &[(&str, &str)], stdin: &[u8]) -> io::Result<Output> {
    use std::io::Write;
    let binary = process::find_binary("cgi-fcgi", "libfcgi-bin")?;
    let mut command = Command::new(binary);
    command
        .args(["-bind", "-connect", addr])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin)?;
    }
    child.wait_with_output()
}

fn text_of(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::other(format!("path is not UTF-8: {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_fastcgi_templates_render() {
        let vars = [
            ("PORT", "8080"),
            ("RUNDIR", "/tmp/r"),
            ("BACKEND_HOST", "127.0.0.1"),
            ("BACKEND_PORT", "4000"),
            ("PROGRAM", "/usr/local/bin/app"),
        ];
        for front in Front::ALL {
            let text = std::fs::read_to_string(templates_dir().join(front.template())).unwrap();
            let out = render(&text, &vars).unwrap();
            assert!(out.contains("/tmp/r"), "{front}");
            if front.spawns() {
                assert!(out.contains("/usr/local/bin/app"), "{front}");
            } else {
                assert!(out.contains("4000"), "{front}");
            }
            assert!(out.contains("8080"), "{front}");
            assert!(out.contains(FCGI_MOUNT), "{front}");
        }
    }
}

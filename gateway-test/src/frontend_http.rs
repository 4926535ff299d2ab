//! A gateway HTTP server, alone or behind a reverse proxy, for interop
//! tests.
//!
//! [`HttpServer::start`] runs `PROGRAM http 127.0.0.1:PORT` (as the
//! `conformance` example takes it) on a free loopback port and waits until it
//! accepts connections; [`HttpServer::behind`] also starts nginx
//! (`proxy_pass`), Apache httpd (`mod_proxy_http`), lighttpd (`mod_proxy`),
//! Caddy (`reverse_proxy`) or HAProxy (HTTP mode) from the templates in
//! `examples/webservers/http/`, on another port. Dropping it stops the
//! processes and removes the run directory.
//!
//! A missing web server is an error naming the Debian package, so a test
//! fails loudly instead of passing without having run.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::cases::Setup;
use crate::webserver::daemon::Daemon;
use crate::webserver::process;
use crate::webserver::{render, templates_dir};

/// The URL prefix the reverse-proxy configurations pass to the application.
pub const HTTP_MOUNT: &str = "/http/conformance";

/// A reverse proxy in front of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpFront {
    /// nginx `proxy_pass` with upstream keep-alive (`http/nginx.conf`).
    Nginx,
    /// Apache httpd `mod_proxy_http` (`http/apache2.conf`).
    Apache,
    /// lighttpd `mod_proxy` (`http/lighttpd.conf`).
    Lighttpd,
    /// Caddy `reverse_proxy` (`http/Caddyfile`).
    Caddy,
    /// HAProxy in HTTP mode (`http/haproxy.cfg`).
    Haproxy,
}

impl HttpFront {
    /// Every reverse proxy.
    pub const ALL: [HttpFront; 5] = [
        HttpFront::Nginx,
        HttpFront::Apache,
        HttpFront::Lighttpd,
        HttpFront::Caddy,
        HttpFront::Haproxy,
    ];

    /// A short name (directory names, messages).
    pub fn name(self) -> &'static str {
        match self {
            HttpFront::Nginx => "nginx",
            HttpFront::Apache => "apache2",
            HttpFront::Lighttpd => "lighttpd",
            HttpFront::Caddy => "caddy",
            HttpFront::Haproxy => "haproxy",
        }
    }

    /// The configuration template, relative to [`templates_dir`].
    pub fn template(self) -> &'static str {
        match self {
            HttpFront::Nginx => "http/nginx.conf",
            HttpFront::Apache => "http/apache2.conf",
            HttpFront::Lighttpd => "http/lighttpd.conf",
            HttpFront::Caddy => "http/Caddyfile",
            HttpFront::Haproxy => "http/haproxy.cfg",
        }
    }

    fn daemon(self) -> Daemon {
        match self {
            HttpFront::Nginx => Daemon::Nginx,
            HttpFront::Apache => Daemon::Apache,
            HttpFront::Lighttpd => Daemon::Lighttpd,
            HttpFront::Caddy => Daemon::Caddy,
            HttpFront::Haproxy => Daemon::Haproxy,
        }
    }

    /// The web server's binary and its Debian package.
    pub fn binary(self) -> (&'static str, &'static str) {
        self.daemon().binary()
    }
}

impl fmt::Display for HttpFront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A gateway HTTP server (and a reverse proxy in front, when asked);
/// dropping it stops both.
#[derive(Debug)]
pub struct HttpServer {
    backend: SocketAddr,
    front: Option<(HttpFront, SocketAddr)>,
    rundir: PathBuf,
    children: Vec<Child>,
}

impl HttpServer {
    /// Starts `program http 127.0.0.1:PORT`.
    pub fn start(program: &Path) -> io::Result<HttpServer> {
        let mut last = None;
        // Another test may take the free port between the probe and the
        // bind; the program then exits while the other server answers on
        // that port. Check it is still running, and try another port.
        for _ in 0..3 {
            match Self::try_start(program) {
                Ok(mut s) => {
                    std::thread::sleep(Duration::from_millis(100));
                    if s.backend_running() {
                        return Ok(s);
                    }
                    last = Some(io::Error::other(format!(
                        "the server exited after starting\n{}",
                        s.error_log()
                    )));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("did not start")))
    }

    fn try_start(program: &Path) -> io::Result<HttpServer> {
        let rundir = process::make_rundir("http")?;
        let mut me = HttpServer {
            backend: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            front: None,
            rundir,
            children: Vec::new(),
        };
        let mut app = Command::new(program);
        app.arg("http").arg(me.backend.to_string());
        let mut child = process::spawn(app, &me.rundir, "app")?;
        let backend = me.backend;
        let waited = process::wait_for_port(&mut child, "the HTTP port", backend);
        me.children.push(child);
        waited.map_err(|e| io::Error::new(e.kind(), format!("{e}\n{}", me.error_log())))?;
        Ok(me)
    }

    /// Starts `program http 127.0.0.1:PORT` and nginx in front of it.
    pub fn behind_nginx(program: &Path) -> io::Result<HttpServer> {
        Self::behind(HttpFront::Nginx, program)
    }

    /// Starts `program http 127.0.0.1:PORT` and `front` in front of it.
    pub fn behind(front: HttpFront, program: &Path) -> io::Result<HttpServer> {
        let (name, package) = front.binary();
        let binary = process::find_binary(name, package)?;
        let mut me = Self::start(program)?;
        // Another test may take the free port first: try a few.
        let mut last = None;
        for _ in 0..3 {
            match me.launch_front(front, &binary) {
                Ok(addr) => {
                    me.front = Some((front, addr));
                    return Ok(me);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("did not start")))
    }

    fn launch_front(&mut self, front: HttpFront, binary: &Path) -> io::Result<SocketAddr> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?));
        let text = std::fs::read_to_string(templates_dir().join(front.template()))?;
        let rundir = self
            .rundir
            .to_str()
            .ok_or_else(|| io::Error::other("run directory is not UTF-8"))?
            .to_owned();
        let config_text = render(
            &text,
            &[
                ("PORT", &addr.port().to_string()),
                ("RUNDIR", &rundir),
                ("BACKEND_HOST", &self.backend.ip().to_string()),
                ("BACKEND_PORT", &self.backend.port().to_string()),
            ],
        )?;
        let file = Path::new(front.template())
            .file_name()
            .ok_or_else(|| io::Error::other("template has no file name"))?;
        let config = self.rundir.join(file);
        std::fs::write(&config, config_text)?;
        let daemon = front.daemon();
        let command = daemon.command(binary, &config, &self.rundir);
        let mut child = process::spawn_with_env(
            command,
            &self.rundir,
            front.name(),
            &daemon.env(&self.rundir),
        )?;
        let waited = process::wait_for_port(&mut child, "the front port", addr);
        if let Err(e) = waited {
            process::stop(&mut child, Duration::from_secs(5));
            return Err(io::Error::new(
                e.kind(),
                format!("{front} did not start: {e}\n{}", self.error_log()),
            ));
        }
        self.children.push(child);
        Ok(addr)
    }

    /// Where clients connect: the reverse proxy when it runs, else the
    /// application.
    pub fn addr(&self) -> SocketAddr {
        self.front.map_or(self.backend, |(_, addr)| addr)
    }

    /// The reverse proxy, if any.
    pub fn front(&self) -> Option<HttpFront> {
        self.front.map(|(front, _)| front)
    }

    /// The application server's address.
    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// The request target for `path_and_query`: under [`HTTP_MOUNT`]
    /// behind a reverse proxy, as it is otherwise.
    pub fn target(&self, path_and_query: &str) -> String {
        match self.front {
            Some(_) => format!("{HTTP_MOUNT}{path_and_query}"),
            None => path_and_query.to_owned(),
        }
    }

    /// The URL for `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr(), self.target(path_and_query))
    }

    /// Whether the application server is still running.
    pub fn backend_running(&mut self) -> bool {
        self.children
            .first_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The logs and captured output, for assertion messages.
    pub fn error_log(&self) -> String {
        process::collect_logs("http", &self.rundir)
    }
}

impl Setup for HttpServer {
    fn addr(&self) -> SocketAddr {
        HttpServer::addr(self)
    }

    fn target(&self, path_and_query: &str) -> String {
        HttpServer::target(self, path_and_query)
    }

    fn label(&self) -> String {
        match self.front() {
            Some(front) => format!("{front} (HTTP)"),
            None => "gateway-http alone".to_owned(),
        }
    }

    fn logs(&self) -> String {
        self.error_log()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_http_templates_render() {
        for front in HttpFront::ALL {
            let text = std::fs::read_to_string(templates_dir().join(front.template())).unwrap();
            let out = render(
                &text,
                &[
                    ("PORT", "8080"),
                    ("RUNDIR", "/tmp/r"),
                    ("BACKEND_HOST", "127.0.0.1"),
                    ("BACKEND_PORT", "8000"),
                ],
            )
            .unwrap();
            assert!(out.contains("8000"), "{front}");
            assert!(out.contains("8080"), "{front}");
            assert!(out.contains(HTTP_MOUNT), "{front}");
        }
    }
}

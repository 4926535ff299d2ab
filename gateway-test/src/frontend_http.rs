//! A gateway HTTP server, alone or behind nginx, for interop tests.
//!
//! [`HttpServer::start`] runs `PROGRAM http 127.0.0.1:PORT` (as the
//! `conformance` example takes it) on a free loopback port and waits until it
//! accepts connections; [`HttpServer::behind_nginx`] also starts nginx with
//! `proxy_pass` from `examples/webservers/http/nginx.conf` on another port.
//! Dropping it stops the processes and removes the run directory.
//!
//! A missing nginx is an error naming the Debian package, so a test fails
//! loudly instead of passing without having run.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::webserver::process;
use crate::webserver::{START_TIMEOUT, render, templates_dir};

/// The URL prefix the nginx configuration proxies to the application.
pub const HTTP_MOUNT: &str = "/http/conformance";

/// The nginx template, relative to [`templates_dir`].
pub const NGINX_TEMPLATE: &str = "http/nginx.conf";

/// A gateway HTTP server (and nginx in front, when asked); dropping it stops
/// both.
#[derive(Debug)]
pub struct HttpServer {
    backend: SocketAddr,
    front: Option<SocketAddr>,
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
        let waited = process::wait_until(&mut child, START_TIMEOUT, "the HTTP port", || {
            process::accepts(backend)
        });
        me.children.push(child);
        waited.map_err(|e| io::Error::new(e.kind(), format!("{e}\n{}", me.error_log())))?;
        Ok(me)
    }

    /// Starts `program http 127.0.0.1:PORT` and nginx in front of it.
    pub fn behind_nginx(program: &Path) -> io::Result<HttpServer> {
        let binary = process::find_binary("nginx", "nginx")?;
        let mut me = Self::start(program)?;
        let front = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?));
        let text = std::fs::read_to_string(templates_dir().join(NGINX_TEMPLATE))?;
        let rundir = me
            .rundir
            .to_str()
            .ok_or_else(|| io::Error::other("run directory is not UTF-8"))?
            .to_owned();
        let config_text = render(
            &text,
            &[
                ("PORT", &front.port().to_string()),
                ("RUNDIR", &rundir),
                ("BACKEND_HOST", &me.backend.ip().to_string()),
                ("BACKEND_PORT", &me.backend.port().to_string()),
            ],
        )?;
        let config = me.rundir.join("nginx.conf");
        std::fs::write(&config, config_text)?;
        let mut command = Command::new(binary);
        command
            .arg("-p")
            .arg(&me.rundir)
            .arg("-e")
            .arg(me.rundir.join("error.log"))
            .arg("-c")
            .arg(&config)
            .arg("-g")
            .arg("daemon off;");
        let mut child = process::spawn(command, &me.rundir, "nginx")?;
        let waited = process::wait_until(&mut child, START_TIMEOUT, "the nginx port", || {
            process::accepts(front)
        });
        me.children.push(child);
        waited.map_err(|e| io::Error::new(e.kind(), format!("{e}\n{}", me.error_log())))?;
        me.front = Some(front);
        Ok(me)
    }

    /// Where clients connect: nginx when it runs, else the application.
    pub fn addr(&self) -> SocketAddr {
        self.front.unwrap_or(self.backend)
    }

    /// The application server's address.
    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// The request target for `path_and_query`: under [`HTTP_MOUNT`]
    /// behind nginx, as it is otherwise.
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

impl Drop for HttpServer {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_http_template_renders() {
        let text = std::fs::read_to_string(templates_dir().join(NGINX_TEMPLATE)).unwrap();
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
        assert!(out.contains("127.0.0.1:8000"));
        assert!(out.contains("listen 127.0.0.1:8080"));
        assert!(out.contains(HTTP_MOUNT));
    }
}

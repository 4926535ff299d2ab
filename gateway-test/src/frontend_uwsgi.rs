//! A uwsgi application server behind nginx, for interop tests.
//!
//! [`UwsgiFront::start`] runs a program as a uwsgi server on a free loopback
//! port (`PROGRAM 127.0.0.1:PORT`, as the `uwsgi` example takes it), waits
//! until it accepts connections, then starts nginx (`uwsgi_pass`) from
//! `examples/webservers/uwsgi/nginx.conf` on another free port, with the
//! distribution's `uwsgi_params` copied next to the configuration (which
//! includes it). Dropping it stops both and removes the run directory.
//!
//! A missing nginx is an error naming the Debian package, so a test fails
//! loudly instead of passing without having run.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use crate::webserver::process;
use crate::webserver::{render, templates_dir};

/// The URL prefix the uwsgi configuration mounts the application at.
pub const UWSGI_MOUNT: &str = "/uwsgi/conformance";

/// The configuration template, relative to [`templates_dir`].
pub const TEMPLATE: &str = "uwsgi/nginx.conf";

/// Where Debian's nginx keeps the stock `uwsgi_params`.
pub const UWSGI_PARAMS: &str = "/etc/nginx/uwsgi_params";

/// nginx in front of a uwsgi application server; dropping it stops both.
#[derive(Debug)]
pub struct UwsgiFront {
    addr: SocketAddr,
    backend: SocketAddr,
    rundir: PathBuf,
    /// The application server, then nginx.
    children: Vec<Child>,
}

impl UwsgiFront {
    /// Starts `program 127.0.0.1:PORT` and nginx in front of it.
    pub fn start(program: &Path) -> io::Result<UwsgiFront> {
        let binary = process::find_binary("nginx", "nginx")?;
        let params = std::fs::read(UWSGI_PARAMS).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{UWSGI_PARAMS}: {e} (it comes with the Debian package nginx-common)"),
            )
        })?;
        process::start_with_retries(|| Self::try_start(&binary, program, &params), |_| true)
    }

    fn try_start(binary: &Path, program: &Path, params: &[u8]) -> io::Result<UwsgiFront> {
        let mut me = UwsgiFront {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            backend: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            rundir: process::make_rundir("uwsgi-nginx")?,
            children: Vec::new(),
        };
        match me.launch(binary, program, params) {
            Ok(()) => Ok(me),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("nginx with uwsgi did not start: {e}\n{}", me.error_log()),
            )),
        }
    }

    fn launch(&mut self, binary: &Path, program: &Path, params: &[u8]) -> io::Result<()> {
        let mut app = Command::new(program);
        app.arg(self.backend.to_string());
        let mut child = process::spawn(app, &self.rundir, "app")?;
        let backend = self.backend;
        let waited = process::wait_for_port(&mut child, "the uwsgi port", backend);
        self.children.push(child);
        waited?;

        let text = std::fs::read_to_string(templates_dir().join(TEMPLATE))?;
        let rundir = self
            .rundir
            .to_str()
            .ok_or_else(|| io::Error::other("the run directory is not UTF-8"))?;
        let config_text = render(
            &text,
            &[
                ("PORT", &self.addr.port().to_string()),
                ("RUNDIR", rundir),
                ("BACKEND_HOST", &self.backend.ip().to_string()),
                ("BACKEND_PORT", &self.backend.port().to_string()),
            ],
        )?;
        let config = self.rundir.join("nginx.conf");
        std::fs::write(&config, config_text)?;
        std::fs::write(self.rundir.join("uwsgi_params"), params)?;

        let mut command = Command::new(binary);
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
        let waited = process::wait_for_port(&mut child, "the HTTP port", addr);
        self.children.push(child);
        waited
    }

    /// nginx's loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The uwsgi application server's address.
    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// The request target for `path_and_query` under [`UWSGI_MOUNT`].
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{UWSGI_MOUNT}{path_and_query}")
    }

    /// Whether the application server is still running.
    pub fn backend_running(&mut self) -> bool {
        self.children
            .first_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the application server the way a service manager does
    /// (SIGTERM, then SIGKILL after `grace`) and returns how it exited.
    pub fn stop_backend(&mut self, grace: std::time::Duration) -> io::Result<ExitStatus> {
        let child = self
            .children
            .first_mut()
            .ok_or_else(|| io::Error::other("no application server"))?;
        process::stop(child, grace);
        child.wait()
    }

    /// The run directory.
    pub fn rundir(&self) -> &Path {
        &self.rundir
    }

    /// The logs and captured output of both processes, for assertion
    /// messages.
    pub fn error_log(&self) -> String {
        process::collect_logs("nginx", &self.rundir)
    }
}

impl crate::cases::Setup for UwsgiFront {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn target(&self, path_and_query: &str) -> String {
        UwsgiFront::target(self, path_and_query)
    }

    fn label(&self) -> String {
        "nginx (uwsgi)".to_owned()
    }

    fn logs(&self) -> String {
        self.error_log()
    }
}

impl Drop for UwsgiFront {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_uwsgi_template_renders() {
        let vars = [
            ("PORT", "8080"),
            ("RUNDIR", "/tmp/r"),
            ("BACKEND_HOST", "127.0.0.1"),
            ("BACKEND_PORT", "3031"),
        ];
        let text = std::fs::read_to_string(templates_dir().join(TEMPLATE)).unwrap();
        let out = render(&text, &vars).unwrap();
        assert!(out.contains("uwsgi_pass 127.0.0.1:3031;"), "{out}");
        assert!(out.contains("listen 127.0.0.1:8080;"), "{out}");
        assert!(out.contains("include uwsgi_params;"), "{out}");
        assert!(out.contains(UWSGI_MOUNT), "{out}");
    }
}

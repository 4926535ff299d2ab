//! An SCGI application server behind a real web server, for interop tests.
//!
//! [`ScgiFront::start`] runs a program as an SCGI server on a free loopback
//! port (`PROGRAM scgi 127.0.0.1:PORT`, as the `conformance` example takes
//! it), waits until it accepts connections, then starts nginx
//! (`scgi_pass`), Apache httpd (`mod_proxy_scgi`) or lighttpd (`mod_scgi`)
//! from the templates in `examples/webservers/scgi/`, on another free port.
//! Dropping it stops both and removes the run directory.
//!
//! A missing web-server binary is an error naming the Debian package, so a
//! test fails loudly instead of passing without having run.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::cases::Setup;
use crate::webserver::process;
use crate::webserver::{render, templates_dir};

/// The URL prefix the SCGI configurations mount the application at.
pub const SCGI_MOUNT: &str = "/scgi/conformance";

/// A web server that speaks SCGI to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Front {
    /// nginx with `scgi_pass` (`scgi/nginx.conf`).
    Nginx,
    /// Apache httpd with `mod_proxy_scgi` (`scgi/apache2.conf`).
    Apache,
    /// lighttpd with `mod_scgi` (`scgi/lighttpd.conf`).
    Lighttpd,
}

impl Front {
    /// Every front end.
    pub const ALL: [Front; 3] = [Front::Nginx, Front::Apache, Front::Lighttpd];

    /// A short name (directory names, messages).
    pub fn name(self) -> &'static str {
        match self {
            Front::Nginx => "nginx",
            Front::Apache => "apache2",
            Front::Lighttpd => "lighttpd",
        }
    }

    /// The configuration template, relative to [`templates_dir`].
    pub fn template(self) -> &'static str {
        match self {
            Front::Nginx => "scgi/nginx.conf",
            Front::Apache => "scgi/apache2.conf",
            Front::Lighttpd => "scgi/lighttpd.conf",
        }
    }

    /// The web server's binary and its Debian package.
    pub fn binary(self) -> (&'static str, &'static str) {
        match self {
            Front::Nginx => ("nginx", "nginx"),
            Front::Apache => ("apache2", "apache2"),
            Front::Lighttpd => ("lighttpd", "lighttpd"),
        }
    }
}

impl fmt::Display for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A web server in front of an SCGI application server; dropping it stops
/// both.
#[derive(Debug)]
pub struct ScgiFront {
    front: Front,
    addr: SocketAddr,
    backend: SocketAddr,
    rundir: PathBuf,
    /// The application server, then the web server.
    children: Vec<Child>,
}

impl ScgiFront {
    /// Starts `program scgi 127.0.0.1:PORT` and `front` in front of it.
    pub fn start(front: Front, program: &Path) -> io::Result<ScgiFront> {
        let (name, package) = front.binary();
        let binary = process::find_binary(name, package)?;
        process::start_with_retries(|| Self::try_start(front, &binary, program), |_| true)
    }

    fn try_start(front: Front, binary: &Path, program: &Path) -> io::Result<ScgiFront> {
        let rundir = process::make_rundir(&format!("scgi-{}", front.name()))?;
        let mut me = ScgiFront {
            front,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            backend: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            rundir,
            children: Vec::new(),
        };
        match me.launch(binary, program) {
            Ok(()) => Ok(me),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("{front} with SCGI did not start: {e}\n{}", me.error_log()),
            )),
        }
    }

    fn launch(&mut self, binary: &Path, program: &Path) -> io::Result<()> {
        let mut app = Command::new(program);
        app.arg("scgi").arg(self.backend.to_string());
        let mut child = process::spawn(app, &self.rundir, "app")?;
        let backend = self.backend;
        let waited = process::wait_for_port(&mut child, "the SCGI port", backend);
        self.children.push(child);
        waited?;

        let text = std::fs::read_to_string(templates_dir().join(self.front.template()))?;
        let rundir = text_of(&self.rundir)?.to_owned();
        let config_text = render(
            &text,
            &[
                ("PORT", &self.addr.port().to_string()),
                ("RUNDIR", &rundir),
                ("BACKEND_HOST", &self.backend.ip().to_string()),
                ("BACKEND_PORT", &self.backend.port().to_string()),
            ],
        )?;
        let file = Path::new(self.front.template())
            .file_name()
            .ok_or_else(|| io::Error::other("template has no file name"))?;
        let config = self.rundir.join(file);
        std::fs::write(&config, config_text)?;

        let mut command = Command::new(binary);
        match self.front {
            Front::Nginx => {
                command
                    .arg("-p")
                    .arg(&self.rundir)
                    .arg("-e")
                    .arg(self.rundir.join("error.log"))
                    .arg("-c")
                    .arg(&config)
                    .arg("-g")
                    .arg("daemon off;");
            }
            Front::Apache => {
                command.arg("-DFOREGROUND").arg("-f").arg(&config);
            }
            Front::Lighttpd => {
                command.arg("-D").arg("-f").arg(&config);
            }
        }
        let mut child = process::spawn(command, &self.rundir, self.front.name())?;
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

    /// The SCGI application server's address.
    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// The request target for `path_and_query` under [`SCGI_MOUNT`].
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{SCGI_MOUNT}{path_and_query}")
    }

    /// Whether the application server is still running.
    pub fn backend_running(&mut self) -> bool {
        self.children
            .first_mut()
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
}

impl Setup for ScgiFront {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn target(&self, path_and_query: &str) -> String {
        ScgiFront::target(self, path_and_query)
    }

    fn label(&self) -> String {
        format!("{} (SCGI)", self.front)
    }

    fn logs(&self) -> String {
        self.error_log()
    }
}

impl Drop for ScgiFront {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

fn text_of(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::other(format!("path is not UTF-8: {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scgi_templates_render() {
        let vars = [
            ("PORT", "8080"),
            ("RUNDIR", "/tmp/r"),
            ("BACKEND_HOST", "127.0.0.1"),
            ("BACKEND_PORT", "4000"),
        ];
        for front in Front::ALL {
            let text = std::fs::read_to_string(templates_dir().join(front.template())).unwrap();
            let out = render(&text, &vars).unwrap();
            assert!(out.contains("4000"), "{front}");
            assert!(out.contains("8080"), "{front}");
            assert!(out.contains(SCGI_MOUNT), "{front}");
        }
    }
}

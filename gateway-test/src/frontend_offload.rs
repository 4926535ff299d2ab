//! A web server that serves the files the application hands back to it
//! (`X-Accel-Redirect`, `X-Sendfile`), for interop tests.
//!
//! [`OffloadFront::start`] writes the given files into `<rundir>/files`,
//! runs the conformance program as a FastCGI server on a free loopback
//! port with `CONFORMANCE_FILES` pointing there and `CONFORMANCE_OFFLOAD`
//! set for the web server, then starts nginx, lighttpd or Apache httpd
//! (with `mod_xsendfile`) from `examples/webservers/offload/`. Dropping it
//! stops both and removes the run directory.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::frontend_fastcgi::FCGI_MOUNT;
use crate::webserver::process;
use crate::webserver::{START_TIMEOUT, render, templates_dir};

/// The module `OffloadServer::Apache` loads, and its Debian package.
pub const XSENDFILE_MODULE: (&str, &str) = (
    "/usr/lib/apache2/modules/mod_xsendfile.so",
    "libapache2-mod-xsendfile",
);

/// A web server set up to serve offloaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffloadServer {
    /// nginx, `X-Accel-Redirect` to an `internal` location
    /// (`offload/nginx.conf`).
    Nginx,
    /// lighttpd, `X-Sendfile` with `x-sendfile-docroot`
    /// (`offload/lighttpd.conf`).
    Lighttpd,
    /// lighttpd, the older `X-LIGHTTPD-send-file` name, same configuration.
    LighttpdOldHeader,
    /// Apache httpd, `mod_proxy_fcgi` and `mod_xsendfile`
    /// (`offload/apache2.conf`).
    Apache,
}

impl OffloadServer {
    /// Every set-up.
    pub const ALL: [OffloadServer; 4] = [
        OffloadServer::Nginx,
        OffloadServer::Lighttpd,
        OffloadServer::LighttpdOldHeader,
        OffloadServer::Apache,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            OffloadServer::Nginx => "nginx",
            OffloadServer::Lighttpd => "lighttpd",
            OffloadServer::LighttpdOldHeader => "lighttpd-old-header",
            OffloadServer::Apache => "apache2",
        }
    }

    /// The configuration template, relative to [`templates_dir`].
    pub fn template(self) -> &'static str {
        match self {
            OffloadServer::Nginx => "offload/nginx.conf",
            OffloadServer::Lighttpd | OffloadServer::LighttpdOldHeader => "offload/lighttpd.conf",
            OffloadServer::Apache => "offload/apache2.conf",
        }
    }

    /// The header the application sends.
    pub fn header(self) -> &'static str {
        match self {
            OffloadServer::Nginx => "x-accel-redirect",
            OffloadServer::Lighttpd | OffloadServer::Apache => "x-sendfile",
            OffloadServer::LighttpdOldHeader => "x-lighttpd-send-file",
        }
    }

    /// `CONFORMANCE_OFFLOAD` for the conformance program.
    fn app_setting(self) -> &'static str {
        match self {
            OffloadServer::Nginx => "nginx:/protected/",
            OffloadServer::Lighttpd => "lighttpd",
            OffloadServer::LighttpdOldHeader => "lighttpd-old",
            OffloadServer::Apache => "apache",
        }
    }

    fn binary(self) -> (&'static str, &'static str) {
        match self {
            OffloadServer::Nginx => ("nginx", "nginx"),
            OffloadServer::Lighttpd | OffloadServer::LighttpdOldHeader => ("lighttpd", "lighttpd"),
            OffloadServer::Apache => ("apache2", "apache2"),
        }
    }
}

impl fmt::Display for OffloadServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The application and the web server in front of it; dropping it stops
/// both.
#[derive(Debug)]
pub struct OffloadFront {
    server: OffloadServer,
    addr: SocketAddr,
    rundir: PathBuf,
    files: PathBuf,
    children: Vec<Child>,
}

impl OffloadFront {
    /// Writes `files` (name as bytes, contents) into a fresh files
    /// directory, starts `program fastcgi 127.0.0.1:PORT` serving them, and
    /// `server` in front of it.
    pub fn start(
        server: OffloadServer,
        program: &Path,
        files: &[(&[u8], &[u8])],
    ) -> io::Result<OffloadFront> {
        let (name, package) = server.binary();
        let binary = process::find_binary(name, package)?;
        if server == OffloadServer::Apache && !Path::new(XSENDFILE_MODULE.0).is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing; install the Debian package `{}`, as .ci/run does",
                    XSENDFILE_MODULE.0, XSENDFILE_MODULE.1
                ),
            ));
        }
        process::start_with_retries(
            || Self::try_start(server, &binary, program, files),
            |_| true,
        )
    }

    fn try_start(
        server: OffloadServer,
        binary: &Path,
        program: &Path,
        files: &[(&[u8], &[u8])],
    ) -> io::Result<OffloadFront> {
        let rundir = process::make_rundir(&format!("offload-{}", server.name()))?;
        // The real path: lighttpd compares the path the application sends,
        // which is always the real one.
        let dir = std::fs::canonicalize(&rundir)?.join("files");
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        for (name, contents) in files {
            let path = dir.join(OsStr::from_bytes(name));
            std::fs::write(&path, contents)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
        let mut me = OffloadFront {
            server,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?)),
            rundir,
            files: dir,
            children: Vec::new(),
        };
        match me.launch(binary, program) {
            Ok(()) => Ok(me),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "{server} with offload did not start: {e}\n{}",
                    me.error_log()
                ),
            )),
        }
    }

    fn launch(&mut self, binary: &Path, program: &Path) -> io::Result<()> {
        let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?));
        let files = text_of(&self.files)?.to_owned();
        // `process::spawn` clears the environment: pass the settings
        // through env(1).
        let mut app = Command::new("env");
        app.arg(format!("CONFORMANCE_FILES={files}"))
            .arg(format!("CONFORMANCE_OFFLOAD={}", self.server.app_setting()))
            .arg(program)
            .arg("fastcgi")
            .arg(backend.to_string());
        let mut child = process::spawn(app, &self.rundir, "app")?;
        let waited = process::wait_until(&mut child, START_TIMEOUT, "the FastCGI port", || {
            process::accepts(backend)
        });
        self.children.push(child);
        waited?;

        let text = std::fs::read_to_string(templates_dir().join(self.server.template()))?;
        let config_text = render(
            &text,
            &[
                ("PORT", &self.addr.port().to_string()),
                ("RUNDIR", text_of(&self.rundir)?),
                ("BACKEND_HOST", &backend.ip().to_string()),
                ("BACKEND_PORT", &backend.port().to_string()),
                ("FILES", &files),
            ],
        )?;
        let file = Path::new(self.server.template())
            .file_name()
            .ok_or_else(|| io::Error::other("template has no file name"))?;
        let config = self.rundir.join(file);
        std::fs::write(&config, config_text)?;

        let mut command = Command::new(binary);
        match self.server {
            OffloadServer::Nginx => {
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
            OffloadServer::Apache => {
                command.arg("-DFOREGROUND").arg("-f").arg(&config);
            }
            OffloadServer::Lighttpd | OffloadServer::LighttpdOldHeader => {
                command.arg("-D").arg("-f").arg(&config);
            }
        }
        let mut child = process::spawn(command, &self.rundir, self.server.name())?;
        let addr = self.addr;
        let waited = process::wait_until(&mut child, START_TIMEOUT, "the HTTP port", || {
            process::accepts(addr)
        });
        self.children.push(child);
        waited
    }

    /// The set-up.
    pub fn server(&self) -> OffloadServer {
        self.server
    }

    /// The web server's loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The request target for `path_and_query` under [`FCGI_MOUNT`].
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{FCGI_MOUNT}{path_and_query}")
    }

    /// The files directory (a real path).
    pub fn files(&self) -> &Path {
        &self.files
    }

    /// The run directory.
    pub fn rundir(&self) -> &Path {
        &self.rundir
    }

    /// The logs of both processes, for assertion messages.
    pub fn error_log(&self) -> String {
        process::collect_logs(self.server.name(), &self.rundir)
    }
}

impl Drop for OffloadFront {
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
    fn offload_templates_render() {
        let vars = [
            ("PORT", "8080"),
            ("RUNDIR", "/tmp/r"),
            ("BACKEND_HOST", "127.0.0.1"),
            ("BACKEND_PORT", "4000"),
            ("FILES", "/srv/files"),
        ];
        for server in OffloadServer::ALL {
            let text = std::fs::read_to_string(templates_dir().join(server.template())).unwrap();
            let out = render(&text, &vars).unwrap();
            assert!(out.contains("/srv/files"), "{server}");
            assert!(out.contains(FCGI_MOUNT), "{server}");
        }
    }
}

//! Real web servers started for interop tests: the CGI harness, and what the
//! other protocols' harnesses share.
//!
//! [`WebServer::start`] runs Apache httpd, lighttpd or nginx (with fcgiwrap)
//! in the foreground as child processes, configured from the templates in
//! `examples/webservers/` (the same files the documentation points users
//! to), on a free loopback port, with everything they write kept in a fresh
//! run directory. Dropping the [`WebServer`] stops the processes and removes
//! that directory.
//!
//! A missing server binary is an error whose message names the Debian
//! package to install, so a test that needs the server fails loudly instead
//! of passing without having run.
//!
//! Templates live in `examples/webservers/<protocol>/<file>` with
//! placeholders `@PORT@`, `@RUNDIR@` and protocol-specific ones (`@CGI_BIN@`
//! for CGI); a new protocol adds a directory there and variants to [`Kind`].
//!
//! ```no_run
//! use gateway_test::webserver::{Kind, WebServer};
//! use gateway_test::http_client::Request;
//!
//! let server = WebServer::start(Kind::Lighttpd, "/path/to/cgi-program".as_ref()).unwrap();
//! let response = Request::new("GET", &server.target("/hello")).send(server.addr()).unwrap();
//! assert_eq!(response.status, 200, "{}", server.error_log());
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

pub(crate) mod daemon;
pub mod process;
mod template;

pub use template::{render, templates_dir};

/// The URL prefix the CGI configurations mount the program at.
pub const CGI_MOUNT: &str = "/cgi/conformance";

/// How long a server may take to accept connections after it is started.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Set this environment variable to keep run directories (configuration,
/// logs) after the test, for debugging.
pub const KEEP_RUNDIR_VAR: &str = "GATEWAY_TEST_KEEP_RUNDIR";

/// A web server set-up the harness can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Apache httpd with mod_cgid (`cgi/apache2.conf`).
    Apache,
    /// lighttpd with mod_cgi (`cgi/lighttpd.conf`).
    Lighttpd,
    /// nginx passing FastCGI to fcgiwrap, which runs the CGI program
    /// (`cgi/nginx-fcgiwrap.conf`).
    NginxFcgiwrap,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Apache, Kind::Lighttpd, Kind::NginxFcgiwrap];

    /// A short name (used in directory names and messages).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Apache => "apache2",
            Kind::Lighttpd => "lighttpd",
            Kind::NginxFcgiwrap => "nginx-fcgiwrap",
        }
    }

    /// The configuration template, relative to [`templates_dir`].
    pub fn template(self) -> &'static str {
        match self {
            Kind::Apache => "cgi/apache2.conf",
            Kind::Lighttpd => "cgi/lighttpd.conf",
            Kind::NginxFcgiwrap => "cgi/nginx-fcgiwrap.conf",
        }
    }

    /// The programs this kind runs, with the Debian package of each.
    pub fn binaries(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Apache => &[("apache2", "apache2")],
            Kind::Lighttpd => &[("lighttpd", "lighttpd")],
            Kind::NginxFcgiwrap => &[("fcgiwrap", "fcgiwrap"), ("nginx", "nginx")],
        }
    }

    /// Whether the server runs the CGI program as an unprivileged user
    /// (`www-data`) when it is started as root.
    fn drops_privileges_for_cgi(self) -> bool {
        matches!(self, Kind::Apache | Kind::Lighttpd)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running web server; dropping it stops the server.
#[derive(Debug)]
pub struct WebServer {
    kind: Kind,
    addr: SocketAddr,
    rundir: PathBuf,
    /// In start order; stopped in reverse.
    children: Vec<Child>,
}

impl WebServer {
    /// Starts `kind` with `cgi_program` (an absolute path, or relative to the
    /// current directory) mounted at [`CGI_MOUNT`], and waits until it
    /// accepts connections.
    pub fn start(kind: Kind, cgi_program: &Path) -> io::Result<WebServer> {
        let program = std::path::absolute(cgi_program)?;
        let meta = std::fs::metadata(&program).map_err(|e| {
            io::Error::new(e.kind(), format!("CGI program {}: {e}", program.display()))
        })?;
        if !meta.is_file() {
            return Err(io::Error::other(format!(
                "CGI program {} is not a file",
                program.display()
            )));
        }
        // A port picked by another test at the same moment, or any other
        // start-up failure: try again with a new port and directory.
        process::start_with_retries(
            || Self::try_start(kind, &program),
            |e| e.kind() != io::ErrorKind::NotFound,
        )
    }

    fn try_start(kind: Kind, program: &Path) -> io::Result<WebServer> {
        let binaries = kind
            .binaries()
            .iter()
            .map(|(name, package)| process::find_binary(name, package))
            .collect::<io::Result<Vec<_>>>()?;
        let rundir = process::make_rundir(kind.name())?;
        let port = process::free_port()?;
        let mut server = WebServer {
            kind,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            rundir,
            children: Vec::new(),
        };
        match server.launch(&binaries, program) {
            Ok(()) => Ok(server),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("{kind} did not start: {e}\n{}", server.error_log()),
            )),
        }
    }

    fn launch(&mut self, binaries: &[PathBuf], program: &Path) -> io::Result<()> {
        let rundir = self.rundir.clone();
        // Apache and lighttpd run the program as www-data when started as
        // root; a program under a private directory is copied where that
        // user can reach it.
        let program = if self.kind.drops_privileges_for_cgi()
            && process::running_as_root()
            && !process::usable_by_anyone(program)
        {
            process::copy_program(program, &rundir)?
        } else {
            program.to_path_buf()
        };
        let text = std::fs::read_to_string(templates_dir().join(self.kind.template()))?;
        let port = self.addr.port().to_string();
        let rundir_text = path_text(&rundir)?;
        let config_text = render(
            &text,
            &[
                ("PORT", &port),
                ("RUNDIR", rundir_text),
                ("CGI_BIN", path_text(&program)?),
            ],
        )?;
        let file_name = Path::new(self.kind.template())
            .file_name()
            .ok_or_else(|| io::Error::other("template has no file name"))?;
        let config = rundir.join(file_name);
        std::fs::write(&config, config_text)?;

        let binary = |i: usize| {
            binaries
                .get(i)
                .ok_or_else(|| io::Error::other("binary list too short"))
        };
        let mut command;
        match self.kind {
            Kind::Apache => {
                command = Command::new(binary(0)?);
                command.arg("-DFOREGROUND").arg("-f").arg(&config);
            }
            Kind::Lighttpd => {
                command = Command::new(binary(0)?);
                command.arg("-D").arg("-f").arg(&config);
            }
            Kind::NginxFcgiwrap => {
                self.start_fcgiwrap(binary(0)?)?;
                command = Command::new(binary(1)?);
                command
                    .arg("-p")
                    .arg(&rundir)
                    .arg("-e")
                    .arg(rundir.join("error.log"))
                    .arg("-c")
                    .arg(&config)
                    .arg("-g")
                    .arg("daemon off;");
            }
        }
        let mut child = process::spawn(command, &rundir, self.kind.name())?;
        let addr = self.addr;
        let waited = process::wait_for_port(&mut child, "the port accepts connections", addr);
        self.children.push(child);
        waited
    }

    /// Starts fcgiwrap on `<rundir>/fcgiwrap.sock` and waits for the socket.
    fn start_fcgiwrap(&mut self, binary: &Path) -> io::Result<()> {
        let socket = self.rundir.join("fcgiwrap.sock");
        let mut command = Command::new(binary);
        // Two workers, so one stuck request does not block the rest.
        command
            .arg("-c")
            .arg("2")
            .arg("-s")
            .arg(format!("unix:{}", path_text(&socket)?));
        let mut child = process::spawn(command, &self.rundir, "fcgiwrap")?;
        let waited = process::wait_until(&mut child, START_TIMEOUT, "fcgiwrap socket", || {
            socket.exists()
        });
        self.children.push(child);
        waited.map_err(|e| io::Error::new(e.kind(), format!("fcgiwrap {e}")))?;
        // The nginx workers (www-data) must be able to connect.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
    }

    /// The set-up that runs.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The loopback address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL prefix the program is mounted at ([`CGI_MOUNT`]).
    pub fn mount(&self) -> &'static str {
        CGI_MOUNT
    }

    /// The request target for `path_and_query` under the mount prefix
    /// (`target("/hello")` is `/cgi/conformance/hello`).
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.mount())
    }

    /// The full URL for `path_and_query` under the mount prefix.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base_url(), self.target(path_and_query))
    }

    /// The run directory (configuration, logs, sockets).
    pub fn rundir(&self) -> &Path {
        &self.rundir
    }

    /// Everything the server logged so far: its error log and the captured
    /// output of each process (where a CGI program's stderr often ends up),
    /// for assertion messages.
    pub fn error_log(&self) -> String {
        process::collect_logs(&self.kind.to_string(), &self.rundir)
    }
}

impl crate::cases::Setup for WebServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn target(&self, path_and_query: &str) -> String {
        WebServer::target(self, path_and_query)
    }

    fn label(&self) -> String {
        format!("{} (CGI)", self.kind)
    }

    fn logs(&self) -> String {
        self.error_log()
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        process::teardown(&mut self.children, &self.rundir);
    }
}

/// The path of the example program `name` built alongside the running
/// test: `<target>/<profile>/examples/<name>`, found from the test
/// executable (`<target>/<profile>/deps/<test>-<hash>`). `cargo test` builds
/// the examples before it runs the integration tests.
pub fn example_binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| io::Error::other(format!("unexpected test path {}", exe.display())))?;
    let program = profile_dir.join("examples").join(name);
    if program.is_file() {
        Ok(program)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is missing: build it with `cargo build --example {name}` \
                 (plain `cargo test` builds it too)",
                program.display()
            ),
        ))
    }
}

fn path_text(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::other(format!("path is not UTF-8: {}", path.display())))
}

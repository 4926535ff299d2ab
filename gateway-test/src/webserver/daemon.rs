//! How each web server the harness starts runs in the foreground.

use std::path::Path;
use std::process::Command;

/// A web-server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Daemon {
    Nginx,
    Apache,
    Lighttpd,
    Caddy,
    Haproxy,
}

impl Daemon {
    /// The binary and its Debian package.
    pub(crate) fn binary(self) -> (&'static str, &'static str) {
        match self {
            Daemon::Nginx => ("nginx", "nginx"),
            Daemon::Apache => ("apache2", "apache2"),
            Daemon::Lighttpd => ("lighttpd", "lighttpd"),
            Daemon::Caddy => ("caddy", "caddy"),
            Daemon::Haproxy => ("haproxy", "haproxy"),
        }
    }

    /// The command that runs `binary` in the foreground with `config`,
    /// everything it writes kept in `rundir`. Start it with
    /// [`process::spawn_with_env`](super::process::spawn_with_env) and
    /// [`env`](Self::env).
    pub(crate) fn command(self, binary: &Path, config: &Path, rundir: &Path) -> Command {
        let mut command = Command::new(binary);
        match self {
            Daemon::Nginx => {
                command
                    .arg("-p")
                    .arg(rundir)
                    .arg("-e")
                    .arg(rundir.join("error.log"))
                    .arg("-c")
                    .arg(config)
                    .arg("-g")
                    .arg("daemon off;");
            }
            Daemon::Apache => {
                command.arg("-DFOREGROUND").arg("-f").arg(config);
            }
            Daemon::Lighttpd => {
                command.arg("-D").arg("-f").arg(config);
            }
            Daemon::Caddy => {
                command
                    .arg("run")
                    .arg("--config")
                    .arg(config)
                    .arg("--adapter")
                    .arg("caddyfile");
            }
            Daemon::Haproxy => {
                // -dR: no SO_REUSEPORT, so that a port another test's
                // HAProxy holds makes this one fail to start (and the
                // harness try another port) instead of sharing it.
                command.arg("-f").arg(config).arg("-db").arg("-dR");
            }
        }
        command
    }

    /// The environment the server needs besides `PATH`: Caddy keeps its
    /// data (autosaved configuration, certificates) under `HOME` and the
    /// XDG directories, pointed at `rundir` so that nothing is written
    /// elsewhere.
    pub(crate) fn env(self, rundir: &Path) -> Vec<(&'static str, String)> {
        match self {
            Daemon::Caddy => {
                let dir = rundir.to_string_lossy().into_owned();
                vec![
                    ("HOME", dir.clone()),
                    ("XDG_CONFIG_HOME", dir.clone()),
                    ("XDG_DATA_HOME", dir),
                ]
            }
            _ => Vec::new(),
        }
    }
}

//! Typed listen addresses.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use super::listener::{BindOptions, Listener};
use super::systemd;

/// Where a server listens, as an operator writes it:
///
/// | text | meaning |
/// |---|---|
/// | `127.0.0.1:9000`, `[::1]:9000` | TCP |
/// | `localhost:9000` | TCP on the host name's first address that binds |
/// | `unix:/run/app.sock` | a Unix socket (a stale socket file is replaced) |
/// | `unix:/run/app.sock?mode=660` | the same, with these permission bits (octal) |
/// | `fd:0` | the listening socket the parent left on fd 0 (lighttpd `bin-path`, `spawn-fcgi`) |
/// | `systemd` | the one socket systemd passed (socket activation) |
/// | `systemd:NAME` | the socket systemd passed with `FileDescriptorName=NAME` |
///
/// ```
/// use gateway_core::server::ListenAddr;
///
/// let a: ListenAddr = "unix:/run/app.sock?mode=660".parse().unwrap();
/// assert_eq!(a.to_string(), "unix:/run/app.sock?mode=660");
/// let err = "localhost".parse::<ListenAddr>().unwrap_err();
/// assert!(err.to_string().contains("expected"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A host name and a TCP port, looked up when listening.
    Host {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
    /// A Unix socket path, with the permission bits to give it.
    Unix {
        /// The socket file's path.
        path: PathBuf,
        /// Its permission bits (`None`: the umask decides).
        mode: Option<u32>,
    },
    /// The listening socket on file descriptor 0.
    Stdin,
    /// A socket passed by systemd: the only one (`None`) or the one with
    /// this name.
    Systemd(Option<String>),
}

/// A listen address that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidListenAddr {
    input: String,
    why: &'static str,
}

impl fmt::Display for InvalidListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid listen address {:?}: {}; expected HOST:PORT \
             (127.0.0.1:9000, [::1]:9000, localhost:9000), unix:PATH[?mode=OCTAL], fd:0, \
             systemd or systemd:NAME",
            self.input, self.why
        )
    }
}

impl std::error::Error for InvalidListenAddr {}

impl FromStr for ListenAddr {
    type Err = InvalidListenAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| InvalidListenAddr {
            input: s.to_owned(),
            why,
        };
        if let Some(rest) = s.strip_prefix("unix:") {
            let (path, mode) = match rest.rsplit_once("?mode=") {
                Some((path, mode)) => {
                    let mode = u32::from_str_radix(mode, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| err("the mode is not an octal number up to 7777"))?;
                    (path, Some(mode))
                }
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(err("the socket path is empty"));
            }
            return Ok(ListenAddr::Unix {
                path: PathBuf::from(path),
                mode,
            });
        }
        if let Some(fd) = s.strip_prefix("fd:") {
            return match fd {
                "0" => Ok(ListenAddr::Stdin),
                _ => Err(err(
                    "only fd:0 can be adopted; pass other sockets with systemd's protocol",
                )),
            };
        }
        if s == "systemd" {
            return Ok(ListenAddr::Systemd(None));
        }
        if let Some(name) = s.strip_prefix("systemd:") {
            if name.is_empty() || name.contains(':') {
                return Err(err("a socket name is not empty and has no ':'"));
            }
            return Ok(ListenAddr::Systemd(Some(name.to_owned())));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(a));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| err("no port (HOST:PORT)"))?;
        // Decimal digits only: `u16::from_str` would also take a sign.
        let port = Some(port)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| err("the port is not a number from 0 to 65535"))?;
        // An IP address whose port `SocketAddr` did not take (leading
        // zeros): still a TCP address, so that it prints and parses back
        // the same.
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(ListenAddr::Tcp(SocketAddr::new(ip, port)));
        }
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with(['-', '.']);
        if !is_name {
            return Err(err("not an IP address or a host name"));
        }
        Ok(ListenAddr::Host {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Host { host, port } => write!(f, "{host}:{port}"),
            ListenAddr::Unix { path, mode: None } => write!(f, "unix:{}", path.display()),
            ListenAddr::Unix {
                path,
                mode: Some(m),
            } => write!(f, "unix:{}?mode={m:o}", path.display()),
            ListenAddr::Stdin => f.write_str("fd:0"),
            ListenAddr::Systemd(None) => f.write_str("systemd"),
            ListenAddr::Systemd(Some(n)) => write!(f, "systemd:{n}"),
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> Self {
        ListenAddr::Tcp(a)
    }
}

impl ListenAddr {
    /// Opens the listener: binds a TCP or Unix address (with `opts`'
    /// backlog, and for Unix its mode unless the address names one), or
    /// adopts the inherited socket. Must be called inside a tokio runtime;
    /// for `systemd` addresses, [`systemd::adopt`] must have run before the
    /// runtime started its threads (the servers' `run` functions do that).
    pub async fn listen(&self, opts: &BindOptions) -> std::io::Result<Listener> {
        match self {
            ListenAddr::Tcp(a) => Listener::bind_tcp(*a, opts),
            ListenAddr::Host { host, port } => {
                Listener::bind_host((host.as_str(), *port), opts).await
            }
            ListenAddr::Unix { path, mode } => {
                let mut opts = opts.clone();
                opts.remove_stale(true);
                if let Some(m) = mode {
                    opts.mode(*m);
                }
                Listener::bind_unix(path, &opts)
            }
            ListenAddr::Stdin => Listener::from_stdin()?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "fd:0: file descriptor 0 is not a listening socket",
                )
            }),
            ListenAddr::Systemd(name) => systemd::take(name.as_deref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port is decimal digits: no sign, which `u16::from_str` accepts.
    #[test]
    fn a_signed_port_is_refused() {
        for input in [
            "0.0.0.0:+88",
            "localhost:+8000",
            "[::1]:+1",
            "host:-1",
            "host:",
        ] {
            assert!(input.parse::<ListenAddr>().is_err(), "{input} was taken");
        }
    }

    /// What an address prints parses back to the same address, an IP
    /// address with a zero-padded port included.
    #[test]
    fn addresses_print_and_parse_back() {
        for input in [
            "127.0.0.1:8000",
            "0.0.0.0:088",
            "[::1]:0009",
            "localhost:80",
            "unix:/run/a.sock?mode=660",
            "fd:0",
            "systemd:web",
        ] {
            let addr: ListenAddr = input.parse().unwrap();
            let again: ListenAddr = addr.to_string().parse().unwrap();
            assert_eq!(again, addr, "{input}");
        }
        assert_eq!(
            "0.0.0.0:088".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 88)))
        );
    }
}

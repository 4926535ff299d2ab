//! How the program was started, and so what it serves.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use gateway_core::server::ListenAddr;

/// A protocol the program can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// One CGI request per process.
    Cgi,
    /// CGI as IIS runs it (`PATH_INFO` repeats `SCRIPT_NAME`).
    IisCgi,
    /// A FastCGI application server.
    FastCgi,
    /// An SCGI application server.
    Scgi,
    /// An HTTP/1.1 and HTTP/2 server.
    Http,
}

impl Protocol {
    /// The name used in `GATEWAY_PROTOCOL` and systemd socket names.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Cgi => "cgi",
            Protocol::IisCgi => "iis-cgi",
            Protocol::FastCgi => "fastcgi",
            Protocol::Scgi => "scgi",
            Protocol::Http => "http",
        }
    }

    /// Whether this protocol is served over sockets (not CGI).
    pub fn is_socket(self) -> bool {
        matches!(self, Protocol::FastCgi | Protocol::Scgi | Protocol::Http)
    }

    /// The address a socket protocol listens on when nothing says.
    fn default_addr(self) -> &'static str {
        match self {
            Protocol::FastCgi => "127.0.0.1:9000",
            Protocol::Scgi => "127.0.0.1:4000",
            _ => "127.0.0.1:8000",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A protocol name that is not one of `cgi`, `iis-cgi`, `fastcgi`, `scgi`,
/// `http`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol(pub String);

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown protocol {:?}: expected cgi, iis-cgi, fastcgi, scgi or http",
            self.0
        )
    }
}

impl std::error::Error for UnknownProtocol {}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "cgi" => Protocol::Cgi,
            "iis-cgi" => Protocol::IisCgi,
            "fastcgi" => Protocol::FastCgi,
            "scgi" => Protocol::Scgi,
            "http" => Protocol::Http,
            _ => return Err(UnknownProtocol(s.to_owned())),
        })
    }
}

/// What file descriptor 0 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// A listening socket (lighttpd `bin-path`, `spawn-fcgi`, inetd-style
    /// managers): a socket server should accept on it.
    Listening,
    /// A connected socket (Apache `mod_cgid` gives a CGI program one).
    Connected,
    /// A terminal: someone ran the program by hand.
    Terminal,
    /// Closed. A Rust program does not see this on Linux and most other
    /// Unix systems: the runtime reopens a closed fd 0 on `/dev/null`
    /// before `main`, which then looks like [`Stdin::Other`]. It remains
    /// for [`Facts`] built by hand and for platforms that leave fd 0 closed.
    Closed,
    /// A pipe, a file or `/dev/null`.
    Other,
}

impl Stdin {
    /// Looks at this process's fd 0.
    pub fn inspect() -> Stdin {
        use std::io::IsTerminal;
        use std::os::fd::AsFd;
        let stdin = std::io::stdin();
        let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
            return Stdin::Closed;
        };
        if stdin.is_terminal() {
            return Stdin::Terminal;
        }
        let sock = socket2::Socket::from(fd);
        match sock.is_listener() {
            Ok(true) => Stdin::Listening,
            Ok(false) => Stdin::Connected,
            // ENOTSOCK: a pipe or a file.
            Err(_) => Stdin::Other,
        }
    }
}

/// The facts the start-up decision is made from: the environment, what fd 0
/// is, and the sockets systemd passed (by name).
#[derive(Debug, Clone)]
pub struct Facts {
    /// The environment variables that matter (the rest may be left out).
    pub vars: HashMap<String, String>,
    /// What fd 0 is.
    pub stdin: Stdin,
    /// The names of the sockets systemd passed to this process
    /// (`LISTEN_PID` is ours), in order; empty when none.
    pub systemd: Vec<String>,
}

impl Facts {
    /// The facts of this process. Adopts systemd's sockets (which removes
    /// `LISTEN_PID` and `LISTEN_FDS` from the environment): call it before
    /// any thread is started.
    pub fn gather() -> Facts {
        gateway_core::server::systemd::adopt();
        let vars = [
            "GATEWAY_PROTOCOL",
            "GATEWAY_ADDR",
            "GATEWAY_INTERFACE",
            "SERVER_SOFTWARE",
            "PORT",
        ]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), v)))
        .collect();
        Facts {
            vars,
            stdin: Stdin::inspect(),
            systemd: gateway_core::server::systemd::names(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Where a socket server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socket {
    /// An address to bind (or `fd:0`, or a systemd socket by name).
    Addr(ListenAddr),
    /// Every socket systemd passed; each named `fastcgi`, `scgi` or `http`
    /// serves that protocol, the others tell each connection's protocol by
    /// its first bytes.
    Systemd(Vec<String>),
}

/// What the program will serve, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The protocol; `None` on a socket whose connections each tell theirs
    /// by their first bytes (FastCGI, SCGI or HTTP).
    pub protocol: Option<Protocol>,
    /// Where a socket server listens (`None` for CGI).
    pub socket: Option<Socket>,
    /// Why, in a few words, for the log.
    pub reason: &'static str,
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Some(Protocol::Cgi) => f.write_str("one CGI request")?,
            Some(Protocol::IisCgi) => f.write_str("one IIS-CGI request")?,
            Some(Protocol::FastCgi) => f.write_str("FastCGI")?,
            Some(Protocol::Scgi) => f.write_str("SCGI")?,
            Some(Protocol::Http) => f.write_str("HTTP")?,
            None if matches!(self.socket, Some(Socket::Systemd(_))) => {
                f.write_str("each socket's named protocol (else told per connection)")?
            }
            None => f.write_str("FastCGI, SCGI or HTTP (told per connection)")?,
        }
        match &self.socket {
            None => Ok(()),
            Some(Socket::Addr(a)) => write!(f, " on {a}"),
            Some(Socket::Systemd(names)) => {
                write!(f, " on systemd's sockets ({})", names.join(", "))
            }
        }
    }
}

/// A start that cannot work, with the one line that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Decides what to serve, in this order:
///
/// 1. an explicit choice: `explicit` (the builder's), else
///    `GATEWAY_PROTOCOL` (`cgi`, `iis-cgi`, `fastcgi`, `scgi`, `http`);
///    a socket protocol listens on `GATEWAY_ADDR` (the builder's address
///    first), else on systemd's sockets, else on fd 0 if it is a listening
///    socket, else on its default address (FastCGI 127.0.0.1:9000, SCGI
///    127.0.0.1:4000, HTTP 127.0.0.1:8000);
/// 2. sockets systemd passed to this process: each serves the protocol it
///    is named after, or tells it per connection;
/// 3. fd 0 is a listening socket: per connection, by its first bytes;
/// 4. `GATEWAY_INTERFACE` is `CGI/…`: CGI, or IIS-CGI when
///    `SERVER_SOFTWARE` starts with `Microsoft-IIS` (a connected socket on
///    fd 0, as Apache's `mod_cgid` gives, is CGI's stdin);
/// 5. HTTP on `GATEWAY_ADDR`, else `0.0.0.0:$PORT` when `PORT` is set (the
///    platform convention), else 127.0.0.1:8000.
pub fn decide(
    facts: &Facts,
    explicit: Option<Protocol>,
    addr: Option<&ListenAddr>,
) -> Result<Start, StartError> {
    let env_addr = match (addr, facts.var("GATEWAY_ADDR")) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(text)) => Some(
            text.parse::<ListenAddr>()
                .map_err(|e| StartError(format!("GATEWAY_ADDR: {e}")))?,
        ),
        (None, None) => None,
    };
    let explicit = match explicit {
        Some(p) => Some(p),
        None => match facts.var("GATEWAY_PROTOCOL") {
            Some(name) => Some(
                name.parse::<Protocol>()
                    .map_err(|e| StartError(format!("GATEWAY_PROTOCOL: {e}")))?,
            ),
            None => None,
        },
    };
    if let Some(p) = explicit {
        if !p.is_socket() {
            if facts.var("GATEWAY_INTERFACE").is_none() {
                let why = match facts.stdin {
                    Stdin::Terminal => "stdin is a terminal",
                    Stdin::Closed => "stdin is closed",
                    _ => "GATEWAY_INTERFACE is not set",
                };
                return Err(StartError(format!(
                    "{p} was chosen but this is not a CGI request ({why}): run the program from a web server"
                )));
            }
            return Ok(Start {
                protocol: Some(p),
                socket: None,
                reason: "chosen explicitly",
            });
        }
        let socket = if let Some(a) = env_addr {
            Socket::Addr(a)
        } else if !facts.systemd.is_empty() {
            Socket::Systemd(facts.systemd.clone())
        } else if facts.stdin == Stdin::Listening {
            Socket::Addr(ListenAddr::Stdin)
        } else {
            Socket::Addr(
                p.default_addr()
                    .parse()
                    .map_err(|e| StartError(format!("{e}")))?,
            )
        };
        return Ok(Start {
            protocol: Some(p),
            socket: Some(socket),
            reason: "chosen explicitly",
        });
    }
    if !facts.systemd.is_empty() {
        return Ok(Start {
            protocol: None,
            socket: Some(Socket::Systemd(facts.systemd.clone())),
            reason: "sockets passed by systemd",
        });
    }
    if facts.stdin == Stdin::Listening {
        return Ok(Start {
            protocol: None,
            socket: Some(Socket::Addr(ListenAddr::Stdin)),
            reason: "a listening socket on fd 0",
        });
    }
    if facts
        .var("GATEWAY_INTERFACE")
        .is_some_and(|v| v.starts_with("CGI/"))
    {
        let iis = facts
            .var("SERVER_SOFTWARE")
            .is_some_and(|s| s.starts_with("Microsoft-IIS"));
        return Ok(Start {
            protocol: Some(if iis { Protocol::IisCgi } else { Protocol::Cgi }),
            socket: None,
            reason: "GATEWAY_INTERFACE is set",
        });
    }
    if facts.stdin == Stdin::Closed {
        return Err(StartError(
            "stdin is closed and nothing says how to serve: set GATEWAY_PROTOCOL and GATEWAY_ADDR"
                .into(),
        ));
    }
    let addr = match (env_addr, facts.var("PORT")) {
        (Some(a), _) => a,
        (None, Some(port)) => format!("0.0.0.0:{port}")
            .parse()
            .map_err(|_| StartError(format!("PORT: not a port number: {port:?}")))?,
        (None, None) => Protocol::Http
            .default_addr()
            .parse()
            .map_err(|e| StartError(format!("{e}")))?,
    };
    Ok(Start {
        protocol: Some(Protocol::Http),
        socket: Some(Socket::Addr(addr)),
        reason: "the default: HTTP",
    })
}

//! systemd: socket activation (`LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`) and readiness notification (`NOTIFY_SOCKET`).
//!
//! Sockets are adopted through the `listenfd` crate, which hands them over
//! as owned standard listeners after checking their type, so no unsafe code
//! is needed here (crates that return raw descriptors, such as `sd-notify`'s
//! `listen_fds`, would need it to take ownership; `tokio-listener` brings
//! its own address syntax and much more than this needs). Readiness goes
//! through `sd-notify`, whose messages are plain datagrams and which does
//! nothing when `NOTIFY_SOCKET` is unset.

use std::io;
use std::sync::Mutex;

use tokio::net::{TcpListener, UnixListener};

use super::listener::Listener;

/// One socket systemd passed.
#[derive(Debug)]
enum Passed {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// The sockets adopted from the environment, taken one by one.
#[derive(Debug)]
struct Adopted {
    sockets: Vec<(String, Option<Passed>)>,
}

static ADOPTED: Mutex<Option<Adopted>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Adopted>> {
    ADOPTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adopts the listening sockets systemd passed to this process, once: when
/// `LISTEN_PID` is this process's id and `LISTEN_FDS` is set, the sockets
/// from fd 3 on become available to [`take`] and to `systemd` listen
/// addresses, named by `LISTEN_FDNAMES`. Returns how many there are.
///
/// Call it early in `main`, before a runtime starts its threads: it removes
/// `LISTEN_PID` and `LISTEN_FDS` from the environment (so child processes do
/// not take the sockets for theirs), which is only sound while no other
/// thread reads the environment. The servers' `run` functions and
/// `gateway::run` call it first thing. Later calls return the same count.
pub fn adopt() -> usize {
    let mut adopted = lock();
    if let Some(a) = adopted.as_ref() {
        return a.sockets.len();
    }
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let mut sockets = Vec::new();
    if ours {
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|n| n.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        let mut fds = listenfd::ListenFd::from_env();
        for i in 0..fds.len() {
            let passed = match fds.take_tcp_listener(i) {
                Ok(Some(l)) => Some(Passed::Tcp(l)),
                _ => match fds.take_unix_listener(i) {
                    Ok(Some(l)) => Some(Passed::Unix(l)),
                    _ => {
                        tracing::warn!(
                            fd = 3 + i,
                            "systemd passed a socket that is not a stream listener; ignored"
                        );
                        None
                    }
                },
            };
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
            sockets.push((name, passed));
        }
        tracing::debug!(count = sockets.len(), "adopted systemd sockets");
    }
    let n = sockets.len();
    *adopted = Some(Adopted { sockets });
    n
}

/// The names of the adopted sockets not taken yet, in order (`unknown` for
/// a socket without a `FileDescriptorName`). Adopts first if needed.
pub fn names() -> Vec<String> {
    adopt();
    lock().as_ref().map_or_else(Vec::new, |a| {
        a.sockets
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    })
}

/// Takes an adopted socket as a [`Listener`]: with `None`, the only one
/// (an error when there are several: name one); with a name, the one of
/// that name. Must be called inside a tokio runtime.
pub fn take(name: Option<&str>) -> io::Result<Listener> {
    adopt();
    let mut adopted = lock();
    let sockets = adopted.as_mut().map(|a| &mut a.sockets);
    let Some(sockets) = sockets.filter(|s| !s.is_empty()) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "systemd: no socket was passed to this process (LISTEN_PID/LISTEN_FDS)",
        ));
    };
    let slot = match name {
        Some(name) => sockets.iter_mut().find(|(n, s)| n == name && s.is_some()),
        None => {
            if sockets.len() > 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "systemd passed {} sockets: name one (systemd:NAME, with FileDescriptorName=)",
                        sockets.len()
                    ),
                ));
            }
            sockets.first_mut()
        }
    };
    let Some(passed) = slot.and_then(|(_, s)| s.take()) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "systemd: no socket named {:?} (or it was taken already)",
                name.unwrap_or("")
            ),
        ));
    };
    into_listener(passed)
}

/// Takes every adopted socket not taken yet, with its name. Must be called
/// inside a tokio runtime.
pub fn take_all() -> io::Result<Vec<(String, Listener)>> {
    adopt();
    let mut adopted = lock();
    let mut out = Vec::new();
    if let Some(a) = adopted.as_mut() {
        for (name, slot) in &mut a.sockets {
            if let Some(passed) = slot.take() {
                out.push((name.clone(), into_listener(passed)?));
            }
        }
    }
    Ok(out)
}

fn into_listener(passed: Passed) -> io::Result<Listener> {
    match passed {
        Passed::Tcp(l) => {
            l.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(l)?))
        }
        Passed::Unix(l) => {
            l.set_nonblocking(true)?;
            Ok(Listener::Unix(UnixListener::from_std(l)?, None))
        }
    }
}

/// Tells the service manager the server is ready (`READY=1`), with a status
/// line. Does nothing when the process was not started with
/// `NOTIFY_SOCKET` (not under systemd, or not `Type=notify`).
pub fn notify_ready(status: &str) {
    send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells the service manager the server is stopping (`STOPPING=1`), with
/// a status line.
pub fn notify_stopping(status: &str) {
    send(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Sends a status line (`STATUS=…`) to the service manager.
pub fn notify_status(status: &str) {
    send(&[sd_notify::NotifyState::Status(status)]);
}

fn send(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "notifying the service manager failed");
    }
}

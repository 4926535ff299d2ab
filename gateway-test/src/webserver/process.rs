//! Child processes, run directories and ports for the web-server harness.

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// `PATH` for the servers (and so for the CGI programs they start).
pub(crate) const SERVER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `name` in `PATH` or the system binary directories (which a
/// non-root `PATH` often lacks). The error names the Debian package.
pub fn find_binary(name: &str, package: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(std::env::split_paths(SERVER_PATH));
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "`{name}` is not installed (searched PATH and {SERVER_PATH}); \
             install the Debian package `{package}` (apt-get install -y {package}), \
             as .ci/run does"
        ),
    ))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Creates a fresh, empty run directory under the system temp directory.
///
/// It is world-writable (with the sticky bit) because servers that drop
/// privileges open logs and sockets in it after they have become the
/// unprivileged user. It gets an empty `htdocs/` and a world-writable `tmp/`.
pub fn make_rundir(label: &str) -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "gateway-{label}-{}-{n}-{nanos:x}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777))?;
                fs::create_dir(dir.join("htdocs"))?;
                fs::set_permissions(dir.join("htdocs"), fs::Permissions::from_mode(0o755))?;
                fs::create_dir(dir.join("tmp"))?;
                fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("could not create a unique run directory"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether this process runs as root (Linux: read from `/proc`).
pub(crate) fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// Whether any user can run `program`: it is readable and executable by
/// others, and every directory above it can be searched by others.
pub(crate) fn usable_by_anyone(program: &Path) -> bool {
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode(program) & 0o005 != 0o005 {
        return false;
    }
    program
        .ancestors()
        .skip(1)
        .all(|dir| dir.as_os_str().is_empty() || mode(dir) & 0o001 != 0)
}

/// Copies `program` into `<rundir>/bin/` with mode 0755 and returns the copy.
pub(crate) fn copy_program(program: &Path, rundir: &Path) -> io::Result<PathBuf> {
    let bin = rundir.join("bin");
    fs::create_dir_all(&bin)?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    let name = program
        .file_name()
        .ok_or_else(|| io::Error::other("program path has no file name"))?;
    let copy = bin.join(name);
    fs::copy(program, &copy)?;
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
    Ok(copy)
}

/// Starts `command` in its own process group, with a clean environment
/// (only `PATH`) and its output appended to `<rundir>/<label>.out`.
pub fn spawn(command: Command, rundir: &Path, label: &str) -> io::Result<Child> {
    spawn_with_env::<&str>(command, rundir, label, &[])
}

/// As [`spawn`], with `env` added to the clean environment.
pub fn spawn_with_env<V: AsRef<std::ffi::OsStr>>(
    mut command: Command,
    rundir: &Path,
    label: &str,
    env: &[(&str, V)],
) -> io::Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(rundir.join(format!("{label}.out")))?;
    command
        .env_clear()
        .env("PATH", SERVER_PATH)
        .envs(env.iter().map(|(k, v)| (k, v.as_ref())))
        .current_dir(rundir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {label}: {e}")))
}

/// Waits until `ready` holds, polling; fails if `child` exits first or the
/// deadline passes. `what` describes the wait in the error.
pub fn wait_until(
    child: &mut Child,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("exited ({status}) before {what}")));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("not ready after {timeout:?}: {what}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until `addr` accepts connections, as [`wait_until`] does, and then
/// until `child` has run a little longer (50 ms): a server that lost the
/// race for a free port to another test's server exits, while the other
/// one answered the probe.
pub fn wait_for_port(child: &mut Child, what: &str, addr: SocketAddr) -> io::Result<()> {
    wait_until(child, super::START_TIMEOUT, what, || accepts(addr))?;
    std::thread::sleep(Duration::from_millis(50));
    match child.try_wait()? {
        None => Ok(()),
        Some(status) => Err(io::Error::other(format!(
            "exited ({status}) just after {what} was ready (another process on {addr}?)"
        ))),
    }
}

/// Whether something accepts connections on `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Stops `child` and everything in its process group: SIGTERM, up to
/// `grace` to exit, then SIGKILL. Leftover group members (workers whose
/// parent died) get SIGKILL too.
pub fn stop(child: &mut Child, grace: Duration) {
    let pgid = child.id();
    if matches!(child.try_wait(), Ok(None)) {
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + grace;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            signal_group(pgid, "KILL");
            let _ = child.wait().ok();
        }
    }
    signal_group(pgid, "KILL");
}

/// Sends a signal to a process group through the shell's `kill` (std has
/// no `kill(2)` for arbitrary signals, and the workspace forbids unsafe
/// code). A group that no longer exists is not an error.
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("/bin/sh")
        .args(["-c", &format!("kill -s {signal} -- -{pgid} 2>/dev/null")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok();
}

/// Everything the processes of a run directory logged so far (its `*.log`
/// files and the captured `*.out` output), headed by `label`, for assertion
/// messages.
pub fn collect_logs(label: &str, rundir: &Path) -> String {
    collect_logs_but(label, rundir, &[])
}

/// As [`collect_logs`], without the files named in `skip` (`app.out`, to
/// see only what the web server logged).
pub fn collect_logs_but(label: &str, rundir: &Path, skip: &[&str]) -> String {
    let mut names: Vec<String> = std::fs::read_dir(rundir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".log") || n.ends_with(".out"))
                .filter(|n| !skip.contains(&n.as_str()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = format!("--- {label} logs in {}\n", rundir.display());
    for name in names {
        let text = std::fs::read(rundir.join(&name)).unwrap_or_default();
        if !text.is_empty() {
            out.push_str(&format!(
                "--- {name}\n{}\n",
                String::from_utf8_lossy(&text).trim_end()
            ));
        }
    }
    out
}

/// Stops `children` in reverse start order (SIGTERM, then SIGKILL after a
/// grace period) and removes `rundir`, unless
/// [`KEEP_RUNDIR_VAR`](super::KEEP_RUNDIR_VAR) is set.
pub fn teardown(children: &mut [Child], rundir: &Path) {
    for child in children.iter_mut().rev() {
        stop(child, std::time::Duration::from_secs(5));
    }
    if std::env::var_os(super::KEEP_RUNDIR_VAR).is_some() {
        eprintln!("{}: kept {}", super::KEEP_RUNDIR_VAR, rundir.display());
    } else {
        let _ = std::fs::remove_dir_all(rundir);
    }
}

/// Established TCP connections whose local port is `port`, read from
/// `/proc/net/tcp`: with a server's port, how many connections it has open
/// (a web server's connections to an application server, say).
pub fn established_to(port: u16) -> usize {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// Runs `start` up to three times — another test may take a free port
/// between the probe and the bind — while `retry` says the error is worth
/// another try; returns the first success or the last error.
pub fn start_with_retries<T>(
    mut start: impl FnMut() -> io::Result<T>,
    retry: impl Fn(&io::Error) -> bool,
) -> io::Result<T> {
    let mut last = None;
    for _ in 0..3 {
        match start() {
            Ok(t) => return Ok(t),
            Err(e) if !retry(&e) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("did not start")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_package() {
        let err = find_binary("gateway-no-such-server", "gateway-pkg").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains("apt-get install -y gateway-pkg"),
            "{err}"
        );
    }

    #[test]
    fn finds_sh() {
        assert!(find_binary("sh", "dash").unwrap().ends_with("sh"));
    }

    #[test]
    fn rundir_layout_and_permissions() {
        let dir = make_rundir("selftest").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o1777);
        assert_eq!(mode(&dir.join("htdocs")), 0o755);
        assert_eq!(mode(&dir.join("tmp")), 0o1777);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stop_ends_the_whole_process_group() {
        let dir = make_rundir("selftest").unwrap();
        let mut command = Command::new("/bin/sh");
        // A child that ignores SIGTERM, under a parent that exits on it.
        command.args([
            "-c",
            "sh -c 'trap \"\" TERM; echo $$ > grandchild; sleep 60' & wait",
        ]);
        let mut child = spawn(command, &dir, "selftest").unwrap();
        let pid_file = dir.join("grandchild");
        wait_until(&mut child, Duration::from_secs(5), "grandchild pid", || {
            fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
        })
        .unwrap();
        let grandchild = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        stop(&mut child, Duration::from_millis(300));
        let proc_dir = Path::new("/proc").join(&grandchild);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting for init to reap it.
        while fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| !s.contains(") Z "))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stat = fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "still running: {stat}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

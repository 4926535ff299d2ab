//! `Server::run` as a service manager runs it: the test re-runs itself as a
//! child process that serves on a Unix socket with `NOTIFY_SOCKET` set; the
//! parent reads the readiness messages, sends a request, stops the child
//! with SIGTERM, and reads the stopping message.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_scgi::{ListenAddr, Server};

/// Set in the child: the directory to serve in.
const STAGE: &str = "GATEWAY_SCGI_TEST_RUN_DIR";
/// Set in the child: the threads to serve on.
const THREADS: &str = "GATEWAY_SCGI_TEST_RUN_THREADS";

/// The child's side: serves until SIGTERM on the threads it is told (one
/// runtime of its own each when more than one). Does nothing when run by
/// `cargo test` directly.
#[test]
fn run_child_stage() {
    let Some(dir) = std::env::var_os(STAGE) else {
        return;
    };
    let path = PathBuf::from(dir).join("app.sock");
    let addr: ListenAddr = format!("unix:{}", path.display()).parse().unwrap();
    let threads = std::env::var(THREADS)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut server = Server::new();
    server
        .worker_threads(threads)
        .grace_period(Duration::from_secs(2));
    server.run(&addr, tower::service_fn(support::app)).unwrap();
    assert!(!path.exists(), "the socket file is removed");
}

/// The child, killed if the test fails before it stopped; its output is
/// shown then.
struct Guard {
    child: Child,
    log: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("the child's output:\n{log}");
        }
    }
}

fn receive(notify: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a message from the child");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn run_serves_until_sigterm_and_tells_the_service_manager() {
    serve_until_sigterm(1);
}

/// The same on three threads, each with a runtime of its own sharing the
/// one socket: readiness once, SIGTERM stops them all, the socket goes.
#[test]
fn run_per_thread_serves_until_sigterm_and_tells_the_service_manager() {
    serve_until_sigterm(3);
}

fn serve_until_sigterm(threads: usize) {
    let dir =
        std::env::temp_dir().join(format!("gateway-scgi-run-{}-{threads}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    let log = dir.join("child.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "run_child_stage",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STAGE, &dir)
        .env(THREADS, threads.to_string())
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut guard = Guard { child, log };

    let socket = dir.join("app.sock");
    assert_eq!(
        receive(&notify),
        format!(
            "READY=1\nSTATUS=serving SCGI on unix:{}\n",
            socket.display()
        )
    );

    let mut stream = UnixStream::connect(&socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(&support::get("/info")).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("Status: 200 OK\r\n"), "{text}");
    assert!(text.contains("scgi multithread=true"), "{text}");

    let killed = Command::new("kill")
        .args(["-TERM", &guard.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(receive(&notify), "STOPPING=1\nSTATUS=stopping\n");

    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the child does not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&guard.log).unwrap_or_default();
    assert!(status.success(), "{status}\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! systemd socket activation and readiness, run the way systemd runs a
//! service: the test re-runs itself as a child process that makes the
//! listening sockets at fds 3 and 4, sets `LISTEN_PID` to its own pid and
//! replaces itself (`exec`, same pid, sockets inherited) with the stage that
//! adopts them.
#![cfg(feature = "server")]

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use gateway_core::server::{ListenAddr, systemd};

const STAGE: &str = "GATEWAY_TEST_SYSTEMD_STAGE";

/// Runs this test binary's test `name` again in a child with `env`.
fn rerun(name: &str, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A listening socket that survives `exec` at exactly fd `want`.
fn inheritable_listener_at(want: i32, unix: Option<&std::path::Path>) -> socket2::Socket {
    let sock = match unix {
        Some(path) => {
            let s =
                socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
            let _ = std::fs::remove_file(path);
            s.bind(&socket2::SockAddr::unix(path).unwrap()).unwrap();
            s
        }
        None => {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
            s
        }
    };
    sock.listen(16).unwrap();
    assert_eq!(
        sock.as_raw_fd(),
        want,
        "the test needs fds {want} free in the child"
    );
    sock.set_cloexec(false).unwrap();
    sock
}

/// Two named sockets (`http` over TCP, `fastcgi` over Unix): each is found
/// by its name, the unnamed form refuses to guess, and the sockets serve.
#[test]
fn adopts_named_sockets_passed_the_systemd_way() {
    let dir = std::env::temp_dir().join(format!("gw-systemd-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("fcgi.sock");
    match std::env::var(STAGE).as_deref() {
        Err(_) => {
            let out = rerun(
                "adopts_named_sockets_passed_the_systemd_way",
                &[
                    (STAGE, "1".into()),
                    ("GATEWAY_TEST_SOCK", path.display().to_string()),
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("adopted: http fastcgi"), "{text}");
        }
        Ok("1") => {
            let path = std::path::PathBuf::from(std::env::var("GATEWAY_TEST_SOCK").unwrap());
            let tcp = inheritable_listener_at(3, None);
            let _unix = inheritable_listener_at(4, Some(&path));
            let port = tcp.local_addr().unwrap().as_socket().unwrap().port();
            let err = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "adopts_named_sockets_passed_the_systemd_way",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(STAGE, "2")
                .env("GATEWAY_TEST_PORT", port.to_string())
                .env("LISTEN_PID", std::process::id().to_string())
                .env("LISTEN_FDS", "2")
                .env("LISTEN_FDNAMES", "http:fastcgi")
                .exec();
            panic!("exec failed: {err}");
        }
        Ok(_) => {
            let path = std::path::PathBuf::from(std::env::var("GATEWAY_TEST_SOCK").unwrap());
            let port: u16 = std::env::var("GATEWAY_TEST_PORT").unwrap().parse().unwrap();
            assert_eq!(systemd::adopt(), 2);
            assert_eq!(systemd::names(), ["http", "fastcgi"]);
            assert!(std::env::var("LISTEN_PID").is_err(), "cleared for children");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let any = "systemd".parse::<ListenAddr>().unwrap();
                let e = any.listen(&Default::default()).await.unwrap_err();
                assert!(e.to_string().contains("name one"), "{e}");
                let fcgi = "systemd:fastcgi".parse::<ListenAddr>().unwrap();
                let l = fcgi.listen(&Default::default()).await.unwrap();
                assert!(l.tcp_addr().is_none(), "fastcgi is the Unix socket");
                let accept = tokio::spawn(async move { l.accept().await.map(|_| ()) });
                let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
                c.write_all(b"x").unwrap();
                accept.await.unwrap().unwrap();
                let http = "systemd:http".parse::<ListenAddr>().unwrap();
                let l = http.listen(&Default::default()).await.unwrap();
                assert_eq!(l.tcp_addr().unwrap().port(), port);
                let again = http.listen(&Default::default()).await.unwrap_err();
                assert!(again.to_string().contains("taken"), "{again}");
            });
            println!("adopted: http fastcgi");
        }
    }
}

/// Sockets meant for another process (`LISTEN_PID` not ours) are left
/// alone.
#[test]
fn sockets_for_another_pid_are_not_adopted() {
    match std::env::var(STAGE).as_deref() {
        Err(_) => {
            let out = rerun(
                "sockets_for_another_pid_are_not_adopted",
                &[
                    (STAGE, "2".into()),
                    ("LISTEN_PID", "1".into()),
                    ("LISTEN_FDS", "1".into()),
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("none adopted"), "{text}");
        }
        Ok(_) => {
            assert_eq!(systemd::adopt(), 0);
            assert_eq!(std::env::var("LISTEN_FDS").as_deref(), Ok("1"));
            println!("none adopted");
        }
    }
}

/// Readiness: `READY=1` and `STOPPING=1` with status lines reach the
/// socket named by `NOTIFY_SOCKET`; without it, nothing happens.
#[test]
fn readiness_messages_reach_the_notify_socket() {
    match std::env::var(STAGE).as_deref() {
        Err(_) => {
            let path = std::env::temp_dir().join(format!("gw-notify-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let out = rerun(
                "readiness_messages_reach_the_notify_socket",
                &[
                    (STAGE, "2".into()),
                    ("NOTIFY_SOCKET", path.display().to_string()),
                ],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut got = Vec::new();
            for _ in 0..2 {
                let mut buf = [0u8; 512];
                let n = sock.recv(&mut buf).unwrap();
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            let _ = std::fs::remove_file(&path);
            assert_eq!(got[0], "READY=1\nSTATUS=listening on 127.0.0.1:1\n");
            assert_eq!(got[1], "STOPPING=1\nSTATUS=stopping\n");
        }
        Ok(_) => {
            systemd::notify_ready("listening on 127.0.0.1:1");
            systemd::notify_stopping("stopping");
        }
    }
}

//! Three FastCGI backends (the conformance example) behind an nginx
//! upstream, configured from
//! `examples/webservers/scale-out/nginx-fastcgi-upstream.conf`, restarted
//! one by one under load: each new process listens on its backend's port
//! next to the old one (`SO_REUSEPORT`), then the old one gets SIGTERM. No
//! client request may fail, and every old process must exit 0.
//!
//! `scripts/scale-out.sh` runs the longer version of this (and HAProxy,
//! killed backends, backends in network namespaces). This needs nginx, so
//! it is ignored by a plain `cargo test`; `.ci/run` runs it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway_test::http_client::Request;
use gateway_test::webserver::{START_TIMEOUT, example_binary, process, render, templates_dir};

/// Listening TCP sockets on `port`, from `/proc/net/tcp`: two while an old
/// and a new backend share it.
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&"0A")
        })
        .count()
}

fn start_backend(program: &Path, port: u16, rundir: &Path, n: usize) -> Child {
    let mut command = Command::new(program);
    command.arg("fastcgi").arg(format!("127.0.0.1:{port}"));
    process::spawn_with_env(
        command,
        rundir,
        &format!("backend-{port}-{n}"),
        &[("CONFORMANCE_REUSE_PORT", "1")],
    )
    .unwrap_or_else(|e| panic!("starting a backend on {port}: {e}"))
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn rolling_restart_behind_nginx_fails_no_request() {
    let program = example_binary("conformance").unwrap_or_else(|e| panic!("{e}"));
    let nginx = process::find_binary("nginx", "nginx").unwrap_or_else(|e| panic!("{e}"));
    let rundir = process::make_rundir("scale-out").unwrap();
    let mut children: Vec<Child> = Vec::new();
    let logs = |rundir: &Path| process::collect_logs("scale-out", rundir);

    // Three backends, each on a port of its own.
    let ports: Vec<u16> = (0..3).map(|_| process::free_port().unwrap()).collect();
    let mut backends: Vec<Child> = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let mut child = start_backend(&program, port, &rundir, 0);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        process::wait_for_port(&mut child, &format!("backend {i}"), addr)
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rundir)));
        backends.push(child);
    }

    // nginx in front of them.
    let port = process::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let rundir_text = rundir.to_string_lossy().into_owned();
    let b: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let template = std::fs::read_to_string(
        templates_dir()
            .join("scale-out")
            .join("nginx-fastcgi-upstream.conf"),
    )
    .unwrap();
    let config = render(
        &template,
        &[
            ("LISTEN", &listen),
            ("RUNDIR", &rundir_text),
            ("BACKEND1", &b[0]),
            ("BACKEND2", &b[1]),
            ("BACKEND3", &b[2]),
        ],
    )
    .unwrap();
    let config_path = rundir.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let mut command = Command::new(&nginx);
    command
        .arg("-p")
        .arg(&rundir)
        .arg("-c")
        .arg(&config_path)
        .arg("-g")
        .arg("daemon off;");
    let mut front = process::spawn(command, &rundir, "nginx").unwrap();
    let front_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    process::wait_for_port(&mut front, "nginx", front_addr)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rundir)));
    children.push(front);

    // Load: 8 clients sending GETs that take a few milliseconds each, so
    // requests are in flight on every backend when it is told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = Request::new("GET", "/fcgi/conformance/sleep?ms=3").send(front_addr);
                    sent.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Ok(r) if r.status == 200 && r.text() == "done" => {}
                        Ok(r) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{} {:?}", r.status, r.text()))
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();

    // The rolling restart.
    std::thread::sleep(Duration::from_millis(500));
    let mut exits = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let mut new = start_backend(&program, port, &rundir, 1);
        process::wait_until(&mut new, START_TIMEOUT, "the new backend listens", || {
            listeners_on(port) >= 2
        })
        .unwrap_or_else(|e| panic!("backend {i}: {e}\n{}", logs(&rundir)));
        let mut old = std::mem::replace(&mut backends[i], new);
        let stopping = Instant::now();
        process::stop(&mut old, Duration::from_secs(20));
        exits.push((i, old.try_wait().ok().flatten(), stopping.elapsed()));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    children.extend(backends);
    let log_text = logs(&rundir);
    process::teardown(&mut children, &rundir);

    let sent = sent.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap();
    assert!(sent > 100, "only {sent} requests were sent\n{log_text}");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed during the rolling restart: {:?}\n{log_text}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    for (i, status, took) in exits {
        assert!(
            status.is_some_and(|s| s.success()),
            "old backend {i} ended with {status:?} after SIGTERM ({took:?}), not exit 0\n{log_text}"
        );
    }
}

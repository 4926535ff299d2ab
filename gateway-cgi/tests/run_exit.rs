//! `gateway_cgi::run` in a process of its own: what the runtime still does
//! at the end of the request. This file is its own test harness: run with
//! `GATEWAY_CGI_TEST_CHILD=<case>` and a CGI environment, it is the CGI
//! program; without, it starts itself that way and checks what came out.

use std::convert::Infallible;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use gateway_cgi::Body;
use http::{Request, Response};

const CHILD: &str = "GATEWAY_CGI_TEST_CHILD";

/// Says on stderr that it was dropped.
struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        eprintln!("dropped: {}", self.0);
    }
}

/// The CGI program: answers `ok`; with `task`, first spawns a task that
/// never finishes (left alive when the response is out), with `timer` a
/// task that has finished after a timer and a blocking call.
fn child(case: &str) -> ExitCode {
    let case = case.to_owned();
    let app = tower::service_fn(move |_req: Request<Body>| {
        let case = case.clone();
        async move {
            match case.as_str() {
                "task" => {
                    let guard = Noisy("pending task");
                    tokio::spawn(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                    });
                }
                "timer" => {
                    let task = tokio::spawn(async {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        tokio::task::spawn_blocking(|| 7).await.unwrap_or(0)
                    });
                    let n = task.await.unwrap_or(0);
                    return Ok::<_, Infallible>(Response::new(format!("ok {n}\n")));
                }
                _ => {}
            }
            Ok(Response::new("ok\n".to_string()))
        }
    });
    gateway_cgi::run(app)
}

struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn run_child(case: &str) -> Run {
    let exe = std::env::current_exe().expect("test executable path");
    let out = Command::new(exe)
        .env_clear()
        .env(CHILD, case)
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_NAME", "localhost")
        .env("SERVER_PORT", "80")
        .env("SCRIPT_NAME", "/cgi-bin/run_exit")
        .env("PATH_INFO", "/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run the test executable as a CGI program");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

fn check(name: &str, ok: bool, run: &Run, failures: &mut u32) {
    if ok {
        println!("test {name} ... ok");
    } else {
        *failures += 1;
        println!(
            "test {name} ... FAILED\n  exit {:?}\n  stdout {:?}\n  stderr {:?}",
            run.code, run.stdout, run.stderr
        );
    }
}

fn main() -> ExitCode {
    if let Some(case) = std::env::var_os(CHILD) {
        return child(&case.to_string_lossy());
    }
    let mut failures = 0;

    // Nothing left behind: the response is whole, the exit status 0.
    let r = run_child("plain");
    let ok = r.code == Some(0)
        && r.stdout.starts_with("Status: 200")
        && r.stdout.ends_with("\r\n\r\nok\n");
    check(
        "request_leaving_nothing_behind_exits_0",
        ok,
        &r,
        &mut failures,
    );

    // A task still alive after the response is dropped before the exit, as
    // a runtime's shutdown does.
    let r = run_child("task");
    let ok = r.code == Some(0)
        && r.stdout.ends_with("\r\n\r\nok\n")
        && r.stderr.contains("dropped: pending task");
    check(
        "task_left_alive_is_dropped_before_exit",
        ok,
        &r,
        &mut failures,
    );

    // Timers, spawned tasks and blocking calls work within the request.
    let r = run_child("timer");
    let ok = r.code == Some(0) && r.stdout.ends_with("\r\n\r\nok 7\n");
    check("timers_tasks_and_blocking_calls_run", ok, &r, &mut failures);

    if failures == 0 {
        println!("test result: ok. 3 passed");
        ExitCode::SUCCESS
    } else {
        println!("test result: FAILED. {failures} failed");
        ExitCode::FAILURE
    }
}

//! File offload behind real web servers: the conformance app's `/offload`
//! route answers with an offload header and no body
//! (`gateway_core::offload::OffloadLayer`), and the web server sends the
//! file: nginx (`X-Accel-Redirect` to an `internal` location), lighttpd
//! (`X-Sendfile` and `X-LIGHTTPD-send-file`, `x-sendfile-docroot`) and
//! Apache httpd (`mod_xsendfile`), each from `examples/webservers/offload/`.
//!
//! The client must get every byte of the file, while the application sent
//! none: the app counts the body bytes its `/offload` responses carried
//! (`/offload/stats`), and nginx logs the body bytes it got from the
//! application (`$upstream_response_length`).
//!
//! These tests need the servers installed, so they are ignored by a plain
//! `cargo test`; `.ci/run` installs the Debian packages (with
//! `libapache2-mod-xsendfile`) and runs them with `--ignored`.

use gateway_test::frontend_offload::{OffloadFront, OffloadServer};
use gateway_test::http_client::{Completion, JsonValue, Request, Response};
use gateway_test::webserver::example_binary;

/// 1 MiB with no repeating pattern.
fn one_mib() -> Vec<u8> {
    let mut state: u32 = 0x1234_5677;
    (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

struct Fixture {
    name: &'static [u8],
    contents: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: b"hello.txt",
            contents: b"Hello, offloaded world!\n".to_vec(),
        },
        Fixture {
            name: "grüße & co.txt".as_bytes(),
            contents: "non-ASCII name, spaces and an ampersand\n"
                .as_bytes()
                .to_vec(),
        },
        Fixture {
            name: b"big.bin",
            contents: one_mib(),
        },
        Fixture {
            name: b"100%.txt",
            contents: b"a per cent sign\n".to_vec(),
        },
        Fixture {
            name: b"what?.txt",
            contents: b"a question mark\n".to_vec(),
        },
        // Decoded once: the file is `x%41.txt`, not `xA.txt`.
        Fixture {
            name: b"x%41.txt",
            contents: b"a per cent sign and two hex digits\n".to_vec(),
        },
        Fixture {
            name: b"xA.txt",
            contents: b"the wrong file\n".to_vec(),
        },
    ]
}

fn query_escape(name: &[u8]) -> String {
    name.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Ctx {
    setup: OffloadFront,
}

impl Ctx {
    fn start(server: OffloadServer, files: &[Fixture]) -> Ctx {
        let program = example_binary("conformance").unwrap_or_else(|e| panic!("{e}"));
        let list: Vec<(&[u8], &[u8])> = files
            .iter()
            .map(|f| (f.name, f.contents.as_slice()))
            .collect();
        match OffloadFront::start(server, &program, &list) {
            Ok(setup) => Ctx { setup },
            Err(e) => panic!("{server}: {e}"),
        }
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "{}: {message}\n{}",
            self.setup.server(),
            self.setup.error_log()
        )
    }

    fn send(&self, request: Request) -> Response {
        request
            .send(self.setup.addr())
            .unwrap_or_else(|e| self.fail(format!("request failed: {e}")))
    }

    fn get_file(&self, name: &[u8], headers: &[(&str, &str)]) -> Response {
        let mut req = Request::new(
            "GET",
            &self
                .setup
                .target(&format!("/offload?name={}", query_escape(name))),
        );
        for (n, v) in headers {
            req = req.header(n, v);
        }
        self.send(req)
    }

    fn stats(&self) -> (u64, u64) {
        let r = self.send(Request::new("GET", &self.setup.target("/offload/stats")));
        if r.status != 200 {
            self.fail(format!("/offload/stats: {} {:?}", r.status, r.text()));
        }
        let doc: JsonValue = r
            .json()
            .unwrap_or_else(|e| self.fail(format!("stats not JSON: {e}")));
        if doc["configured"] != JsonValue::Bool(true) {
            self.fail(format!("the app has no offload layer: {doc}"));
        }
        let n = |k: &str| {
            doc[k]
                .as_u64()
                .unwrap_or_else(|| self.fail(format!("stats: {k} missing in {doc}")))
        };
        (n("offloaded"), n("body_bytes"))
    }

    fn check_file(&self, r: &Response, f: &Fixture, what: &str) {
        let name = String::from_utf8_lossy(f.name);
        if r.status != 200 || r.completion != Completion::Complete {
            self.fail(format!(
                "{what} {name}: {} {:?} {:?}",
                r.status,
                r.completion,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            ));
        }
        if r.body != f.contents {
            self.fail(format!(
                "{what} {name}: {} bytes that differ from the file's {}",
                r.body.len(),
                f.contents.len()
            ));
        }
        for header in ["x-accel-redirect", "x-sendfile", "x-lighttpd-send-file"] {
            if let Some(v) = r.header(header) {
                self.fail(format!("{what} {name}: the client saw {header}: {v}"));
            }
        }
    }
}

fn offload_through(server: OffloadServer) {
    let files = fixtures();
    let ctx = Ctx::start(server, &files);

    let mut want_offloaded = 0;
    let want_body_bytes = 0;
    for f in &files {
        let r = ctx.get_file(f.name, &[]);
        ctx.check_file(&r, f, "GET");
        want_offloaded += 1;
        let (offloaded, body_bytes) = ctx.stats();
        if (offloaded, body_bytes) != (want_offloaded, want_body_bytes) {
            ctx.fail(format!(
                "after {}: the app offloaded {offloaded} responses and sent {body_bytes} \
                 body bytes; expected {want_offloaded} and {want_body_bytes}",
                String::from_utf8_lossy(f.name)
            ));
        }
    }

    // The web server answers ranges of offloaded files itself.
    let big = &files[2];
    let r = ctx.get_file(big.name, &[("Range", "bytes=1000-1999")]);
    if r.status != 206 || r.body != big.contents[1000..2000] {
        ctx.fail(format!(
            "Range: {} with {} bytes (want 206 with bytes 1000-1999)",
            r.status,
            r.body.len()
        ));
    }

    // A client's X-Sendfile-Type and X-Accel-Mapping choose nothing.
    let r = ctx.get_file(
        b"hello.txt",
        &[
            ("X-Sendfile-Type", "X-Accel-Redirect"),
            ("X-Accel-Mapping", "/=/protected/"),
        ],
    );
    ctx.check_file(&r, &files[0], "GET with X-Sendfile-Type");
    let (offloaded, body_bytes) = ctx.stats();
    if (offloaded, body_bytes) != (want_offloaded + 2, want_body_bytes) {
        ctx.fail(format!(
            "after the range and the X-Sendfile-Type request: {offloaded} offloaded, \
             {body_bytes} body bytes; expected {} and {want_body_bytes}",
            want_offloaded + 2
        ));
    }
}

#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_x_accel_redirect() {
    offload_through(OffloadServer::Nginx);
}

/// nginx's own count of what the application sent: no body bytes for an
/// offloaded file, the whole file for the same file sent by the app's
/// `/file` route (no offload layer there); and the internal location
/// cannot be asked for directly.
#[test]
#[ignore = "needs nginx (run by .ci/run)"]
fn nginx_got_no_body_bytes_from_the_app() {
    let files = fixtures();
    let ctx = Ctx::start(OffloadServer::Nginx, &files);
    ctx.check_file(&ctx.get_file(b"big.bin", &[]), &files[2], "GET");
    let r = ctx.send(Request::new(
        "GET",
        &ctx.setup.target("/file?name=100%25.txt"),
    ));
    ctx.check_file(&r, &files[3], "GET /file");
    let r = ctx.send(Request::new("GET", "/protected/hello.txt"));
    if r.status != 404 {
        ctx.fail(format!(
            "the internal location answered a client: {}",
            r.status
        ));
    }
    // nginx writes the access log line when the request ends, before the
    // client has read the end of the response: give it a moment.
    let log_path = ctx.setup.rundir().join("access.log");
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.lines().count() >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| ctx.fail(format!("no access log line for {needle}:\n{log}")))
            .to_owned()
    };
    let big = line("/offload?name=big.bin");
    if !big.contains(&format!(" 200 {} ", files[2].contents.len()))
        || !big.ends_with("upstream_bytes=0")
    {
        ctx.fail(format!(
            "offloaded: want 200, the whole file to the client, 0 bytes from the app: {big}"
        ));
    }
    // With FastCGI, nginx counts the records' bytes: more than the body.
    let percent = line("/file?name=100%25.txt");
    let upstream: u64 = percent
        .rsplit_once("upstream_bytes=")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    if upstream < files[3].contents.len() as u64 {
        ctx.fail(format!(
            "sent by the app: want its bytes counted: {percent}"
        ));
    }
}

#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn lighttpd_x_sendfile() {
    offload_through(OffloadServer::Lighttpd);
}

#[test]
#[ignore = "needs lighttpd (run by .ci/run)"]
fn lighttpd_x_lighttpd_send_file() {
    offload_through(OffloadServer::LighttpdOldHeader);
}

#[test]
#[ignore = "needs apache2 and libapache2-mod-xsendfile (run by .ci/run)"]
fn apache_mod_xsendfile() {
    offload_through(OffloadServer::Apache);
}

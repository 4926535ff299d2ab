//! The programs `scripts/instructions-per-request.sh` runs: a server that
//! answers a fixed number of requests with `Hello, world!` and exits, and
//! the client that sends them.
//!
//! ```text
//! instructions serve KIND N PORT_FILE    # KIND: http, hyper, hyper-close, fastcgi, fastcgi-close, scgi
//! instructions client KIND N PORT
//! ```
//!
//! The server listens on a free loopback port, writes it to `PORT_FILE`,
//! and exits after its `N`th request: `http`, `fastcgi` and `scgi` are this
//! workspace's servers, `hyper` a bare hyper 1.x server with hyper-util's
//! auto (HTTP/1 + HTTP/2) connection builder, a task per connection as
//! hyper's own server examples have it (`hyper-close`: the same
//! server, with a client that opens a connection per request, the peer of
//! SCGI and of `fastcgi-close`, the FastCGI server with a client that does
//! the same). Every server runs on a
//! current-thread tokio runtime and answers with the same application.
//!
//! The client sends `N` requests one after the other and reads each
//! response in full: over one keep-alive connection for HTTP and FastCGI
//! (`FCGI_KEEP_CONN`, as nginx with `fastcgi_keep_conn on`), one connection
//! per request for SCGI (the protocol has no keep-alive) and for
//! `fastcgi-close` (no `FCGI_KEEP_CONN`: nginx's default). The requests
//! carry what nginx sends: its `fastcgi_params` / `scgi_params` for FastCGI
//! and SCGI, a browser-sized header for HTTP (five fields; with
//! `INSTRUCTIONS_HEADERS=browser` in the client's environment, six more
//! that a browser sends on a page load, `Sec-Fetch-*` among them, for
//! every kind).

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use gateway_core::server::{BindOptions, Listener, Shutdown};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", kind, n, port_file] => parse(n).and_then(|n| serve(kind, n, port_file)),
        ["client", kind, n, port] => {
            parse(n).and_then(|n| client(kind, n, port.parse().map_err(bad)?))
        }
        _ => Err(bad(
            "usage: instructions serve KIND N PORT_FILE | client KIND N PORT",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("instructions: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bad(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

fn parse(n: &str) -> io::Result<usize> {
    n.parse().map_err(bad)
}

const HELLO: &[u8] = b"Hello, world!\n";

fn hello() -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(HELLO)));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

/// Counts requests and triggers `shutdown` at the `n`th.
#[derive(Clone)]
struct Countdown {
    left: Arc<AtomicUsize>,
    shutdown: Shutdown,
}

impl Countdown {
    fn new(n: usize, shutdown: Shutdown) -> Self {
        Self {
            left: Arc::new(AtomicUsize::new(n)),
            shutdown,
        }
    }

    fn tick(&self) {
        if self.left.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.shutdown.trigger();
        }
    }
}

fn serve(kind: &str, n: usize, port_file: &str) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listener = Listener::bind_tcp(addr, &BindOptions::new())?;
        let port = listener.tcp_addr().map_or(0, |a| a.port());
        std::fs::write(port_file, format!("{port}\n"))?;
        macro_rules! ours {
            ($server:expr) => {{
                let server = $server;
                let countdown = Countdown::new(n, server.shutdown_handle());
                let app = tower::service_fn(move |_req: Request<gateway_core::Body>| {
                    countdown.tick();
                    std::future::ready(Ok::<_, Infallible>(hello()))
                });
                server.connections(app).serve(listener).await
            }};
        }
        match kind {
            "http" => ours!(gateway_http::Server::new()),
            "fastcgi" | "fastcgi-close" => ours!(gateway_fastcgi::Server::new()),
            "scgi" => ours!(gateway_scgi::Server::new()),
            "hyper" | "hyper-close" => bare_hyper(listener, n).await,
            _ => Err(bad(format!("unknown kind {kind}"))),
        }
    })
}

/// A bare hyper server, as hyper's own examples write one: accept, and
/// serve each connection on a task of its own. The process exits once a
/// connection has ended after the `n`th request.
async fn bare_hyper(listener: Listener, n: usize) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    let left = Arc::new(AtomicUsize::new(n));
    loop {
        let (stream, _) = listener.accept().await?;
        let left = left.clone();
        tokio::spawn(async move {
            let counter = left.clone();
            let service =
                hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    counter.fetch_sub(1, Ordering::Relaxed);
                    std::future::ready(Ok::<_, Infallible>(hello()))
                });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if left.load(Ordering::Relaxed) == 0 {
                std::process::exit(0);
            }
        });
    }
}

fn client(kind: &str, n: usize, port: u16) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match kind {
        "hyper-close" => {
            let req = http_request("close");
            for _ in 0..n {
                let mut s = TcpStream::connect(addr)?;
                s.write_all(&req)?;
                let mut out = Vec::new();
                s.read_to_end(&mut out)?;
                check(&out)?;
            }
            Ok(())
        }
        "http" | "hyper" => {
            let mut s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            let req = http_request("keep-alive");
            let mut buf = Vec::new();
            for _ in 0..n {
                s.write_all(&req)?;
                read_http(&mut s, &mut buf)?;
            }
            Ok(())
        }
        "fastcgi" => {
            let mut s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            let req = fastcgi_request(1, true);
            let mut buf = Vec::new();
            for _ in 0..n {
                s.write_all(&req)?;
                read_fastcgi(&mut s, &mut buf)?;
            }
            Ok(())
        }
        "fastcgi-close" => {
            let req = fastcgi_request(1, false);
            let mut buf = Vec::new();
            for _ in 0..n {
                let mut s = TcpStream::connect(addr)?;
                s.write_all(&req)?;
                read_fastcgi(&mut s, &mut buf)?;
                // The server closes the connection after the request.
                let mut rest = Vec::new();
                s.read_to_end(&mut rest)?;
            }
            Ok(())
        }
        "scgi" => {
            let req = scgi_request();
            for _ in 0..n {
                let mut s = TcpStream::connect(addr)?;
                s.write_all(&req)?;
                let mut out = Vec::new();
                s.read_to_end(&mut out)?;
                check(&out)?;
            }
            Ok(())
        }
        _ => Err(bad(format!("unknown kind {kind}"))),
    }
}

fn check(response: &[u8]) -> io::Result<()> {
    if response.ends_with(HELLO) {
        Ok(())
    } else {
        Err(bad(format!(
            "unexpected response {:?}",
            String::from_utf8_lossy(response)
        )))
    }
}

/// Reads one HTTP response with a Content-Length.
fn read_http(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("response without Content-Length"))?;
            while buf.len() < end + 4 + len {
                let got = s.read(&mut chunk)?;
                if got == 0 {
                    return Err(bad("connection closed mid-response"));
                }
                buf.extend_from_slice(&chunk[..got]);
            }
            return check(&buf[..end + 4 + len]);
        }
        let got = s.read(&mut chunk)?;
        if got == 0 {
            return Err(bad("connection closed before a response"));
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// The header fields a browser adds to the ones every request here
/// carries, on a page load (Firefox's), as (HTTP name, CGI name, value):
/// sent too when `INSTRUCTIONS_HEADERS=browser` is set for the client.
const BROWSER_FIELDS: [(&str, &str, &str); 6] = [
    (
        "Upgrade-Insecure-Requests",
        "HTTP_UPGRADE_INSECURE_REQUESTS",
        "1",
    ),
    ("Sec-Fetch-Dest", "HTTP_SEC_FETCH_DEST", "document"),
    ("Sec-Fetch-Mode", "HTTP_SEC_FETCH_MODE", "navigate"),
    ("Sec-Fetch-Site", "HTTP_SEC_FETCH_SITE", "none"),
    ("Sec-Fetch-User", "HTTP_SEC_FETCH_USER", "?1"),
    ("Priority", "HTTP_PRIORITY", "u=0, i"),
];

/// The [`BROWSER_FIELDS`] the client sends: all of them with
/// `INSTRUCTIONS_HEADERS=browser`, else none.
fn browser_fields() -> &'static [(&'static str, &'static str, &'static str)] {
    match std::env::var("INSTRUCTIONS_HEADERS").as_deref() {
        Ok("browser") => &BROWSER_FIELDS,
        _ => &[],
    }
}

/// The HTTP request, with `Connection: {connection}`.
fn http_request(connection: &str) -> Vec<u8> {
    let mut req = b"GET /hello?name=world HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
        Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
        Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
        .to_vec();
    for (name, _, value) in browser_fields() {
        req.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    req.extend_from_slice(format!("Connection: {connection}\r\n\r\n").as_bytes());
    req
}

/// nginx's `fastcgi_params` and the request headers, as (name, value).
fn cgi_params() -> Vec<(&'static str, &'static str)> {
    let mut params = base_cgi_params();
    params.extend(
        browser_fields()
            .iter()
            .map(|&(_, name, value)| (name, value)),
    );
    params
}

/// [`cgi_params`] without [`BROWSER_FIELDS`].
fn base_cgi_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("QUERY_STRING", "name=world"),
        ("REQUEST_METHOD", "GET"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("SCRIPT_NAME", "/hello"),
        ("REQUEST_URI", "/hello?name=world"),
        ("DOCUMENT_URI", "/hello"),
        ("DOCUMENT_ROOT", "/var/www/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "nginx/1.22.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "52834"),
        // Empty without HTTP authentication; not in nginx's scgi_params.
        ("REMOTE_USER", ""),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "8080"),
        ("SERVER_NAME", "localhost"),
        ("REDIRECT_STATUS", "200"),
        ("SCRIPT_FILENAME", "/var/www/html/hello"),
        ("HTTP_HOST", "127.0.0.1:8080"),
        (
            "HTTP_USER_AGENT",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "HTTP_ACCEPT",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5"),
        ("HTTP_ACCEPT_ENCODING", "gzip, deflate"),
    ]
}

fn record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    let len = u16::try_from(content.len()).expect("a short record");
    let pad = (8 - content.len() % 8) % 8;
    out.extend_from_slice(&[1, kind]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[pad as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, pad));
}

/// A request as nginx sends it; `keep_conn`: with `FCGI_KEEP_CONN`.
fn fastcgi_request(id: u16, keep_conn: bool) -> Vec<u8> {
    let mut out = Vec::new();
    // BEGIN_REQUEST: responder, keeping the connection or not.
    record(&mut out, 1, id, &[0, 1, u8::from(keep_conn), 0, 0, 0, 0, 0]);
    let mut params = Vec::new();
    for (name, value) in cgi_params() {
        for len in [name.len(), value.len()] {
            params.push(u8::try_from(len).expect("short names and values"));
        }
        params.extend_from_slice(name.as_bytes());
        params.extend_from_slice(value.as_bytes());
    }
    record(&mut out, 4, id, &params);
    record(&mut out, 4, id, &[]);
    record(&mut out, 5, id, &[]);
    out
}

/// Reads records until `FCGI_END_REQUEST`; checks the `FCGI_STDOUT` bytes.
fn read_fastcgi(s: &mut TcpStream, stdout: &mut Vec<u8>) -> io::Result<()> {
    stdout.clear();
    loop {
        let mut header = [0u8; 8];
        s.read_exact(&mut header)?;
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let mut content = vec![0u8; len + usize::from(header[6])];
        s.read_exact(&mut content)?;
        match header[1] {
            6 => stdout.extend_from_slice(&content[..len]),
            3 => return check(stdout),
            _ => {}
        }
    }
}

fn scgi_request() -> Vec<u8> {
    let mut head = Vec::new();
    let mut params = cgi_params();
    params.retain(|(n, _)| *n != "CONTENT_LENGTH" && *n != "REMOTE_USER");
    params.insert(0, ("CONTENT_LENGTH", "0"));
    params.insert(1, ("SCGI", "1"));
    for (name, value) in params {
        head.extend_from_slice(name.as_bytes());
        head.push(0);
        head.extend_from_slice(value.as_bytes());
        head.push(0);
    }
    let mut out = format!("{}:", head.len()).into_bytes();
    out.extend_from_slice(&head);
    out.push(b',');
    out
}

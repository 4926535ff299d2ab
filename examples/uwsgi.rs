//! A uwsgi application server, written against `gateway-core`'s public API
//! alone: what it takes to add a protocol the workspace does not ship.
//!
//! ```text
//! cargo run --example uwsgi                        # 127.0.0.1:3031
//! cargo run --example uwsgi 127.0.0.1:9000
//! cargo run --example uwsgi unix:/run/app.sock?mode=660
//! ```
//!
//! uwsgi is the binary protocol of nginx's `uwsgi_pass` and Apache's
//! `mod_proxy_uwsgi`. The web server opens a connection per request and
//! sends a 4-byte header, `modifier1` (0: a CGI-style request),
//! `datasize` (u16, little-endian) and `modifier2`; then `datasize` bytes
//! of variables, each a u16-LE-sized name followed by a u16-LE-sized value;
//! then `CONTENT_LENGTH` bytes of body. The answer is a whole HTTP response,
//! status line first, and the server closes the connection.
//!
//! The core does the rest: the request and its body, the response head in
//! the origin form (`HTTP/1.0 200 OK`), the error policy, the accept loop,
//! the connection cap, graceful shutdown on SIGTERM or SIGINT, timeouts and
//! the close. The application is the conformance app the interop tests run
//! (`/hello`, `/echo`, `/status/CODE`, …); any `tower::Service`, such as an
//! axum `Router`, is served the same way. `examples/webservers/uwsgi/` has
//! an nginx configuration and notes.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::{Buf, Bytes, BytesMut};
use gateway_core::server::{
    BindOptions, Connection, ListenAddr, Refusal, SharedInput, Shutdown, Stream, Timed, Watch,
    answer_and_close, close_after, serve, signal, systemd,
};
use gateway_core::{
    AppBody, Application, Body, BodyLength, Environ, EnvironBuilder, Error, ErrorStream, Gateway,
    GatewayInfo, Handler, Limits, Protocol,
};
use gateway_test::conformance::Conformance;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

/// The answer to a request that could not be read.
const BAD_REQUEST: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 12\r\n\r\nBad Request\n";

/// The answer to a connection past the cap.
const BUSY: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain\r\nContent-Length: 20\r\n\r\nService Unavailable\n";

/// The `modifier1` of a request whose variables are the CGI environ.
const MODIFIER_CGI: u8 = 0;

fn main() -> ExitCode {
    let text = std::env::args().nth(1);
    let addr = match text
        .as_deref()
        .unwrap_or("127.0.0.1:3031")
        .parse::<ListenAddr>()
    {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("uwsgi: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread starts: it takes systemd's variables out of the
    // environment.
    systemd::adopt();
    let files = std::env::var_os("CONFORMANCE_FILES").unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/conformance-files").into()
    });
    let ran = tokio::runtime::Runtime::new()
        .and_then(|runtime| runtime.block_on(run(&addr, Conformance::new(files))));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uwsgi: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `app` on `addr` until SIGTERM or SIGINT, then lets the requests in
/// flight finish.
async fn run<S: Application<B>, B: AppBody>(addr: &ListenAddr, app: S) -> io::Result<()> {
    let limits = Limits::default();
    let listener = addr
        .listen(BindOptions::new().backlog(limits.get_listen_backlog()))
        .await?;
    eprintln!("uwsgi: listening on {}", listener.local_addr_string());
    systemd::notify_ready("listening");
    let shutdown = Shutdown::new();
    shutdown.trigger_on(signal());
    let wt = limits.get_write_timeout();
    let refusal = Refusal::new(move |stream| answer_and_close(stream, BUSY, wt));
    let handler = Handler::builder().limits(limits.clone()).build();
    let cap = limits.get_max_connections();
    serve(listener, cap, shutdown, refusal, move |conn| {
        connection(conn, handler.clone(), app.clone())
    })
    .await
}

/// Serves the one request of a connection, then closes it.
async fn connection<S: Application<B>, B: AppBody>(conn: Connection, handler: Handler, app: S) {
    let Connection {
        mut stream,
        peer_addr,
        local_addr,
        mut shutdown,
        ..
    } = conn;
    let limits = handler.limits();
    let wt = limits.get_write_timeout();
    let read = read_request(&mut stream, &mut shutdown, limits.get_max_head_len());
    let environ = match tokio::time::timeout(limits.get_head_read_timeout(), read).await {
        Ok(Ok(Some(environ))) => environ,
        Ok(Ok(None)) => return answer_and_close(stream, BAD_REQUEST, wt).await,
        // Closed, idle at shutdown, failed or too slow: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    // Absent or empty is no body. A length nobody knows (-1) fails the body
    // with 411: the web server never ends its side, so it has no end.
    let length = environ.body_length().map_or(Some(0), BodyLength::exact);
    let (reader, writer) = tokio::io::split(stream);
    let input = SharedInput::new(Bytes::new(), reader);
    let mut gateway = Uwsgi {
        writer: Timed::writes(writer, wt),
        input: Some(Timed::reads(input.clone(), limits.get_body_read_timeout())),
        environ,
        length,
        peer_addr,
        local_addr,
    };
    let outcome = handler.run(&mut gateway, app).await;
    let all_read = input.read_exactly(length.unwrap_or(0));
    if let Some(reader) = input.take_reader() {
        let stream = reader.unsplit(gateway.writer.into_inner());
        close_after(stream, &outcome, all_read, wt).await;
    }
}

/// Reads the header and the variables: `Ok(None)` for a malformed request,
/// an error when the connection closed or the server is stopping first.
async fn read_request(s: &mut Stream, stop: &mut Watch, max: usize) -> io::Result<Option<Environ>> {
    let mut head = [0u8; 4];
    tokio::select! {
        biased;
        read = s.read_exact(&mut head) => read?,
        () = stop.stopping() => return Err(io::ErrorKind::Interrupted.into()),
    };
    let [modifier1, lo, hi, _modifier2] = head;
    let size = usize::from(u16::from_le_bytes([lo, hi]));
    if modifier1 != MODIFIER_CGI || size > max {
        return Ok(None);
    }
    let mut vars = vec![0u8; size];
    s.read_exact(&mut vars).await?;
    Ok(parse_vars(Bytes::from(vars)))
}

/// The variables as an environ, in order, a header repeated on several
/// lines joined (nginx before 1.23 sends one variable per line); `None`
/// when one is cut short, has an empty name or repeats another.
fn parse_vars(mut buf: Bytes) -> Option<Environ> {
    fn sized(buf: &mut Bytes) -> Option<Bytes> {
        let size = usize::from(u16::from_le_bytes([*buf.first()?, *buf.get(1)?]));
        buf.advance(2);
        (buf.len() >= size).then(|| buf.split_to(size))
    }
    let mut environ = EnvironBuilder::new();
    while !buf.is_empty() {
        let name = sized(&mut buf).filter(|n| !n.is_empty())?;
        environ.push(name, sized(&mut buf)?).ok()?;
    }
    Some(environ.build())
}

/// One request's backend: the variables in, the response out in the origin
/// form, which is what uwsgi servers answer.
struct Uwsgi {
    writer: Timed<WriteHalf<Stream>>,
    input: Option<Timed<SharedInput<ReadHalf<Stream>>>>,
    environ: Environ,
    length: Option<u64>,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
}

impl Gateway for Uwsgi {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.writer.write_all(&data).await
    }

    // The bytes the handler gathered (the head, small chunks) are written
    // from its buffer, which it then reuses for the next response.
    async fn write_buf(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        self.writer.write_all(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        match (self.length, self.input.take()) {
            (Some(n), Some(input)) => Body::from_reader(input, Some(n)),
            (None, _) => Body::failing(Error::length_required()),
            (Some(_), None) => Body::empty(),
        }
    }

    fn stderr(&self) -> ErrorStream {
        ErrorStream::log()
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        environ.extend_from(&self.environ);
    }

    fn info(&self) -> GatewayInfo {
        GatewayInfo::new(Protocol::Other("uwsgi"))
            .with_origin_server(true)
            .with_multiprocess(false)
            .with_addrs(self.peer_addr, self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_read_in_order() {
        let packet = b"\x0e\x00REQUEST_METHOD\x04\x00POST\x0e\x00CONTENT_LENGTH\x00\x00";
        let env = parse_vars(Bytes::from_static(packet)).unwrap();
        assert_eq!(env.request_method(), Some(&b"POST"[..]));
        assert_eq!(env.get("CONTENT_LENGTH"), Some(&b""[..]));
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn a_cut_short_variable_is_malformed() {
        assert!(parse_vars(Bytes::from_static(b"\x04\x00ABC")).is_none());
        assert!(parse_vars(Bytes::from_static(b"\x03\x00ABC")).is_none());
        assert!(parse_vars(Bytes::from_static(b"\x03")).is_none());
        assert!(parse_vars(Bytes::from_static(b"\x00\x00\x01\x00x")).is_none());
    }

    #[test]
    fn repeated_headers_are_joined_and_other_names_refused() {
        let twice = b"\x06\x00HTTP_X\x01\x00a\x06\x00HTTP_X\x01\x00b";
        let env = parse_vars(Bytes::from_static(twice)).unwrap();
        assert_eq!(env.get("HTTP_X"), Some(&b"a, b"[..]));
        assert!(parse_vars(Bytes::from_static(b"\x01\x00X\x00\x00\x01\x00X\x00\x00")).is_none());
    }
}

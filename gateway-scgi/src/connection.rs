//! One SCGI connection: read the header, run the application, close.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use gateway_core::server::{
    Connection, SharedInput, Stream, Timed, Watch, answer_and_close, close_after,
};
use gateway_core::{Body, BoxError, ErrorStream, Handler, Limits};
use http::{Request, Response};
use tokio::io::AsyncReadExt;
use tokio_util::either::Either;
use tower::Service;

use crate::gateway::ScgiGateway;
use crate::proto::{Config, Header, HeaderParser, Marker, ProtocolError};

/// The answer to a malformed request header.
const BAD_REQUEST: &[u8] =
    b"Status: 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nBad Request\n";

/// What every connection of a server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) handler: Handler,
    pub(crate) limits: Limits,
    pub(crate) parser: Config,
    pub(crate) errors: ErrorStream,
}

/// Why no header was read.
enum HeadError {
    /// The connection closed (or the server is stopping) before any byte.
    Idle,
    /// The connection closed inside the header.
    Truncated,
    /// The header is malformed or over the cap.
    Protocol(ProtocolError),
    /// Reading failed.
    Io(io::Error),
}

/// Serves the one request of `conn` with `app`, then closes the connection.
/// `parser` and `buf` hold what was read and parsed of the header already.
/// Every failure is the peer's or the connection's: it is logged at debug
/// level and ends this connection only.
pub(crate) async fn serve<S, B>(
    shared: &Shared,
    conn: Connection,
    mut parser: HeaderParser,
    mut buf: BytesMut,
    app: S,
) where
    S: Service<Request<Body>, Response = Response<B>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body + Send,
    B::Data: Buf + Send,
    B::Error: Into<BoxError> + Send,
{
    // The header is due within the head read timeout of the accept.
    let head_read_timeout = conn.first_bytes_left(shared.limits.get_head_read_timeout());
    let Connection {
        mut stream,
        peer_addr,
        local_addr,
        mut shutdown,
        ..
    } = conn;
    let limits = &shared.limits;
    let read = read_header(&mut stream, &mut parser, &mut buf, &mut shutdown);
    let header = match tokio::time::timeout(head_read_timeout, read).await {
        Ok(Ok(header)) => header,
        Err(_) => {
            tracing::debug!(timeout = ?limits.get_head_read_timeout(), "SCGI header read timed out");
            gateway_core::metrics::note(shared.handler.metrics(), gateway_core::Failure::Timeout);
            return;
        }
        Ok(Err(HeadError::Idle)) => return,
        Ok(Err(HeadError::Truncated)) => {
            tracing::debug!("connection closed inside the SCGI header");
            gateway_core::metrics::note(
                shared.handler.metrics(),
                gateway_core::Failure::ClientGone,
            );
            return;
        }
        Ok(Err(HeadError::Io(e))) => {
            tracing::debug!(error = %e, "reading the SCGI header failed");
            return;
        }
        Ok(Err(HeadError::Protocol(e))) => {
            bad_request(shared, stream, e).await;
            return;
        }
    };
    // Running the request takes a large future (the handler's and the
    // application's): boxed, so that a connection still waiting for its
    // header holds only the small one above.
    Box::pin(respond(
        shared,
        Parts {
            stream,
            peer_addr,
            local_addr,
        },
        header,
        buf,
        app,
    ))
    .await;
}

/// What the request of a connection needs of it once its header is read.
pub(crate) struct Parts {
    pub(crate) stream: Stream,
    pub(crate) peer_addr: Option<std::net::SocketAddr>,
    pub(crate) local_addr: Option<std::net::SocketAddr>,
}

impl From<Connection> for Parts {
    fn from(conn: Connection) -> Self {
        Parts {
            stream: conn.stream,
            peer_addr: conn.peer_addr,
            local_addr: conn.local_addr,
        }
    }
}

/// Answers a malformed header: `400 Bad Request`, then the lingering close.
pub(crate) async fn bad_request(shared: &Shared, stream: Stream, e: ProtocolError) {
    tracing::debug!(error = %e, "bad SCGI request");
    gateway_core::metrics::note(shared.handler.metrics(), gateway_core::Failure::Protocol);
    answer_and_close(stream, BAD_REQUEST, shared.limits.get_write_timeout()).await;
}

/// Runs the request of `header` (`buf`: the bytes read past it, the start
/// of the body) with `app`, then closes the connection.
pub(crate) async fn respond<S, B>(
    shared: &Shared,
    conn: Parts,
    header: Header,
    mut buf: BytesMut,
    app: S,
) where
    S: Service<Request<Body>, Response = Response<B>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body + Send,
    B::Data: Buf + Send,
    B::Error: Into<BoxError> + Send,
{
    match header.marker() {
        Marker::Present => {}
        Marker::Missing => tracing::debug!("SCGI request without the SCGI header"),
        Marker::Unexpected => tracing::debug!("SCGI request with an SCGI header other than 1"),
    }
    let limits = &shared.limits;
    let length = header.content_length();
    let (block, spans) = header.into_spans();
    let gateway = |writer, body| ScgiGateway {
        writer,
        block,
        spans,
        body: Some(body),
        errors: shared.errors.clone(),
        peer_addr: conn.peer_addr,
        local_addr: conn.local_addr,
        write_timeout: limits.get_write_timeout(),
    };
    // A body that came whole with the header (an empty one, most often) is
    // taken from the buffer: then nothing but the response uses the socket,
    // and it need not be split.
    if let Some(body) = body_in_hand(&mut buf, length) {
        let mut gateway = gateway(Either::Left(conn.stream), body);
        let outcome = shared.handler.run(&mut gateway, app).await;
        let Either::Left(stream) = gateway.writer else {
            return;
        };
        // The whole request is read; bytes read past it (the peer sent
        // more) call for the lingering close.
        close_after(stream, &outcome, buf.is_empty(), limits.get_write_timeout()).await;
        return;
    }
    let (reader, writer) = tokio::io::split(conn.stream);
    let input = SharedInput::new(buf.freeze(), reader);
    let timed = Timed::reads(input.clone(), limits.get_body_read_timeout());
    let body = Body::from_reader(timed, Some(length));
    let mut gateway = gateway(Either::Right(writer), body);
    let outcome = shared.handler.run(&mut gateway, app).await;
    let Either::Right(writer) = gateway.writer else {
        return;
    };
    let done = input.read_exactly(length);
    let Some(reader) = input.take_reader() else {
        return;
    };
    let stream = reader.unsplit(writer);
    close_after(stream, &outcome, done, limits.get_write_timeout()).await;
}

/// The body of `length` bytes, if `buf` (what was read past the header)
/// holds all of it: taken from the front of `buf`.
fn body_in_hand(buf: &mut BytesMut, length: u64) -> Option<Body> {
    match usize::try_from(length) {
        Ok(0) => Some(Body::empty()),
        Ok(n) if n <= buf.len() => Some(Body::full(buf.split_to(n).freeze())),
        _ => None,
    }
}

/// Room for the first read of a connection: most SCGI headers fit.
pub(crate) const FIRST_READ: usize = 1024;

/// Reads until the header is complete. `buf` then holds the bytes read
/// past it (the start of the body). While nothing has arrived, a shutdown
/// ends the wait.
async fn read_header(
    stream: &mut Stream,
    parser: &mut HeaderParser,
    buf: &mut BytesMut,
    shutdown: &mut Watch,
) -> Result<Header, HeadError> {
    loop {
        match parser.parse(buf) {
            Ok(Some(header)) => return Ok(header),
            Ok(None) => {}
            Err(e) => return Err(HeadError::Protocol(e)),
        }
        let idle = parser.is_idle() && buf.is_empty();
        // A connection waiting for its first bytes holds only a small
        // buffer: ten thousand idle connections should not each keep 8 KiB.
        buf.reserve(if idle { FIRST_READ } else { 8 * 1024 });
        let n = if idle {
            // The read first: the accept loop has waited for input already,
            // so it is usually there, and the shutdown watch (costly to
            // poll) is not looked at.
            tokio::select! {
                biased;
                n = stream.read_buf(buf) => n,
                () = shutdown.stopping() => return Err(HeadError::Idle),
            }
        } else {
            stream.read_buf(buf).await
        };
        match n {
            Ok(0) if idle => return Err(HeadError::Idle),
            Ok(0) => return Err(HeadError::Truncated),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// The answer to a connection past the server's connection cap.
const BUSY: &[u8] = b"Status: 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain\r\nContent-Length: 20\r\n\r\nService Unavailable\n";

/// Refuses a connection past the cap: a 503 with `Retry-After` at once,
/// then the lingering close (the web server is still sending the request,
/// which nobody reads).
pub(crate) async fn refuse(stream: Stream, write_timeout: Duration) {
    answer_and_close(stream, BUSY, write_timeout).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::server::Shutdown;
    use tokio::io::AsyncWriteExt;

    /// An idle connection waits for its first bytes with a small buffer, and
    /// a header longer than the first read still arrives whole.
    #[tokio::test]
    async fn idle_connection_holds_a_small_buffer() {
        let (mut client, server) = tokio::net::UnixStream::pair().unwrap();
        let mut stream = Stream::Unix(server);
        let config = Config::new();
        let mut parser = HeaderParser::new(&config);
        let mut buf = BytesMut::new();
        let shutdown = Shutdown::new();
        let mut watch = shutdown.watch();
        let waiting = tokio::time::timeout(
            Duration::from_millis(20),
            read_header(&mut stream, &mut parser, &mut buf, &mut watch),
        )
        .await;
        assert!(waiting.is_err(), "no header was sent");
        assert!(
            buf.capacity() <= FIRST_READ,
            "{} bytes held",
            buf.capacity()
        );

        let value = "v".repeat(3000);
        let block = format!("CONTENT_LENGTH\x000\x00SCGI\x001\x00X\x00{value}\x00");
        let wire = format!("{}:{block},", block.len());
        client.write_all(wire.as_bytes()).await.unwrap();
        let header = read_header(&mut stream, &mut parser, &mut buf, &mut watch)
            .await
            .map_err(|_| "no header")
            .unwrap();
        assert_eq!(header.content_length(), 0);
        assert_eq!(header.get(b"X"), Some(value.as_bytes()));
        assert!(buf.is_empty());
    }

    /// What a connection waiting for its header holds is small: the
    /// request's (large) future is allocated only once a header arrived.
    #[tokio::test]
    async fn waiting_connection_future_is_small() {
        let shared = Shared {
            handler: Handler::new(),
            limits: Limits::default(),
            parser: Config::new(),
            errors: ErrorStream::null(),
        };
        let (_client, server) = tokio::net::UnixStream::pair().unwrap();
        let conn = Connection::new(Stream::Unix(server), Shutdown::new().watch());
        let app = tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        });
        let parser = HeaderParser::new(&shared.parser);
        let size = std::mem::size_of_val(&serve(&shared, conn, parser, BytesMut::new(), app));
        // The request's future alone is about 4 KiB.
        assert!(
            size <= 1536,
            "a waiting connection holds a {size}-byte future"
        );
    }
}

//! One SCGI connection: read the header, run the application, close.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use gateway_core::server::{Connection, Stream, Watch};
use gateway_core::{Body, BoxError, ErrorStream, Handler, Limits, Outcome};
use http::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tower::Service;

use crate::gateway::ScgiGateway;
use crate::input::{SharedInput, TimedReader};
use crate::proto::{Config, Header, HeaderParser, Marker, ProtocolError};

/// How long a closing connection keeps reading (and discarding) what the
/// web server still sends, so that it never sees a reset.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);

/// The most bytes a closing connection discards before it gives up.
pub(crate) const LINGER_MAX_BYTES: u64 = 16 << 20;

/// The answer to a malformed request header (B4).
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
/// Every failure is the peer's or the connection's: it is logged at debug
/// level and ends this connection only.
pub(crate) async fn serve<S, B>(shared: &Shared, conn: Connection, app: S)
where
    S: Service<Request<Body>, Response = Response<B>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body + Send,
    B::Data: Buf + Send,
    B::Error: Into<BoxError> + Send,
{
    let Connection {
        mut stream,
        peer_addr,
        local_addr,
        mut shutdown,
        ..
    } = conn;
    let limits = &shared.limits;
    let mut buf = BytesMut::new();
    let mut parser = HeaderParser::new(&shared.parser);
    let read = read_header(&mut stream, &mut parser, &mut buf, &mut shutdown);
    let header = match tokio::time::timeout(limits.get_head_read_timeout(), read).await {
        Ok(Ok(header)) => header,
        Err(_) => {
            tracing::debug!(timeout = ?limits.get_head_read_timeout(), "SCGI header read timed out");
            return;
        }
        Ok(Err(HeadError::Idle)) => return,
        Ok(Err(HeadError::Truncated)) => {
            tracing::debug!("connection closed inside the SCGI header");
            return;
        }
        Ok(Err(HeadError::Io(e))) => {
            tracing::debug!(error = %e, "reading the SCGI header failed");
            return;
        }
        Ok(Err(HeadError::Protocol(e))) => {
            tracing::debug!(error = %e, "bad SCGI request");
            let write = stream.write_all(BAD_REQUEST);
            if let Ok(Ok(())) = tokio::time::timeout(limits.get_write_timeout(), write).await {
                linger_close(stream, limits).await;
            }
            return;
        }
    };
    match header.marker() {
        Marker::Present => {}
        Marker::Missing => tracing::debug!("SCGI request without the SCGI header"),
        Marker::Unexpected => tracing::debug!("SCGI request with an SCGI header other than 1"),
    }

    let length = header.content_length();
    let (reader, writer) = tokio::io::split(stream);
    let input = SharedInput::new(buf.freeze(), reader);
    let timed = TimedReader::new(input.clone(), limits.get_body_read_timeout());
    let mut gateway = ScgiGateway {
        writer,
        pairs: header.into_pairs(),
        body: Some(Body::from_reader(timed, Some(length))),
        errors: shared.errors.clone(),
        peer_addr,
        local_addr,
        write_timeout: limits.get_write_timeout(),
    };
    let outcome = shared.handler.run(&mut gateway, app).await;
    let ScgiGateway { writer, .. } = gateway;
    let done = input.read_exactly(length);
    let Some(reader) = input.take_reader() else {
        return;
    };
    let stream = reader.unsplit(writer);
    finish(stream, &outcome, limits, done).await;
}

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
        buf.reserve(8 * 1024);
        let idle = parser.is_idle() && buf.is_empty();
        let n = if idle {
            tokio::select! {
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

/// Ends the connection as `outcome` requires. `all_read`: the whole request
/// was read, so a plain close cannot turn into a reset and needs no
/// lingering.
async fn finish(stream: Stream, outcome: &Outcome, limits: &Limits, all_read: bool) {
    if outcome.is_aborted() {
        // The response failed after its head: the web server must not take
        // what it got for a whole response. A reset makes nginx, Apache and
        // lighttpd drop the client connection instead of ending the body
        // normally (a plain close would look complete when the response has
        // no Content-Length).
        tracing::debug!("response aborted; resetting the connection");
        if let Stream::Tcp(tcp) = &stream {
            let _ = tcp.set_zero_linger();
        }
        return;
    }
    if outcome.is_disconnected() || outcome.is_failed() {
        return;
    }
    if all_read && nothing_waiting(&stream) {
        // Nothing unread: closing sends the end of the response at once,
        // and cannot turn into a reset.
        drop(stream);
        return;
    }
    linger_close(stream, limits).await;
}

/// Whether no byte is waiting to be read on `stream` right now (a peer that
/// sent more than its CONTENT_LENGTH gets the lingering close instead).
fn nothing_waiting(stream: &Stream) -> bool {
    let mut one = [0u8; 1];
    let r = match stream {
        Stream::Tcp(s) => s.try_read(&mut one),
        Stream::Unix(s) => s.try_read(&mut one),
    };
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Closes the connection without a reset: ends our side (the web server
/// sees the end of the response), then reads and discards what it still
/// sends (a body the application did not read) until it closes, for at most
/// [`LINGER_TIME`] and [`LINGER_MAX_BYTES`]. Closing with unread input would
/// make the kernel send a reset, which can destroy the response before the
/// web server has read it.
pub(crate) async fn linger_close(mut stream: Stream, limits: &Limits) {
    let shut = tokio::time::timeout(limits.get_write_timeout(), stream.shutdown()).await;
    if !matches!(shut, Ok(Ok(()))) {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut scratch = vec![0u8; 16 * 1024];
    let mut discarded = 0u64;
    while discarded <= LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => discarded += n as u64,
        }
    }
}

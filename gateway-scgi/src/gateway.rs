//! The [`Gateway`] of one SCGI request: the header pairs in, the response
//! out in CGI form.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::server::Stream;
use gateway_core::{Body, Environ, ErrorStream, Gateway, GatewayInfo, Protocol};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio_util::either::Either;

/// Where a response is written: the connection itself (`Left`: the
/// request's body came whole with its header, nothing reads the socket
/// while the response is written), or the write half of the connection,
/// whose read half the request's body reads from (`Right`).
pub(crate) type Output = Either<Stream, WriteHalf<Stream>>;

/// One request's backend. The response head is written in CGI form
/// (`Status:` line), the default of [`Gateway::write_head`].
pub(crate) struct ScgiGateway {
    pub(crate) writer: Output,
    /// The header's pairs: the block they lie in and their offsets.
    pub(crate) block: Bytes,
    pub(crate) spans: Vec<[u32; 4]>,
    pub(crate) body: Option<Body>,
    pub(crate) errors: ErrorStream,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) write_timeout: Duration,
}

fn timed_out(what: &str, after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out after {after:?}"),
    )
}

/// Runs `io` within `after`. The timer is set only if `io` does not finish
/// at its first poll, as a write to a socket with room does: most writes
/// need none.
async fn within(
    what: &str,
    after: Duration,
    io: impl Future<Output = io::Result<()>>,
) -> io::Result<()> {
    let mut io = std::pin::pin!(io);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await {
        return done;
    }
    tokio::time::timeout(after, io)
        .await
        .map_err(|_| timed_out(what, after))?
}

impl Gateway for ScgiGateway {
    // The default `write_head` writes the pipeline's Content-Length.
    const LENGTH_APART: bool = true;

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let write = self.writer.write_all(&data);
        within("response write", self.write_timeout, write).await
    }

    async fn write_buf(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        // Copied by the buffered writer (or written through): the buffer is
        // kept for the pipeline's next bytes.
        let write = self.writer.write_all(buf);
        within("response write", self.write_timeout, write).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        within("response flush", self.write_timeout, self.writer.flush()).await
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        // The length is the header's CONTENT_LENGTH, which the body was
        // built with; the environ cannot disagree (it is the same pair).
        self.body.take().unwrap_or_default()
    }

    fn stderr(&self) -> ErrorStream {
        self.errors.clone()
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        // The header's pairs, raw and in order, over the handler's base
        // environ (names are unique, the parser checked): an empty environ
        // keeps the block and the offsets as they are.
        environ.extend_distinct_spans(&self.block, std::mem::take(&mut self.spans));
    }

    fn info(&self) -> GatewayInfo {
        GatewayInfo::new(Protocol::Scgi)
            .with_multiprocess(false)
            .with_addrs(self.peer_addr, self.local_addr)
    }
}

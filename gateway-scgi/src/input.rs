//! The request input after the header: the bytes already read past the
//! netstring's `,`, then the socket, shared between the request body and the
//! connection (which drains what the application left unread).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use gateway_core::server::Stall;
use tokio::io::{AsyncRead, ReadBuf};

/// The read side of a connection, shared by the body and the connection.
///
/// The lock is only taken inside `poll_read`, never across an `.await`, so
/// it is never contended for long.
pub(crate) struct SharedInput<R> {
    inner: Arc<Mutex<Inner<R>>>,
}

struct Inner<R> {
    /// Bytes read with the header that belong to the body.
    pending: Bytes,
    /// The socket's read half; `None` once the connection took it back.
    reader: Option<R>,
    /// Bytes handed to the body so far.
    consumed: u64,
}

impl<R> Clone for SharedInput<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<R: AsyncRead + Unpin> SharedInput<R> {
    /// Input that yields `pending` first, then reads `reader`.
    pub(crate) fn new(pending: Bytes, reader: R) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                pending,
                reader: Some(reader),
                consumed: 0,
            })),
        }
    }

    /// Whether exactly `length` bytes were read and nothing beyond them
    /// arrived with the header: the web server has nothing more to send.
    pub(crate) fn read_exactly(&self, length: u64) -> bool {
        self.inner
            .lock()
            .is_ok_and(|inner| inner.consumed == length && inner.pending.is_empty())
    }

    /// Takes the read half back for the connection; a body still held by
    /// the application reads an error from now on.
    pub(crate) fn take_reader(&self) -> Option<R> {
        self.inner
            .lock()
            .ok()
            .and_then(|mut inner| inner.reader.take())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for SharedInput<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Ok(mut inner) = self.inner.lock() else {
            return Poll::Ready(Err(io::Error::other("request input lock poisoned")));
        };
        if !inner.pending.is_empty() {
            let n = inner.pending.len().min(buf.remaining());
            buf.put_slice(inner.pending.get(..n).unwrap_or_default());
            inner.pending.advance(n);
            inner.consumed += n as u64;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match inner.reader.as_mut() {
            Some(reader) => {
                let r = Pin::new(reader).poll_read(cx, buf);
                inner.consumed += (buf.filled().len() - before) as u64;
                r
            }
            None => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the request is over",
            ))),
        }
    }
}

/// A reader whose every read may wait at most `timeout` (the body read
/// timeout): a peer that stops sending mid-body fails the read with
/// `TimedOut` instead of holding the application forever.
pub(crate) struct TimedReader<R> {
    reader: R,
    stall: Stall,
}

impl<R> TimedReader<R> {
    pub(crate) fn new(reader: R, timeout: Duration) -> Self {
        Self {
            reader,
            stall: Stall::new(timeout),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TimedReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.reader).poll_read(cx, buf);
        if this.stall.expired(poll.is_ready(), cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no request body byte for {:?}", this.stall.timeout()),
            )));
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn pending_bytes_come_first_then_the_reader() {
        let input = SharedInput::new(Bytes::from_static(b"abc"), &b"def"[..]);
        let mut body = input.clone();
        let mut out = Vec::new();
        body.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"abcdef");
    }

    #[tokio::test]
    async fn a_taken_reader_fails_the_body() {
        let input = SharedInput::new(Bytes::new(), &b"def"[..]);
        let mut body = input.clone();
        assert!(input.take_reader().is_some());
        let err = body.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_keep, far) = tokio::io::duplex(16);
        let mut reader = TimedReader::new(far, Duration::from_millis(100));
        let err = reader.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}

//! The read side of a one-request connection, shared between the request
//! body and the connection that ends it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};

/// The input of a connection that carries one request (SCGI, uwsgi): the
/// bytes already read past the request head, then the socket, shared by the
/// request body and the connection.
///
/// The body reads through a clone (give one to
/// [`Body::from_reader`](crate::Body::from_reader)); once the handler is
/// done, the connection takes the socket back with
/// [`take_reader`](SharedInput::take_reader), even while the application
/// still holds the body (that body then fails to read), and asks
/// [`read_exactly`](SharedInput::read_exactly) whether the whole body was
/// read, which tells how it may close the connection (see
/// [`close_after`](super::close_after)).
///
/// The lock is taken only inside a read, never across an `.await`.
///
/// ```
/// use bytes::Bytes;
/// use gateway_core::Body;
/// use gateway_core::server::SharedInput;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // "hel" came with the request head; "lo" is still in the socket.
/// let input = SharedInput::new(Bytes::from_static(b"hel"), &b"lo and more"[..]);
/// let body = Body::from_reader(input.clone(), Some(5));
/// let got = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
/// assert_eq!(&got[..], b"hello");
/// assert!(input.read_exactly(5));
/// let rest = input.take_reader().unwrap();
/// assert_eq!(rest, b" and more");
/// # });
/// ```
pub struct SharedInput<R> {
    inner: Arc<Mutex<Inner<R>>>,
}

struct Inner<R> {
    /// Bytes read with the head that belong to the body.
    pending: Bytes,
    /// The socket's read side; `None` once the connection took it back.
    reader: Option<R>,
    /// Bytes handed out so far.
    consumed: u64,
}

impl<R> Clone for SharedInput<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<R> std::fmt::Debug for SharedInput<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SharedInput")
            .field("pending", &inner.pending.len())
            .field("consumed", &inner.consumed)
            .field("taken", &inner.reader.is_none())
            .finish()
    }
}

impl<R> SharedInput<R> {
    /// Input that yields `pending` first, then reads `reader`.
    pub fn new(pending: Bytes, reader: R) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                pending,
                reader: Some(reader),
                consumed: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        // A panic while the lock was held left nothing half-done: every
        // field is updated in one step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes read through this input so far.
    pub fn consumed(&self) -> u64 {
        self.lock().consumed
    }

    /// Whether exactly `length` bytes were read and nothing past them was
    /// read with the head: the peer has nothing more to send for this
    /// request.
    pub fn read_exactly(&self, length: u64) -> bool {
        let inner = self.lock();
        inner.consumed == length && inner.pending.is_empty()
    }

    /// Takes the read side back for the connection (`None` if it was taken
    /// already). Reads through any clone fail with `NotConnected` from now
    /// on; bytes still pending are dropped.
    pub fn take_reader(&self) -> Option<R> {
        self.lock().reader.take()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for SharedInput<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(reader) = inner.reader.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the request is over",
            )));
        };
        if !inner.pending.is_empty() {
            let n = inner.pending.len().min(buf.remaining());
            buf.put_slice(inner.pending.get(..n).unwrap_or_default());
            inner.pending.advance(n);
            inner.consumed += n as u64;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(reader).poll_read(cx, buf);
        inner.consumed += (buf.filled().len() - before) as u64;
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
        assert_eq!(input.consumed(), 6);
        assert!(input.read_exactly(6));
        assert!(!input.read_exactly(5));
    }

    #[tokio::test]
    async fn unread_pending_bytes_mean_not_all_read() {
        let input = SharedInput::new(Bytes::from_static(b"abc"), &b""[..]);
        let mut body = input.clone();
        let mut two = [0u8; 2];
        body.read_exact(&mut two).await.unwrap();
        assert!(!input.read_exactly(2));
    }

    #[tokio::test]
    async fn a_taken_reader_fails_the_body() {
        let input = SharedInput::new(Bytes::from_static(b"abc"), &b"def"[..]);
        let mut body = input.clone();
        assert!(input.take_reader().is_some());
        assert!(input.take_reader().is_none());
        let err = body.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }
}

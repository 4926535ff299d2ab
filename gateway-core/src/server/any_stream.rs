//! The lingering close, the input probe and the write limit over any byte
//! stream, for connection drivers that run on more than accepted sockets
//! (an in-memory pipe in tests, a connection opened elsewhere).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::close::{LINGER_MAX_BYTES, LINGER_TIME};
use super::stall::Stall;

/// [`linger_close`](super::linger_close) for any byte stream: ends our side
/// (within `write_timeout`), then reads and discards what the peer still
/// sends until it closes, for at most [`LINGER_TIME`] and
/// [`LINGER_MAX_BYTES`], so that unread input does not turn the close into
/// a reset.
pub async fn linger_close_io<T>(mut io: T, write_timeout: Duration)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let shut = tokio::time::timeout(write_timeout, io.shutdown()).await;
    if !matches!(shut, Ok(Ok(()))) {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    // On the heap: a connection's future should not carry this buffer.
    let mut scratch = vec![0u8; 16 * 1024];
    let mut discarded = 0u64;
    while discarded <= LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, io.read(&mut scratch)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => discarded += n as u64,
        }
    }
}

/// [`nothing_waiting`](super::nothing_waiting) for any byte stream: whether
/// a read would find nothing right now (it is polled once, without
/// waiting). A byte it finds is consumed, so use it only on a connection
/// about to close, to choose between a plain close and
/// [`linger_close_io`]. The end of the input counts as nothing waiting.
pub async fn nothing_waiting_io<T>(io: &mut T) -> bool
where
    T: AsyncRead + Unpin,
{
    let mut one = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut one);
        let found = match std::pin::Pin::new(&mut *io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => !buf.filled().is_empty(),
            // An error: nothing more will be read.
            Poll::Ready(Err(_)) | Poll::Pending => false,
        };
        Poll::Ready(!found)
    })
    .await
}

/// Runs the I/O operation `op`, failing it with
/// [`TimedOut`](io::ErrorKind::TimedOut) once it has waited `timeout` in
/// all: a write timeout, timed with a [`Stall`], so an operation that
/// completes without waiting costs no clock read and no timer.
pub async fn stall_timeout<F, R>(timeout: Duration, op: F) -> io::Result<R>
where
    F: Future<Output = io::Result<R>>,
{
    let mut op = pin!(op);
    let mut stall = Stall::new(timeout);
    std::future::poll_fn(|cx| {
        let polled = op.as_mut().poll(cx);
        if stall.expired(polled.is_ready(), cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer took nothing for {timeout:?}"),
            )));
        }
        polled
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_probe_sees_waiting_input_and_the_close_drains_it() {
        let (mut ours, mut peer) = tokio::io::duplex(64);
        assert!(nothing_waiting_io(&mut ours).await);
        peer.write_all(b"xy").await.unwrap();
        assert!(!nothing_waiting_io(&mut ours).await);
        let closing = tokio::spawn(linger_close_io(ours, Duration::from_secs(1)));
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "our side ended without writing");
        peer.write_all(b"late").await.unwrap();
        drop(peer);
        closing.await.unwrap();
    }

    #[tokio::test]
    async fn a_write_that_waits_too_long_fails() {
        let quick = stall_timeout(Duration::from_millis(20), async { Ok(7) }).await;
        assert_eq!(quick.unwrap(), 7);
        let stuck = stall_timeout(
            Duration::from_millis(20),
            std::future::pending::<io::Result<()>>(),
        )
        .await;
        assert_eq!(stuck.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}

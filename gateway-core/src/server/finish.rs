//! Ending a one-request connection: after the response, and with a canned
//! answer (a malformed request, a server at its connection cap).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::close::{linger_close, nothing_waiting, reset_on_close};
use super::listener::Stream;
use crate::outcome::Outcome;

/// Ends a connection that carried one request, as its `outcome` requires:
///
/// - a response that failed after its head ([`Outcome::is_aborted`]): a
///   reset, so the web server sees the response was cut off and passes the
///   failure on (nginx drops the client connection) instead of taking a
///   close for the end of the body;
/// - the peer went away, or writing failed: a plain close;
/// - `all_read` (the whole request body was read, see
///   [`SharedInput::read_exactly`](super::SharedInput::read_exactly)) and
///   nothing is waiting: a plain close, at once;
/// - otherwise the [`linger_close`]: the peer is still sending a body
///   nobody read, and closing on unread input would reset the connection
///   and could destroy the response before the peer read it.
///
/// `write_timeout` bounds the end of our side.
pub async fn close_after(
    stream: Stream,
    outcome: &Outcome,
    all_read: bool,
    write_timeout: Duration,
) {
    if outcome.is_aborted() {
        tracing::debug!("response aborted; resetting the connection");
        reset_on_close(&stream);
        return;
    }
    if outcome.is_disconnected() || outcome.is_failed() {
        return;
    }
    if all_read && nothing_waiting(&stream) {
        return;
    }
    linger_close(stream, write_timeout).await;
}

/// Writes `answer` (a whole response in the protocol's form: a 400 for a
/// request that could not be read, a 503 with `Retry-After` for a
/// [`Refusal`](super::Refusal)) and closes the connection with the
/// [`linger_close`], since the peer may still be sending its request.
/// Each of the write and the close is bounded by `write_timeout`; a peer
/// that takes nothing is simply dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use gateway_core::server::{Refusal, answer_and_close};
///
/// const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
///     Content-Length: 0\r\n\r\n";
/// let refusal = Refusal::new(|stream| answer_and_close(stream, BUSY, Duration::from_secs(5)));
/// # let _ = refusal;
/// ```
pub async fn answer_and_close(mut stream: Stream, answer: &[u8], write_timeout: Duration) {
    if let Ok(Ok(())) = tokio::time::timeout(write_timeout, stream.write_all(answer)).await {
        linger_close(stream, write_timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::OutcomeKind;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Stream::Tcp(server), client)
    }

    #[tokio::test]
    async fn the_answer_arrives_before_the_close() {
        let (server, mut client) = pair().await;
        let task = tokio::spawn(answer_and_close(server, b"busy", Duration::from_secs(5)));
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"busy");
        drop(client);
        task.await.unwrap();
    }

    fn outcome(kind: OutcomeKind) -> Outcome {
        Outcome {
            status: Some(http::StatusCode::OK),
            bytes_sent: 7,
            kind,
        }
    }

    #[tokio::test]
    async fn an_aborted_response_resets_the_connection() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"partial").await.unwrap();
        let done = outcome(OutcomeKind::Aborted);
        close_after(server, &done, true, Duration::from_secs(5)).await;
        let mut got = [0u8; 64];
        let mut seen = 0;
        let err = loop {
            match client.read(&mut got[seen..]).await {
                Ok(0) => panic!("a clean end instead of a reset"),
                Ok(n) => seen += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn an_unread_body_is_drained_not_reset() {
        let (mut server, mut client) = pair().await;
        // The peer sent a body nobody read.
        client.write_all(&[b'x'; 100_000]).await.unwrap();
        server.write_all(b"response").await.unwrap();
        let done = outcome(OutcomeKind::Complete);
        let task = tokio::spawn(async move {
            close_after(server, &done, false, Duration::from_secs(5)).await;
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"response");
        drop(client);
        task.await.unwrap();
    }
}

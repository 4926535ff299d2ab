//! The answer to a connection past the connection cap: its first request
//! gets `FCGI_END_REQUEST` with `FCGI_OVERLOADED` at once, so the web server
//! fails it cleanly instead of waiting in the listen backlog or seeing a
//! reset.

use std::time::Duration;

use bytes::BytesMut;
use gateway_core::server::{Stream, linger_close};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::proto::{Config, Connection, Event, ProtocolStatus};

/// How long a refusal waits for the web server's `FCGI_BEGIN_REQUEST`.
pub(crate) const READ_TIME: Duration = Duration::from_secs(1);

/// How many bytes a refusal reads looking for it.
pub(crate) const READ_LIMIT: usize = 4096;

/// Reads records from `stream` until a `FCGI_BEGIN_REQUEST` (at most
/// [`READ_LIMIT`] bytes, for at most [`READ_TIME`]), answers it with
/// `FCGI_END_REQUEST` {appStatus 0, `FCGI_OVERLOADED`} and closes the
/// connection, reading what the web server still sends (its parameters and
/// body) for a moment so that the close is not a reset. Management records
/// before it are answered as usual (`FCGI_GET_VALUES_RESULT` from `config`,
/// `FCGI_UNKNOWN_TYPE`); an unknown role gets `FCGI_UNKNOWN_ROLE`. Without a
/// request in time, or on a protocol error, the connection is closed
/// without an answer.
pub(crate) async fn refuse(mut stream: Stream, config: Config, write_timeout: Duration) {
    let mut proto = Connection::new(&config);
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 1024];
    let mut read = 0;
    let deadline = Instant::now() + READ_TIME;
    let answered = 'read: loop {
        loop {
            match proto.next_event(&mut buf) {
                Ok(Some(Event::Begin { id, .. })) => {
                    proto.reject(id, ProtocolStatus::Overloaded, Instant::now().into_std());
                    break 'read true;
                }
                // Refused by the protocol layer already (unknown role).
                Ok(Some(Event::Rejected { .. })) => break 'read true,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "FastCGI protocol error on a refused connection");
                    break 'read false;
                }
            }
        }
        if proto.has_output() && !write(&mut stream, &proto.take_output(), write_timeout).await {
            return;
        }
        if read >= READ_LIMIT {
            break false;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                read += n;
            }
            _ => break false,
        }
    };
    if !answered {
        tracing::debug!("no FastCGI request on a refused connection; closing it");
        return;
    }
    tracing::debug!("FastCGI connection over the cap: request answered FCGI_OVERLOADED");
    if write(&mut stream, &proto.take_output(), write_timeout).await {
        linger_close(stream, write_timeout).await;
    }
}

/// Writes `bytes` and flushes, within `timeout`; whether that worked.
async fn write(stream: &mut Stream, bytes: &[u8], timeout: Duration) -> bool {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())))
}

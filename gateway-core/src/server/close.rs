//! Ending a connection: the lingering close, the reset, and whether input
//! is waiting.

use std::time::Duration;

use super::listener::Stream;

/// How long [`linger_close`] reads and discards what the peer still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// The most bytes [`linger_close`] discards before it gives up.
pub const LINGER_MAX_BYTES: u64 = 16 << 20;

/// Closes a connection without a reset: ends our side (the peer sees the end
/// of the response), then reads and discards what the peer still sends (a
/// body nobody read) until it closes, for at most [`LINGER_TIME`] and
/// [`LINGER_MAX_BYTES`]. Closing a socket with unread input makes the kernel
/// send a reset, which can destroy the response before the peer has read
/// it. `write_timeout` bounds the end of our side.
pub async fn linger_close(stream: Stream, write_timeout: Duration) {
    super::any_stream::linger_close_io(stream, write_timeout).await;
}

/// Whether no byte is waiting to be read on `stream` right now. A
/// connection whose input was all read and with nothing waiting can be
/// closed at once (no lingering needed: the close cannot become a reset).
pub fn nothing_waiting(stream: &Stream) -> bool {
    let mut one = [0u8; 1];
    matches!(stream.try_read(&mut one), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Makes the coming close of `stream` a reset where the transport has one
/// (TCP: `SO_LINGER` 0), so the peer sees an aborted response rather than a
/// clean end. Unix sockets have no reset: the close is a plain one.
pub fn reset_on_close(stream: &Stream) {
    if let Some(tcp) = stream.as_tcp() {
        let _ = tcp.set_zero_linger();
    }
}

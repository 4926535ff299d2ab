//! Telling the protocol of a connection from its first bytes, so one
//! socket can serve FastCGI, SCGI and HTTP.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::listener::Stream;

/// The protocol a connection speaks, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sniffed {
    /// A FastCGI record header: version 1, then a record type.
    FastCgi,
    /// An SCGI netstring: decimal digits, then `:`.
    Scgi,
    /// An HTTP request line (a method token and a space) or the HTTP/2
    /// connection preface.
    Http,
    /// None of these.
    Unknown,
}

/// The longest method token looked at before giving up on HTTP.
const MAX_METHOD: usize = 24;
/// The most netstring length digits looked at before giving up on SCGI.
const MAX_DIGITS: usize = 10;

/// Tells the protocol from the bytes a connection sent first; `None` when
/// more bytes are needed to tell (at most a few dozen ever are).
///
/// - FastCGI: byte 1 (the protocol version), then a record type from 1 to
///   11 (web servers open with `BEGIN_REQUEST` or `GET_VALUES`);
/// - SCGI: up to ten decimal digits, then `:`;
/// - HTTP: an upper-case method token (`GET`, `POST`, `M-SEARCH`, `PRI`
///   of the HTTP/2 preface, …), then a space.
///
/// ```
/// use gateway_core::server::{Sniffed, sniff};
///
/// assert_eq!(sniff(b"\x01\x01\x00\x01"), Some(Sniffed::FastCgi));
/// assert_eq!(sniff(b"70:CONTENT_LENGTH"), Some(Sniffed::Scgi));
/// assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http));
/// assert_eq!(sniff(b"GE"), None);
/// assert_eq!(sniff(b"\x16\x03\x01"), Some(Sniffed::Unknown)); // TLS
/// ```
pub fn sniff(first: &[u8]) -> Option<Sniffed> {
    let &b0 = first.first()?;
    match b0 {
        1 => match first.get(1) {
            None => None,
            Some(1..=11) => Some(Sniffed::FastCgi),
            Some(_) => Some(Sniffed::Unknown),
        },
        b'0'..=b'9' => {
            for (i, &b) in first.iter().enumerate() {
                match b {
                    b':' if i > 0 => return Some(Sniffed::Scgi),
                    b'0'..=b'9' if i < MAX_DIGITS => {}
                    _ => return Some(Sniffed::Unknown),
                }
            }
            None
        }
        b'A'..=b'Z' => {
            for (i, &b) in first.iter().enumerate() {
                match b {
                    b' ' if i > 0 => return Some(Sniffed::Http),
                    b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD => {}
                    _ => return Some(Sniffed::Unknown),
                }
            }
            None
        }
        _ => Some(Sniffed::Unknown),
    }
}

/// Reads the first bytes of `stream` until [`sniff`] can tell its
/// protocol, for at most `timeout`, and gives the stream back with those
/// bytes still to be read (they are replayed before the socket's). `None`
/// when the peer closed or the time ran out before the protocol showed.
pub async fn sniff_stream(
    mut stream: Stream,
    timeout: Duration,
) -> std::io::Result<(Option<Sniffed>, Stream)> {
    let mut buf = BytesMut::with_capacity(64);
    let read = async {
        loop {
            if let Some(found) = sniff(&buf) {
                return Ok::<_, std::io::Error>(Some(found));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(None);
            }
        }
    };
    let found = match tokio::time::timeout(timeout, read).await {
        Ok(r) => r?,
        Err(_) => None,
    };
    Ok((found, stream.replay(buf.freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_is_told_apart() {
        let fcgi_begin = [1u8, 1, 0, 1, 0, 8, 0, 0];
        let fcgi_values = [1u8, 9, 0, 0, 0, 0, 0, 0];
        assert_eq!(sniff(&fcgi_begin), Some(Sniffed::FastCgi));
        assert_eq!(sniff(&fcgi_values), Some(Sniffed::FastCgi));
        assert_eq!(sniff(b"123:CONTENT_LENGTH\0"), Some(Sniffed::Scgi));
        assert_eq!(sniff(b"POST /x HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(sniff(b"M-SEARCH * HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(
            sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Sniffed::Http)
        );
    }

    /// A first read of one byte is never enough to decide wrongly.
    #[test]
    fn one_byte_asks_for_more() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[1]), None);
        assert_eq!(sniff(b"7"), None);
        assert_eq!(sniff(b"G"), None);
        assert_eq!(sniff(b"12345"), None);
    }

    #[test]
    fn garbage_is_unknown() {
        assert_eq!(sniff(&[1, 0]), Some(Sniffed::Unknown));
        assert_eq!(sniff(&[1, 12]), Some(Sniffed::Unknown));
        assert_eq!(sniff(&[2, 1]), Some(Sniffed::Unknown));
        assert_eq!(sniff(b":12"), Some(Sniffed::Unknown));
        assert_eq!(sniff(b"12345678901:"), Some(Sniffed::Unknown));
        assert_eq!(sniff(b"get / HTTP/1.1"), Some(Sniffed::Unknown));
        assert_eq!(sniff(b" GET"), Some(Sniffed::Unknown));
        assert_eq!(sniff(b"GET\r\n"), Some(Sniffed::Unknown));
        assert_eq!(sniff(&[b'A'; 40]), Some(Sniffed::Unknown));
        assert_eq!(sniff(&[0xff, 0xfe]), Some(Sniffed::Unknown));
    }
}

//! A [`tokio_util::codec::Decoder`] for one SCGI request.
//!
//! [`RequestDecoder`] yields the [`Header`], then the body in
//! [`Frame::Data`] chunks until `CONTENT_LENGTH` bytes, then [`Frame::End`].
//! The end is a frame of its own because web servers keep their side of the
//! connection open while they wait for the response: the reader cannot wait
//! for end of input to learn that the body is complete.
//!
//! ```
//! use bytes::BytesMut;
//! use gateway_scgi::codec::{Frame, RequestDecoder};
//! use tokio_util::codec::Decoder;
//!
//! let mut decoder = RequestDecoder::default();
//! let mut buf = BytesMut::from(&b"24:CONTENT_LENGTH\x002\x00SCGI\x001\x00,hi"[..]);
//! let Some(Frame::Header(header)) = decoder.decode(&mut buf)? else {
//!     return Err("expected the header".into());
//! };
//! assert_eq!(header.content_length(), 2);
//! assert_eq!(decoder.decode(&mut buf)?, Some(Frame::Data("hi".into())));
//! assert_eq!(decoder.decode(&mut buf)?, Some(Frame::End));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::Error;
use crate::proto::{Config, Header, HeaderParser};

/// One piece of an SCGI request, as [`RequestDecoder`] yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The request header; it comes first, once.
    Header(Header),
    /// A non-empty run of body bytes.
    Data(Bytes),
    /// The body is complete: `CONTENT_LENGTH` bytes were yielded.
    End,
}

/// Decodes one SCGI request: header, body, end.
///
/// After [`Frame::End`], any further bytes the peer sends are discarded, so
/// a reader that keeps draining the connection holds no memory for them. At
/// end of input, [`decode_eof`](Decoder::decode_eof) reports a request cut
/// short ([`Error::is_truncated_header`], [`Error::is_truncated_body`]); a
/// connection closed before its first byte ends the stream quietly.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    parser: HeaderParser,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Body { expected: u64, remaining: u64 },
    Done,
}

impl RequestDecoder {
    /// A decoder whose header parser uses `config`.
    pub fn new(config: &Config) -> Self {
        RequestDecoder {
            parser: HeaderParser::new(config),
            state: State::Header,
        }
    }
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(&Config::default())
    }
}

impl Decoder for RequestDecoder {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Error> {
        match self.state {
            State::Header => {
                let Some(header) = self.parser.parse(buf)? else {
                    return Ok(None);
                };
                let expected = header.content_length();
                self.state = State::Body {
                    expected,
                    remaining: expected,
                };
                Ok(Some(Frame::Header(header)))
            }
            State::Body { remaining: 0, .. } => {
                self.state = State::Done;
                Ok(Some(Frame::End))
            }
            State::Body {
                expected,
                remaining,
            } => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                let chunk = buf.split_to(take);
                self.state = State::Body {
                    expected,
                    remaining: remaining - take as u64,
                };
                Ok(Some(Frame::Data(chunk.freeze())))
            }
            State::Done => {
                buf.clear();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        match self.state {
            State::Header if self.parser.is_idle() && buf.is_empty() => Ok(None),
            State::Header => Err(Error::truncated_header()),
            State::Body {
                expected,
                remaining,
            } => Err(Error::truncated_body(expected, expected - remaining)),
            State::Done => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{Decoder, FramedRead};

    use super::{Frame, RequestDecoder};
    use crate::proto::{Config, Marker};

    const S1: &[u8] = b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00\
REQUEST_URI\x00/deepthought\x00,What is the answer to life?";
    const BODY: &[u8] = b"What is the answer to life?";

    /// Decodes `input` fed in `chunk`-byte pieces, then at end of input.
    fn decode_all(input: &[u8], chunk: usize) -> Result<Vec<Frame>, crate::Error> {
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(frame) = decoder.decode(&mut buf)? {
                frames.push(frame);
            }
        }
        while let Some(frame) = decoder.decode_eof(&mut buf)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// The body bytes of `frames`, checking the order header, data…, end.
    fn body_of(frames: &[Frame]) -> Vec<u8> {
        assert!(
            matches!(frames.first(), Some(Frame::Header(_))),
            "{frames:?}"
        );
        assert_eq!(frames.last(), Some(&Frame::End));
        let data = frames.get(1..frames.len() - 1).unwrap_or_default();
        data.iter()
            .flat_map(|frame| match frame {
                Frame::Data(bytes) => {
                    assert!(!bytes.is_empty(), "empty data frame");
                    bytes.to_vec()
                }
                other => panic!("unexpected frame {other:?}"),
            })
            .collect()
    }

    #[test]
    fn s1_header_then_body_then_end() {
        let frames = decode_all(S1, S1.len()).unwrap();
        assert_eq!(frames.len(), 3);
        let Some(Frame::Header(header)) = frames.first() else {
            panic!("{frames:?}");
        };
        assert_eq!(header.content_length(), 27);
        assert_eq!(header.marker(), Marker::Present);
        assert_eq!(frames.get(1), Some(&Frame::Data(Bytes::from_static(BODY))));
        assert_eq!(frames.get(2), Some(&Frame::End));
    }

    #[test]
    fn s1_split_input_gives_the_same_request() {
        for chunk in 1..=S1.len() {
            let frames = decode_all(S1, chunk).unwrap();
            assert_eq!(body_of(&frames), BODY, "chunks of {chunk}");
        }
        for at in 0..=S1.len() {
            let mut decoder = RequestDecoder::default();
            let mut buf = BytesMut::from(&S1[..at]);
            let mut frames = Vec::new();
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            buf.extend_from_slice(&S1[at..]);
            while let Some(frame) = decoder.decode_eof(&mut buf).unwrap() {
                frames.push(frame);
            }
            assert_eq!(body_of(&frames), BODY, "split at {at}");
        }
    }

    #[test]
    fn s3_zero_length_body_ends_at_once() {
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::from(&b"17:CONTENT_LENGTH\x000\x00,"[..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Frame::Header(_)))
        ));
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Frame::End));
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn s3_bytes_after_the_body_are_not_body() {
        let mut input = S1.to_vec();
        input.extend_from_slice(b"EXTRA BYTES");
        let frames = decode_all(&input, input.len()).unwrap();
        assert_eq!(body_of(&frames), BODY);

        // Once the request is complete, later bytes are dropped, not kept.
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::from(&input[..]);
        while decoder.decode(&mut buf).unwrap() != Some(Frame::End) {}
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        buf.extend_from_slice(b"more");
        assert_eq!(decoder.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn b4_protocol_error_surfaces() {
        let err = decode_all(b"07:", 3).unwrap_err();
        assert!(err.is_protocol(), "{err}");
        assert!(!err.is_truncated_header());
        assert!(err.to_string().contains("leading zero"), "{err}");
    }

    #[test]
    fn b4_strict_marker_reaches_the_decoder() {
        let mut config = Config::new();
        config.strict_marker(true);
        let mut decoder = RequestDecoder::new(&config);
        let mut buf = BytesMut::from(&b"17:CONTENT_LENGTH\x000\x00,"[..]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert!(err.is_protocol());
    }

    #[test]
    fn b5_body_cut_short_is_an_error() {
        let cut = &S1[..S1.len() - 1];
        let err = decode_all(cut, 5).unwrap_err();
        assert!(err.is_truncated_body(), "{err}");
        assert_eq!(
            err.to_string(),
            "connection closed after 26 of 27 request body bytes"
        );
    }

    #[test]
    fn header_cut_short_is_an_error() {
        for end in 1..S1.len() - BODY.len() {
            let err = decode_all(&S1[..end], 4).unwrap_err();
            assert!(err.is_truncated_header(), "end {end}: {err}");
        }
    }

    #[test]
    fn nothing_sent_ends_quietly() {
        assert_eq!(decode_all(b"", 1).unwrap(), []);
    }

    #[tokio::test]
    async fn q7_end_arrives_while_the_web_server_keeps_the_connection_open() {
        // nginx, Apache and lighttpd do not half-close after the body: the
        // End frame must come without end of input.
        let (mut server_side, app_side) = tokio::io::duplex(16);
        let writer = tokio::spawn(async move {
            server_side.write_all(S1).await.unwrap();
            server_side
        });
        let mut frames = FramedRead::new(app_side, RequestDecoder::default());
        let mut got = Vec::new();
        let wait = Duration::from_secs(5);
        loop {
            let frame = tokio::time::timeout(wait, frames.next()).await;
            let frame = frame.expect("no End frame").expect("stream ended").unwrap();
            let end = frame == Frame::End;
            got.push(frame);
            if end {
                break;
            }
        }
        assert_eq!(body_of(&got), BODY);
        // The writer still holds its end open.
        let server_side = writer.await.unwrap();
        drop(server_side);
    }
}

//! The incremental netstring reader that frames the request header.

use bytes::{Buf, BytesMut};

use super::config::Config;
use super::error::{Kind, ProtocolError};
use super::header::{Header, MAX_BLOCK_LEN, parse_block};

/// An incremental parser for the SCGI request header.
///
/// Call [`parse`](Self::parse) each time bytes arrive; it returns
/// `Ok(None)` until the whole netstring is in the buffer, then the
/// [`Header`]. Work is linear in the input: the length digits are consumed
/// as they arrive, and the block is examined once, when it is complete.
///
/// After a header, the parser is ready for the next one. After an error, it
/// returns the same error on every call.
#[derive(Debug, Clone)]
pub struct HeaderParser {
    max_header_len: usize,
    strict_marker: bool,
    merge_repeated: bool,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading the length digits; `len` is `None` before the first digit.
    Length { len: Option<usize>, digits: usize },
    /// The length and `:` are consumed; waiting for the block and `,`.
    Block { len: usize, digits: usize },
    /// A previous call failed.
    Failed(ProtocolError),
}

const START: State = State::Length {
    len: None,
    digits: 0,
};

impl HeaderParser {
    /// A parser with the limits and strictness of `config`.
    pub fn new(config: &Config) -> Self {
        HeaderParser {
            max_header_len: config.max_header_len.min(MAX_BLOCK_LEN),
            strict_marker: config.strict_marker,
            merge_repeated: config.merge_repeated,
            state: START,
        }
    }

    /// Parses as much of the header as `buf` holds.
    ///
    /// Bytes are removed from the front of `buf` as they are parsed; the
    /// caller only appends. On `Ok(Some(header))`, `buf` starts with the
    /// first body byte. On `Ok(None)`, more bytes are needed; `buf` then
    /// holds no more than the configured cap.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the bytes are not a valid SCGI request header
    /// or go over the cap; the connection cannot be used further.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Header>, ProtocolError> {
        let result = self.step(buf);
        if let Err(err) = result {
            self.state = State::Failed(err);
        }
        result
    }

    /// True before the first byte of a header has been consumed: an end of
    /// input here is a clean end, not a truncated header.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, State::Length { len: None, .. })
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Header>, ProtocolError> {
        loop {
            match self.state {
                State::Failed(err) => return Err(err),
                State::Length { len, digits } => {
                    let (used, state) = self.scan_length(buf, len, digits)?;
                    buf.advance(used);
                    self.state = state;
                    if let State::Length { .. } = state {
                        return Ok(None);
                    }
                }
                State::Block { len, digits } => {
                    match buf.get(len) {
                        None => return Ok(None),
                        Some(b',') => {}
                        Some(_) => {
                            return Err(ProtocolError::new(
                                Kind::MissingComma,
                                "header block is not followed by ','",
                            ));
                        }
                    }
                    let block = buf.split_to(len).freeze();
                    buf.advance(1);
                    self.state = START;
                    // digits + ':' + block + ','
                    let wire_len = digits.saturating_add(len).saturating_add(2);
                    return parse_block(block, wire_len, self.strict_marker, self.merge_repeated)
                        .map(Some);
                }
            }
        }
    }

    /// Reads length digits from `buf` up to and including `:`. Returns how
    /// many bytes it used and the next state.
    fn scan_length(
        &self,
        buf: &[u8],
        mut len: Option<usize>,
        mut digits: usize,
    ) -> Result<(usize, State), ProtocolError> {
        for (used, &b) in buf.iter().enumerate() {
            match (b, len) {
                (b':', Some(len)) => return Ok((used + 1, State::Block { len, digits })),
                (b'0'..=b'9', Some(0)) => {
                    return Err(ProtocolError::new(
                        Kind::LengthLeadingZero,
                        "netstring length has a leading zero",
                    ));
                }
                (b'0'..=b'9', _) => {
                    let next = len
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(usize::from(b - b'0')))
                        .filter(|&n| n <= self.max_header_len)
                        .ok_or(ProtocolError::new(
                            Kind::TooLarge,
                            "header block is over the size cap",
                        ))?;
                    len = Some(next);
                    digits += 1;
                }
                (_, None) => {
                    return Err(ProtocolError::new(
                        Kind::LengthNotDigit,
                        "netstring length is not ASCII digits",
                    ));
                }
                (_, Some(_)) => {
                    return Err(ProtocolError::new(
                        Kind::MissingColon,
                        "netstring length is not followed by ':'",
                    ));
                }
            }
        }
        Ok((buf.len(), State::Length { len, digits }))
    }
}

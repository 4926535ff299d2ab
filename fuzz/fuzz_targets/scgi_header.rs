//! Fuzzes the SCGI request-header parser and the request decoder.
//!
//! Input layout: `options count sizes[count] request...`. Bit 0 of
//! `options` makes the marker check strict; bit 1 swaps the 64 KiB cap for
//! `4 * (options >> 2)` bytes; `sizes` are the chunk sizes (each + 1, cycled)
//! the request is fed in. A seed is `\0\0` followed by a request.
//!
//! Checks that nothing panics, that memory stays bounded by the cap, that
//! splitting the input never changes the result, and that the decoder yields
//! the header, the body up to CONTENT_LENGTH, then the end.

#![no_main]

use bytes::BytesMut;
use gateway_scgi::codec::{Frame, RequestDecoder};
use gateway_scgi::proto::{Config, Header, HeaderParser, ProtocolError};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

type Outcome = Result<Option<(Header, Vec<u8>)>, ProtocolError>;

fuzz_target!(|data: &[u8]| {
    let [options, count, rest @ ..] = data else {
        return;
    };
    let (sizes, input) = rest.split_at(usize::from(*count).min(rest.len()));
    let mut config = Config::new();
    config.strict_marker(options & 1 != 0);
    // Small caps reach the limit checks with short inputs.
    let cap = match options & 2 {
        0 => Config::DEFAULT_MAX_HEADER_LEN,
        _ => usize::from(options >> 2) * 4,
    };
    config.max_header_len(cap);

    let chunks = split(input, sizes);
    let whole = parse(&config, cap, &[input]);
    assert_eq!(parse(&config, cap, &chunks), whole);
    if let Ok(Some((header, _))) = &whole {
        // Length digits (no leading zeros, so at most 20), ':', block, ','.
        assert!(header.wire_len() <= cap + 22);
    }
    decode(&config, &chunks, whole);
});

/// Cuts `input` into pieces of the given sizes (each 1..=256), cycled.
fn split<'a>(input: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().map_or(rest.len(), |&s| usize::from(s) + 1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Feeds the chunks to a parser; returns the header and every later byte.
fn parse(config: &Config, cap: usize, chunks: &[&[u8]]) -> Outcome {
    let mut parser = HeaderParser::new(config);
    let mut buf = BytesMut::new();
    let mut chunks = chunks.iter();
    loop {
        if let Some(header) = parser.parse(&mut buf)? {
            let mut rest = buf.to_vec();
            chunks.for_each(|chunk| rest.extend_from_slice(chunk));
            return Ok(Some((header, rest)));
        }
        assert!(buf.len() <= cap, "parser holds more than the cap");
        match chunks.next() {
            Some(chunk) => buf.extend_from_slice(chunk),
            None => return Ok(None),
        }
    }
}

/// Runs the decoder over the chunks and checks it against the parser's
/// outcome.
fn decode(config: &Config, chunks: &[&[u8]], expected: Outcome) {
    let mut decoder = RequestDecoder::new(config);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut result = Ok(());
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        result = drain(&mut decoder, &mut buf, &mut frames, false);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = drain(&mut decoder, &mut buf, &mut frames, true);
    }

    let mut frames = frames.into_iter();
    let header = match (expected, frames.next()) {
        (Err(_), first) => {
            assert!(first.is_none() && result.is_err_and(|e| e.is_protocol()));
            return;
        }
        (Ok(None), first) => {
            assert!(first.is_none());
            assert!(result.is_ok() == chunks.iter().all(|c| c.is_empty()));
            return;
        }
        (Ok(Some((header, _))), Some(Frame::Header(got))) => {
            assert_eq!(got, header);
            header
        }
        (Ok(Some(_)), other) => panic!("expected the header, got {other:?}"),
    };
    let mut body = 0u64;
    let mut ended = false;
    for frame in frames {
        assert!(!ended, "frame after End");
        match frame {
            Frame::Data(bytes) => {
                assert!(!bytes.is_empty());
                body += bytes.len() as u64;
            }
            Frame::End => ended = true,
            Frame::Header(_) => panic!("second header"),
        }
    }
    assert!(body <= header.content_length());
    if ended {
        assert_eq!(body, header.content_length());
        assert!(result.is_ok());
    } else {
        assert!(result.is_err_and(|e| e.is_truncated_body()));
    }
}

fn drain(
    decoder: &mut RequestDecoder,
    buf: &mut BytesMut,
    frames: &mut Vec<Frame>,
    eof: bool,
) -> Result<(), gateway_scgi::Error> {
    loop {
        let frame = match eof {
            false => decoder.decode(buf)?,
            true => decoder.decode_eof(buf)?,
        };
        match frame {
            Some(frame) => frames.push(frame),
            None => return Ok(()),
        }
    }
}

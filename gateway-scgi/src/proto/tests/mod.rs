//! Request-header tests: the spec vector, the format rules, each
//! rejected case, the header orders of real web servers,
//! and split input. Every parse goes through `outcome`, which also checks
//! that the result is the same for the input whole, split in two at every
//! byte (at a spread of bytes for long inputs), and fed one byte at a time.

use bytes::BytesMut;

use super::error::Kind;
use super::{Config, Header, HeaderParser, Marker, ProtocolError};

mod format;
mod front_ends;
mod rejections;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The parsed header and every byte after it, or `None` if incomplete.
type Outcome = Result<Option<(Header, Vec<u8>)>, ProtocolError>;

/// The S1 vector: a 70-byte header block and a 27-byte body.
const S1: &[u8] = b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00\
REQUEST_URI\x00/deepthought\x00,What is the answer to life?";

/// Feeds `chunks` to a fresh parser, calling `parse` after each one.
fn feed(config: &Config, chunks: &[&[u8]]) -> Outcome {
    let mut parser = HeaderParser::new(config);
    let mut buf = BytesMut::new();
    let mut chunks = chunks.iter();
    loop {
        if let Some(header) = parser.parse(&mut buf)? {
            let mut rest = buf.to_vec();
            chunks.for_each(|chunk| rest.extend_from_slice(chunk));
            return Ok(Some((header, rest)));
        }
        // Waiting for more bytes never holds more than the cap.
        assert!(buf.len() <= config.max_header_len, "buffer over the cap");
        match chunks.next() {
            Some(chunk) => buf.extend_from_slice(chunk),
            None => return Ok(None),
        }
    }
}

/// Parses `input` whole, split at every byte, and one byte at a time;
/// asserts the outcomes agree and returns it.
fn outcome(config: &Config, input: &[u8]) -> Outcome {
    let whole = feed(config, &[input]);
    // Every split of short inputs; a spread of splits, both ends included,
    // of long ones (each parse is linear, so all splits would be quadratic).
    let step = (input.len() / 256).max(1);
    let splits = (0..=input.len())
        .step_by(step)
        .chain(input.len().saturating_sub(8)..=input.len());
    for at in splits {
        let (head, tail) = input.split_at(at);
        assert_eq!(feed(config, &[head, tail]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed(config, &bytes), whole, "one byte at a time");
    whole
}

/// Parses a complete request with the default configuration.
fn parse(input: &[u8]) -> Result<(Header, Vec<u8>), Box<dyn std::error::Error>> {
    parse_with(&Config::new(), input)
}

fn parse_with(
    config: &Config,
    input: &[u8],
) -> Result<(Header, Vec<u8>), Box<dyn std::error::Error>> {
    Ok(outcome(config, input)?.ok_or("incomplete header")?)
}

/// The error `input` is rejected with, under `config`.
fn rejection(config: &Config, input: &[u8]) -> Option<ProtocolError> {
    outcome(config, input).err()
}

fn rejected_as(input: &[u8]) -> Option<Kind> {
    rejection(&Config::new(), input).map(|err| err.kind())
}

fn strict() -> Config {
    let mut config = Config::new();
    config.strict_marker(true);
    config
}

/// A netstring around `block`.
fn netstring(block: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", block.len()).into_bytes();
    out.extend_from_slice(block);
    out.push(b',');
    out
}

/// A header block from raw pairs.
fn block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// A request header (netstring) from text pairs.
fn request(pairs: &[(&str, &str)]) -> Vec<u8> {
    let raw: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    netstring(&block(&raw))
}

fn names(header: &Header) -> Vec<&[u8]> {
    header.iter().map(|(name, _)| name).collect()
}

#[test]
fn parser_is_ready_for_another_header_after_one() -> TestResult {
    let mut parser = HeaderParser::new(&Config::new());
    let mut buf = BytesMut::from(S1);
    parser.parse(&mut buf)?.ok_or("first header")?;
    buf.clear();
    buf.extend_from_slice(&request(&[("CONTENT_LENGTH", "1"), ("SCGI", "1")]));
    let header = parser.parse(&mut buf)?.ok_or("second header")?;
    assert_eq!(header.content_length(), 1);
    Ok(())
}

#[test]
fn parser_repeats_its_error() {
    let mut parser = HeaderParser::new(&Config::new());
    let mut buf = BytesMut::from(&b"07:"[..]);
    let first = parser.parse(&mut buf);
    assert_eq!(
        first.as_ref().err().map(ProtocolError::kind),
        Some(Kind::LengthLeadingZero)
    );
    buf.clear();
    buf.extend_from_slice(S1);
    assert_eq!(parser.parse(&mut buf), first);
}

#[test]
fn split_input_agrees_for_every_case() {
    // `outcome` checks whole, every two-way split and byte-at-a-time input
    // against each other; this runs it over requests with bodies, complete,
    // incomplete and rejected, and checks each result.
    // The bytes after the header, or the rejection.
    type Expected = Result<Option<&'static [u8]>, Kind>;
    let cases: [(&[u8], Expected); 8] = [
        (S1, Ok(Some(b"What is the answer to life?"))),
        (b"", Ok(None)),
        (b"0:,", Err(Kind::FirstNotContentLength)),
        (b"17:CONTENT_LENGTH\x000\x00,", Ok(Some(b""))),
        (b"17:CONTENT_LENGTH\x000\x00", Ok(None)),
        (b"17:CONTENT_LENGTH\x000\x00;", Err(Kind::MissingComma)),
        (
            b"19:CONTENT_LENGTH\x000\x00A\x00,",
            Err(Kind::OddStringCount),
        ),
        (
            b"24:CONTENT_LENGTH\x002\x00SCGI\x001\x00,hi and more",
            Ok(Some(b"hi and more")),
        ),
    ];
    for (input, expected) in cases {
        let got = outcome(&Config::new(), input);
        let got = got
            .as_ref()
            .map(|ok| ok.as_ref().map(|(_, rest)| &rest[..]));
        assert_eq!(got.map_err(ProtocolError::kind), expected, "{input:?}");
    }
}

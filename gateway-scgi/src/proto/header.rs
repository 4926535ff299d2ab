//! The parsed request header and the rules for its `name NUL value NUL` block.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;

use super::error::{Kind, ProtocolError};

/// The header every request must start with.
const CONTENT_LENGTH: &[u8] = b"CONTENT_LENGTH";
/// The protocol marker header.
const SCGI: &[u8] = b"SCGI";
/// The only marker value the protocol defines.
const SCGI_VERSION: &[u8] = b"1";

/// A complete, validated SCGI request header.
///
/// The pairs keep the order and the raw bytes the web server sent (the
/// reference server decodes them as ISO-8859-1; this crate leaves decoding
/// to the caller). `CONTENT_LENGTH` is always the first pair, and `SCGI`
/// appears where the web server put it.
///
/// The names and values stay where they arrived, in the received block:
/// the header holds the block and where each string lies in it.
#[derive(Clone)]
pub struct Header {
    /// The bytes the pairs lie in: the received block, or (when repeated
    /// `HTTP_*` pairs were joined) a compact copy of the pairs.
    buf: Bytes,
    /// Per pair, in order: `[name start, name end, value start, value end]`
    /// in `buf`.
    spans: Vec<[u32; 4]>,
    content_length: u64,
    marker: Marker,
    wire_len: usize,
}

/// The largest header block whose offsets a [`Header`] can hold (below
/// [`JOINED`], which marks a joined value while the block is parsed).
pub(super) const MAX_BLOCK_LEN: usize = u32::MAX as usize - 1;

/// The value start of a pair whose value is being joined while the block is
/// parsed: its value end is then the index of the joined value.
const JOINED: u32 = u32::MAX;

/// What the request said about the `SCGI` protocol marker.
///
/// The protocol requires `SCGI` = `1`. Unless the parser is strict, the other
/// cases are accepted and reported here, so a server can log them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `SCGI` is present with the value `1`.
    Present,
    /// There is no `SCGI` header (nginx without `scgi_params`).
    Missing,
    /// `SCGI` is present with another value; [`Header::get`] returns it.
    Unexpected,
}

impl Header {
    /// The request body length from `CONTENT_LENGTH`: the body is exactly
    /// this many bytes after the netstring's `,`.
    pub fn content_length(&self) -> u64 {
        self.content_length
    }

    /// Whether the `SCGI` marker was present and `1`.
    pub fn marker(&self) -> Marker {
        self.marker
    }

    /// The bytes of `buf` from `start` to `end` (empty if they are not in
    /// it, which the parser never lets happen).
    #[inline]
    fn part(&self, start: u32, end: u32) -> &[u8] {
        self.buf
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The value of the header `name` (names are unique, compared as bytes).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.spans
            .iter()
            .find(|s| self.part(s[0], s[1]) == name)
            .map(|s| self.part(s[2], s[3]))
    }

    /// The `(name, value)` pairs in the order they were sent.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|s| (self.part(s[0], s[1]), self.part(s[2], s[3])))
    }

    /// How many bytes the header took on the wire: the length digits, `:`,
    /// the block and `,`. The parser removed exactly this many bytes from its
    /// buffer; what follows is the body.
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// The `(name, value)` pairs in the order they were sent, as shared
    /// slices of the received block (no copy).
    pub fn into_pairs(self) -> Vec<(Bytes, Bytes)> {
        let buf = &self.buf;
        let slice = |start: u32, end: u32| buf.slice(start as usize..end as usize);
        self.spans
            .iter()
            .map(|s| (slice(s[0], s[1]), slice(s[2], s[3])))
            .collect()
    }

    /// The pairs as one buffer and, per pair in the order sent, the offsets
    /// in it of the name and the value: `[name start, name end, value start,
    /// value end]`. Nothing is copied; the form
    /// `gateway_core::Environ::extend_replacing_spans` takes.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use gateway_scgi::proto::{Config, HeaderParser};
    ///
    /// let mut buf = BytesMut::from(&b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,"[..]);
    /// let header = HeaderParser::new(&Config::new()).parse(&mut buf)?.ok_or("incomplete")?;
    /// let (bytes, spans) = header.into_spans();
    /// let [start, end, ..] = spans[1];
    /// assert_eq!(&bytes[start as usize..end as usize], b"SCGI");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_spans(self) -> (Bytes, Vec<[u32; 4]>) {
        (self.buf, self.spans)
    }
}

/// Equal when the pairs, the body length, the marker and the wire length
/// are.
impl PartialEq for Header {
    fn eq(&self, other: &Self) -> bool {
        self.content_length == other.content_length
            && self.marker == other.marker
            && self.wire_len == other.wire_len
            && self.iter().eq(other.iter())
    }
}

impl Eq for Header {}

/// Shows the pairs as byte strings.
impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// A byte string shown as `b"..."`.
        struct Raw<'a>(&'a [u8]);
        impl fmt::Debug for Raw<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "b\"{}\"", self.0.escape_ascii())
            }
        }
        f.debug_struct("Header")
            .field(
                "pairs",
                &self
                    .iter()
                    .map(|(n, v)| (Raw(n), Raw(v)))
                    .collect::<Vec<_>>(),
            )
            .field("content_length", &self.content_length)
            .field("marker", &self.marker)
            .field("wire_len", &self.wire_len)
            .finish()
    }
}

/// How many name comparisons the search for repeats may make by scanning
/// the names before it builds an index of them: a web server's few dozen
/// distinct names seldom cost a comparison at all, and a block of
/// thousands of names (or of names made to look alike) stays linear.
const SCAN_BUDGET: usize = 1024;

/// A set of names that answers "maybe" or "surely not" (a Bloom filter of
/// one hash, 1024 bits): a name is compared with the names before it only
/// when its bit was set already, which for a web server's few dozen
/// distinct names is seldom.
#[derive(Default)]
struct NameFilter([u64; 16]);

impl NameFilter {
    /// Sets the bit of `name`; true if it was set already (the name may
    /// have been seen). The bit mixes the name's length and its first,
    /// middle and last bytes.
    #[inline]
    fn insert(&mut self, name: &[u8]) -> bool {
        let n = name.len();
        let byte = |i: usize| u64::from(name.get(i).copied().unwrap_or(0));
        let key = (n as u64) << 24 | byte(0) << 16 | byte(n / 2) << 8 | byte(n.wrapping_sub(1));
        let bit = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize;
        let mask = 1u64 << (bit % 64);
        match self.0.get_mut(bit / 64) {
            Some(w) => {
                let was = *w & mask != 0;
                *w |= mask;
                was
            }
            None => true,
        }
    }
}

/// Where the strings of a header block end: the offset of each NUL, a
/// word at a time, then the block's length (the block given without its
/// final NUL, whose end closes the last string).
struct Ends<'a> {
    /// The bytes not yet loaded.
    rest: &'a [u8],
    /// The offset of `rest` in the block.
    offset: usize,
    /// The offset of the word loaded last.
    base: usize,
    /// The high bit of each NUL of that word not yet reported.
    nuls: u64,
    /// Whether the block's length has been reported.
    done: bool,
}

impl<'a> Ends<'a> {
    fn new(strings: &'a [u8]) -> Self {
        Ends {
            rest: strings,
            offset: 0,
            base: 0,
            nuls: 0,
            done: false,
        }
    }

    /// The high bit of each zero byte of `w`, and of no other (no carry
    /// runs from one byte into the next).
    #[inline]
    fn zero_bytes(w: u64) -> u64 {
        const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
        !(((w & LOW7).wrapping_add(LOW7)) | w | LOW7)
    }
}

impl Iterator for Ends<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.nuls != 0 {
                let at = self.base + (self.nuls.trailing_zeros() / 8) as usize;
                self.nuls &= self.nuls - 1;
                return Some(at);
            }
            let (word, n) = match self.rest.split_first_chunk::<8>() {
                Some((word, rest)) => {
                    self.rest = rest;
                    (u64::from_le_bytes(*word), 8)
                }
                None if self.rest.is_empty() => {
                    if self.done {
                        return None;
                    }
                    self.done = true;
                    return Some(self.offset);
                }
                None => {
                    // The last few bytes, padded with bytes that are not NUL.
                    let mut word = [0xFF; 8];
                    let n = self.rest.len();
                    word.get_mut(..n)?.copy_from_slice(self.rest);
                    self.rest = &[];
                    (u64::from_le_bytes(word), n)
                }
            };
            self.base = self.offset;
            self.offset += n;
            self.nuls = Self::zero_bytes(word);
        }
    }
}

/// Validates a header block (the netstring's content) and splits it into
/// pairs. `wire_len` is recorded as is; `strict` rejects a missing or
/// unexpected `SCGI` marker; `merge` joins repeated `HTTP_*` pairs.
pub(super) fn parse_block(
    block: Bytes,
    wire_len: usize,
    strict: bool,
    merge: bool,
) -> Result<Header, ProtocolError> {
    let Some((&last, strings)) = block.split_last() else {
        return Err(ProtocolError::new(
            Kind::FirstNotContentLength,
            "empty header block: CONTENT_LENGTH must come first",
        ));
    };
    if last != 0 {
        return Err(ProtocolError::new(
            Kind::NotNulTerminated,
            "header block does not end in NUL",
        ));
    }

    // With the final NUL removed, each NUL of the rest and its end close
    // one string of the block each.
    let mut ends = Ends::new(strings);
    // Room for the pairs a web server's block holds (some 25 to 40 bytes a
    // pair), bounded so that a large block does not reserve ahead.
    let mut spans: Vec<[u32; 4]> = Vec::with_capacity((block.len() / 24).clamp(8, 64));
    // The name of a pair, by its span.
    let name_of = |s: &[u32; 4]| {
        strings
            .get(s[0] as usize..s[1] as usize)
            .unwrap_or_default()
    };
    // A name is compared with the earlier ones only when `seen` says it
    // may be one of them; once that has cost `SCAN_BUDGET` comparisons,
    // the names are indexed instead.
    let mut seen = NameFilter::default();
    let mut compared = 0usize;
    let mut index: Option<HashMap<&[u8], usize>> = None;
    // The values of repeated `HTTP_*` pairs joined so far; the span of
    // such a pair says `JOINED` and the index of its value here.
    let mut joined: Vec<Vec<u8>> = Vec::new();
    let mut content_length = None;
    let mut marker = Marker::Missing;
    // Where the next string starts in `block`.
    let mut at = 0;
    while let Some(name_end) = ends.next() {
        let Some(value_end) = ends.next() else {
            return Err(ProtocolError::new(
                Kind::OddStringCount,
                "header block holds an odd number of strings",
            ));
        };
        let (name_at, value_at) = (at, name_end + 1);
        at = value_end + 1;
        let name = strings.get(name_at..name_end).unwrap_or_default();
        let value = strings.get(value_at..value_end).unwrap_or_default();
        if name.is_empty() {
            return Err(ProtocolError::new(Kind::EmptyName, "empty header name"));
        }
        if content_length.is_none() {
            if name != CONTENT_LENGTH {
                return Err(ProtocolError::new(
                    Kind::FirstNotContentLength,
                    "first header is not CONTENT_LENGTH",
                ));
            }
            content_length = Some(parse_content_length(value)?);
        }
        let maybe_seen = seen.insert(name);
        if index.is_none() && maybe_seen && compared >= SCAN_BUDGET {
            index = Some(
                spans
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (name_of(s), i))
                    .collect(),
            );
        }
        let found = match &index {
            Some(index) => index.get(name).copied(),
            None if maybe_seen => {
                compared += spans.len();
                spans.iter().position(|s| name_of(s) == name)
            }
            None => None,
        };
        if let Some(first) = found {
            let Some(span) = spans
                .get_mut(first)
                .filter(|_| merge && name.starts_with(b"HTTP_"))
            else {
                return Err(ProtocolError::new(
                    Kind::DuplicateName,
                    "header name appears twice",
                ));
            };
            let sep: &[u8] = if name == b"HTTP_COOKIE" { b"; " } else { b", " };
            if span[2] != JOINED {
                let earlier = strings
                    .get(span[2] as usize..span[3] as usize)
                    .unwrap_or_default();
                *span = [span[0], span[1], JOINED, joined.len() as u32];
                joined.push(earlier.to_vec());
            }
            if let Some(value_so_far) = joined.get_mut(span[3] as usize) {
                value_so_far.extend_from_slice(sep);
                value_so_far.extend_from_slice(value);
            }
            continue;
        }
        if name == SCGI {
            marker = if value == SCGI_VERSION {
                Marker::Present
            } else {
                Marker::Unexpected
            };
        }
        if let Some(index) = &mut index {
            index.insert(name, spans.len());
        }
        // The parser caps the block below `u32::MAX`.
        spans.push([
            name_at as u32,
            name_end as u32,
            value_at as u32,
            value_end as u32,
        ]);
    }

    // The loop ran at least once (the block holds at least one NUL), and its
    // first round either failed or set the length.
    let Some(content_length) = content_length else {
        return Err(ProtocolError::new(
            Kind::FirstNotContentLength,
            "first header is not CONTENT_LENGTH",
        ));
    };
    if strict {
        match marker {
            Marker::Present => {}
            Marker::Missing => {
                return Err(ProtocolError::new(
                    Kind::MissingMarker,
                    "no SCGI header (strict mode)",
                ));
            }
            Marker::Unexpected => {
                return Err(ProtocolError::new(
                    Kind::InvalidMarker,
                    "SCGI header is not \"1\" (strict mode)",
                ));
            }
        }
    }
    let buf = if joined.is_empty() {
        block
    } else {
        compact(strings, &mut spans, &joined)
    };
    Ok(Header {
        buf,
        spans,
        content_length,
        marker,
        wire_len,
    })
}

/// The pairs of `spans` copied one after the other (names from `strings`,
/// values from `strings` or `joined`), `spans` set to where they are in the
/// copy. The copy is no longer than the block: a joined value takes two
/// bytes per repeat, less than the repeated pair did.
fn compact(strings: &[u8], spans: &mut [[u32; 4]], joined: &[Vec<u8>]) -> Bytes {
    let mut buf = Vec::with_capacity(strings.len());
    let part = |start: u32, end: u32| {
        strings
            .get(start as usize..end as usize)
            .unwrap_or_default()
    };
    for span in spans {
        let name = part(span[0], span[1]);
        let value = match span[2] {
            JOINED => joined.get(span[3] as usize).map_or(&[][..], Vec::as_slice),
            start => part(start, span[3]),
        };
        let name_at = buf.len() as u32;
        buf.extend_from_slice(name);
        let value_at = buf.len() as u32;
        buf.extend_from_slice(value);
        *span = [name_at, value_at, value_at, buf.len() as u32];
    }
    Bytes::from(buf)
}

/// Parses `CONTENT_LENGTH`: one or more ASCII digits (no sign, no spaces),
/// at most `u64::MAX`.
fn parse_content_length(value: &[u8]) -> Result<u64, ProtocolError> {
    if value.is_empty() {
        return Err(ProtocolError::new(
            Kind::InvalidContentLength,
            "CONTENT_LENGTH is empty",
        ));
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(ProtocolError::new(
                Kind::InvalidContentLength,
                "CONTENT_LENGTH is not ASCII digits",
            ));
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ProtocolError::new(
                Kind::InvalidContentLength,
                "CONTENT_LENGTH does not fit in 64 bits",
            ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of `CONTENT_LENGTH`, `n` distinct `HTTP_Xi` names, then
    /// `extra` pairs.
    fn block(n: usize, extra: &[(&str, &str)]) -> Bytes {
        let mut b = b"CONTENT_LENGTH\x000\x00".to_vec();
        for i in 0..n {
            b.extend_from_slice(format!("HTTP_X{i}\0v{i}\0").as_bytes());
        }
        for (name, value) in extra {
            b.extend_from_slice(format!("{name}\0{value}\0").as_bytes());
        }
        Bytes::from(b)
    }

    fn parse(block: Bytes, merge: bool) -> Result<Header, ProtocolError> {
        let len = block.len();
        parse_block(block, len, false, merge)
    }

    /// A repeated name is found whether the names are few (scanned) or
    /// many (indexed once the scans cost too much), early or late in the
    /// block.
    #[test]
    fn repeated_names_are_found_below_and_above_the_scan_budget() {
        for n in [3, 31, 32, 33, 200, 2000] {
            for repeat in [0, n / 2, n - 1] {
                let name = format!("HTTP_X{repeat}");
                let err = parse(block(n, &[(&name, "again")]), false).unwrap_err();
                assert_eq!(err.kind(), Kind::DuplicateName, "n {n}, repeat {repeat}");

                let merged = parse(block(n, &[(&name, "again")]), true).unwrap();
                assert_eq!(merged.iter().len(), n + 1, "n {n}, repeat {repeat}");
                let want = format!("v{repeat}, again");
                assert_eq!(merged.get(name.as_bytes()), Some(want.as_bytes()));
            }
            let distinct = parse(block(n, &[("HTTP_OTHER", "x")]), false).unwrap();
            assert_eq!(distinct.iter().len(), n + 2, "n {n}");
        }
    }

    /// The spans and the pairs say what `iter` says, with or without
    /// joined repeats; a block with joins is copied into no more bytes than
    /// it had.
    #[test]
    fn spans_pairs_and_iter_agree() {
        let cases = [
            block(3, &[]),
            block(3, &[("HTTP_X1", "again"), ("B", ""), ("HTTP_X1", "")]),
            block(
                40,
                &[
                    ("HTTP_COOKIE", "a=1"),
                    ("HTTP_X0", "w"),
                    ("HTTP_COOKIE", "b=2"),
                    ("HTTP_X39", ""),
                ],
            ),
        ];
        for input in cases {
            let header = parse(input.clone(), true).unwrap();
            let want: Vec<(Vec<u8>, Vec<u8>)> = header
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = header
                .clone()
                .into_pairs()
                .into_iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(pairs, want);
            let (buf, spans) = header.into_spans();
            assert!(buf.len() <= input.len(), "{} > {}", buf.len(), input.len());
            let from_spans: Vec<(Vec<u8>, Vec<u8>)> = spans
                .iter()
                .map(|s| {
                    let part = |a: u32, b: u32| buf[a as usize..b as usize].to_vec();
                    (part(s[0], s[1]), part(s[2], s[3]))
                })
                .collect();
            assert_eq!(from_spans, want);
        }
        let joined = parse(block(3, &[("HTTP_X1", "again"), ("HTTP_X1", "")]), true).unwrap();
        assert_eq!(joined.get(b"HTTP_X1"), Some(&b"v1, again, "[..]));
        assert_eq!(joined.iter().len(), 4);
    }

    /// Headers are equal when their pairs are, whatever bytes hold them.
    #[test]
    fn equal_pairs_make_equal_headers() {
        let joined = parse(block(1, &[("HTTP_X0", "w")]), true).unwrap();
        let direct = b"CONTENT_LENGTH\x000\x00HTTP_X0\x00v0, w\x00";
        let mut plain = parse(Bytes::from_static(direct), false).unwrap();
        assert_ne!(joined, plain, "the wire lengths differ");
        plain.wire_len = joined.wire_len;
        assert_eq!(joined, plain);
        assert_eq!(format!("{joined:?}"), format!("{plain:?}"));
        assert!(format!("{joined:?}").contains(r#"(b"HTTP_X0", b"v0, w")"#));
    }

    /// The ends found a word at a time are the NULs, then the length,
    /// whatever the bytes around the NULs (bytes with the high bit set,
    /// ones, NULs side by side) and wherever they fall in a word.
    #[test]
    fn ends_are_the_nuls_then_the_length() {
        let alphabet = [0u8, 1, 0x7F, 0x80, 0x81, 0xFF, b'A'];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..80 {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                let want: Vec<usize> = (0..len)
                    .filter(|&i| bytes[i] == 0)
                    .chain(std::iter::once(len))
                    .collect();
                let got: Vec<usize> = Ends::new(&bytes).collect();
                assert_eq!(got, want, "{bytes:?}");
            }
        }
    }

    /// `CONTENT_LENGTH` sent twice is a repeat like any other.
    #[test]
    fn content_length_twice_is_rejected() {
        let err = parse(block(40, &[("CONTENT_LENGTH", "0")]), true).unwrap_err();
        assert_eq!(err.kind(), Kind::DuplicateName);
    }
}

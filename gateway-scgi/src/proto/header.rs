//! The parsed request header and the rules for its `name NUL value NUL` block.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;
use gateway_core::NameFilter;

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

/// The high bit of each zero byte of `w`, and of no other (no carry runs
/// from one byte into the next).
#[inline]
fn zero_bytes(w: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((w & LOW7).wrapping_add(LOW7)) | w | LOW7)
}

/// Splits `strings` (a header block without its final NUL, whose end
/// closes the last string) at its NULs, a word at a time, into pairs of
/// strings: per pair `[name start, name end, value start, value end]`,
/// pushed onto `spans`. Returns true if a name is left over without a
/// value (the block holds an odd number of strings). The caller keeps the
/// block below `u32::MAX` bytes.
fn split_pairs(strings: &[u8], spans: &mut Vec<[u32; 4]>) -> bool {
    // The offsets of the NULs of a stretch of the block, paired up and
    // flushed into `spans` every so often, so that the scan itself only
    // stores; the last one is kept if it is unpaired.
    let mut ends = [0u32; 72];
    let mut n = 0usize;
    let mut start = 0u32;
    let mut flush = |ends: &mut [u32; 72], n: &mut usize| {
        let pairs = ends.get(..*n).unwrap_or_default().as_chunks::<2>();
        let left = pairs.1.first().copied();
        spans.extend(pairs.0.iter().map(|&[name_end, value_end]| {
            let span = [start, name_end, name_end + 1, value_end];
            start = value_end + 1;
            span
        }));
        *n = 0;
        if let (Some(end), Some(slot)) = (left, ends.first_mut()) {
            *slot = end;
            *n = 1;
        }
    };
    let (words, tail) = strings.as_chunks::<8>();
    let mut base = 0u32;
    for word in words {
        let mut nuls = zero_bytes(u64::from_le_bytes(*word));
        if nuls != 0 {
            // A word holds at most 8 NULs.
            if n > 64 {
                flush(&mut ends, &mut n);
            }
            while nuls != 0 {
                if let Some(slot) = ends.get_mut(n) {
                    *slot = base + nuls.trailing_zeros() / 8;
                }
                n += 1;
                nuls &= nuls - 1;
            }
        }
        base += 8;
    }
    for (i, &b) in (0u32..).zip(tail) {
        if b == 0 {
            if n > 64 {
                flush(&mut ends, &mut n);
            }
            if let Some(slot) = ends.get_mut(n) {
                *slot = base + i;
            }
            n += 1;
        }
    }
    if n > 64 {
        flush(&mut ends, &mut n);
    }
    if let Some(slot) = ends.get_mut(n) {
        *slot = strings.len() as u32;
    }
    n += 1;
    flush(&mut ends, &mut n);
    n == 1
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
    // one string of the block each. Room for the pairs a web server's
    // block holds (some 25 to 40 bytes a pair), bounded so that a large
    // block does not reserve ahead. The list the last request's environ
    // left on this thread, when there is one.
    let mut spans = gateway_core::Environ::span_list((block.len() / 24).clamp(8, 64));
    let odd = split_pairs(strings, &mut spans);
    let (content_length, marker, joined) = check_pairs(strings, &mut spans, odd, merge)?;
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

/// Checks the pairs of `spans` in order (`odd`: a name was left over
/// after them): the first is `CONTENT_LENGTH`, names are not empty, and a
/// repeated name is an error, or with `merge` and an `HTTP_*` name joined
/// into its first pair (see [`Repeats::check`]). Returns the body length,
/// the marker and the joined values.
fn check_pairs(
    strings: &[u8],
    spans: &mut [[u32; 4]],
    odd: bool,
    merge: bool,
) -> Result<(u64, Marker, Vec<Vec<u8>>), ProtocolError> {
    let part = |start: u32, end: u32| {
        strings
            .get(start as usize..end as usize)
            .unwrap_or_default()
    };
    let empty_name = || ProtocolError::new(Kind::EmptyName, "empty header name");
    let Some(&[name_at, name_end, value_at, value_end]) = spans.first() else {
        // No pair: the block is one string.
        return Err(ProtocolError::new(
            Kind::OddStringCount,
            "header block holds an odd number of strings",
        ));
    };
    let name = part(name_at, name_end);
    if name.is_empty() {
        return Err(empty_name());
    }
    if name != CONTENT_LENGTH {
        return Err(ProtocolError::new(
            Kind::FirstNotContentLength,
            "first header is not CONTENT_LENGTH",
        ));
    }
    let content_length = parse_content_length(part(value_at, value_end))?;
    // A name is looked for among the earlier ones only when `seen` says
    // it may be one of them (or once the names are indexed).
    let mut seen = NameFilter::new();
    seen.insert(name);
    let mut repeats = Repeats::default();
    let mut marker = Marker::Missing;
    for i in 1..spans.len() {
        let Some(&[name_at, name_end, ..]) = spans.get(i) else {
            break;
        };
        let name = part(name_at, name_end);
        if name.is_empty() {
            return Err(empty_name());
        }
        let maybe_seen = seen.insert(name);
        if (maybe_seen || repeats.indexed()) && repeats.check(strings, spans, i, merge)? {
            continue;
        }
        if name == SCGI {
            let value = spans.get(i).map_or(&[][..], |s| part(s[2], s[3]));
            marker = if value == SCGI_VERSION {
                Marker::Present
            } else {
                Marker::Unexpected
            };
        }
    }
    if odd {
        return Err(ProtocolError::new(
            Kind::OddStringCount,
            "header block holds an odd number of strings",
        ));
    }
    Ok((content_length, marker, repeats.joined))
}

/// The search for earlier pairs of a name, and the values of repeated
/// `HTTP_*` pairs joined so far.
#[derive(Default)]
struct Repeats<'a> {
    /// The name comparisons made so far by scanning the earlier names.
    compared: usize,
    /// Each name's pair, once scanning has cost `SCAN_BUDGET` comparisons.
    index: Option<HashMap<&'a [u8], usize>>,
    /// The joined values; the span of the first pair of such a name says
    /// `JOINED` and the index of its value here.
    joined: Vec<Vec<u8>>,
}

impl<'a> Repeats<'a> {
    /// Whether every name is to be noted in the index.
    #[inline]
    fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Looks for an earlier pair of the name of pair `i` (and notes it in
    /// the index, if there is one, when there is none). Returns true if pair `i` was joined into it: with `merge`,
    /// an `HTTP_*` value is appended to the first pair's, after `, ` (`; `
    /// for `HTTP_COOKIE`), and pair `i`'s span set to zeros (an empty name,
    /// no pair); any other repeat is an error.
    #[inline(never)]
    fn check(
        &mut self,
        strings: &'a [u8],
        spans: &mut [[u32; 4]],
        i: usize,
        merge: bool,
    ) -> Result<bool, ProtocolError> {
        let name_of = |s: &[u32; 4]| {
            strings
                .get(s[0] as usize..s[1] as usize)
                .unwrap_or_default()
        };
        let name = spans.get(i).map_or(&[][..], name_of);
        if self.index.is_none() && self.compared >= SCAN_BUDGET {
            let mut index = HashMap::with_capacity(i);
            for (j, s) in spans.iter().enumerate().take(i) {
                index.insert(name_of(s), j);
            }
            // Joined pairs' empty names are no name.
            index.remove(&b""[..]);
            self.index = Some(index);
        }
        let found = match &mut self.index {
            Some(index) => {
                let found = index.get(name).copied();
                if found.is_none() {
                    index.insert(name, i);
                }
                found
            }
            None => {
                self.compared += i;
                spans.iter().take(i).position(|s| name_of(s) == name)
            }
        };
        let Some(first) = found else {
            return Ok(false);
        };
        if !(merge && name.starts_with(b"HTTP_")) {
            return Err(ProtocolError::new(
                Kind::DuplicateName,
                "header name appears twice",
            ));
        }
        let value = spans
            .get(i)
            .and_then(|s| strings.get(s[2] as usize..s[3] as usize))
            .unwrap_or_default();
        if let Some(span) = spans.get_mut(first) {
            if span[2] != JOINED {
                let earlier = strings
                    .get(span[2] as usize..span[3] as usize)
                    .unwrap_or_default();
                *span = [span[0], span[1], JOINED, self.joined.len() as u32];
                self.joined.push(earlier.to_vec());
            }
            let sep: &[u8] = if name == b"HTTP_COOKIE" { b"; " } else { b", " };
            if let Some(value_so_far) = self.joined.get_mut(span[3] as usize) {
                value_so_far.extend_from_slice(sep);
                value_so_far.extend_from_slice(value);
            }
        }
        if let Some(span) = spans.get_mut(i) {
            *span = [0; 4];
        }
        Ok(true)
    }
}

/// The pairs of `spans` copied one after the other (names from `strings`,
/// values from `strings` or `joined`; the pairs joined into earlier ones
/// left out), `spans` set to where they are in the copy. The copy is no longer than the block: a joined value takes two
/// bytes per repeat, less than the repeated pair did.
fn compact(strings: &[u8], spans: &mut Vec<[u32; 4]>, joined: &[Vec<u8>]) -> Bytes {
    let mut buf = Vec::with_capacity(strings.len());
    let part = |start: u32, end: u32| {
        strings
            .get(start as usize..end as usize)
            .unwrap_or_default()
    };
    // The pairs joined into earlier ones (zeros, an empty name) go.
    spans.retain(|s| s[0] != s[1]);
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

    /// What a block's pairs are, worked out the plain way: split at every
    /// NUL, checked pair by pair, repeats joined in place.
    type Plain = Result<(Vec<(Vec<u8>, Vec<u8>)>, u64, Marker), Kind>;

    fn plain(block: &[u8], merge: bool) -> Plain {
        let Some((&last, strings)) = block.split_last() else {
            return Err(Kind::FirstNotContentLength);
        };
        if last != 0 {
            return Err(Kind::NotNulTerminated);
        }
        let strings: Vec<&[u8]> = strings.split(|&b| b == 0).collect();
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut content_length = None;
        let mut marker = Marker::Missing;
        for pair in strings.chunks(2) {
            let [name, value] = *pair else {
                return Err(Kind::OddStringCount);
            };
            if name.is_empty() {
                return Err(Kind::EmptyName);
            }
            if content_length.is_none() {
                if name != CONTENT_LENGTH {
                    return Err(Kind::FirstNotContentLength);
                }
                content_length = Some(parse_content_length(value).map_err(|e| e.kind())?);
            }
            if let Some(earlier) = pairs.iter_mut().find(|(n, _)| n == name) {
                if !(merge && name.starts_with(b"HTTP_")) {
                    return Err(Kind::DuplicateName);
                }
                let sep: &[u8] = if name == b"HTTP_COOKIE" { b"; " } else { b", " };
                earlier.1.extend_from_slice(sep);
                earlier.1.extend_from_slice(value);
                continue;
            }
            if name == SCGI {
                marker = if value == SCGI_VERSION {
                    Marker::Present
                } else {
                    Marker::Unexpected
                };
            }
            pairs.push((name.to_vec(), value.to_vec()));
        }
        Ok((pairs, content_length.unwrap_or_default(), marker))
    }

    /// Random blocks of a few names (repeated often, empty now and then,
    /// in a few names or in hundreds, so that repeats are found by scanning
    /// and through the index), with and without joining, parse as the
    /// plain way says: the same pairs, length and marker, or the same
    /// error.
    #[test]
    fn blocks_parse_as_the_plain_way_says() {
        let few: Vec<String> = [
            "CONTENT_LENGTH",
            "SCGI",
            "HTTP_A",
            "HTTP_COOKIE",
            "X",
            "",
            "HTTP_B",
        ]
        .map(String::from)
        .to_vec();
        let many: Vec<String> = (0..150).map(|i| format!("HTTP_N{i}")).collect();
        let values = ["", "0", "1", "12", "a", "x\u{ff}"];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for round in 0..4000 {
            let names = if round % 3 == 0 { &many } else { &few };
            let strings = next(if round % 3 == 0 { 600 } else { 14 });
            let mut block = Vec::new();
            if next(4) != 0 {
                block.extend_from_slice(b"CONTENT_LENGTH\0");
                block.extend_from_slice(values[next(4)].as_bytes());
                block.push(0);
            }
            for k in 0..strings {
                let string = if k % 2 == 0 {
                    // Names repeat often: a few of them most of the time.
                    names[next(names.len()).min(next(names.len()) + 3)].as_bytes()
                } else {
                    values[next(values.len())].as_bytes()
                };
                block.extend_from_slice(string);
                block.push(0);
            }
            if next(20) == 0 {
                block.pop();
            }
            for merge in [false, true] {
                let want = plain(&block, merge);
                let got = parse(Bytes::from(block.clone()), merge).map_err(|e| e.kind());
                let got = got.map(|h| {
                    let pairs = h.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
                    (pairs, h.content_length(), h.marker())
                });
                assert_eq!(
                    got,
                    want,
                    "{:?}, merge {merge}",
                    block.escape_ascii().to_string()
                );
            }
        }
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

    /// Pairs joined before the names are indexed are found (once) by the
    /// index, whose entries are the first pairs of their names.
    #[test]
    fn joined_pairs_are_found_through_the_index() {
        let many: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("HTTP_Y{i}"), format!("y{i}")))
            .collect();
        let mut extra: Vec<(&str, &str)> = vec![("HTTP_X1", "a")];
        extra.extend(many.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        extra.extend([("HTTP_X1", "b"), ("HTTP_Y7", "c"), ("HTTP_X1", "d")]);
        let header = parse(block(3, &extra), true).unwrap();
        assert_eq!(header.iter().len(), 1 + 3 + 2000);
        assert_eq!(header.get(b"HTTP_X1"), Some(&b"v1, a, b, d"[..]));
        assert_eq!(header.get(b"HTTP_Y7"), Some(&b"y7, c"[..]));
        let names: Vec<&[u8]> = header.iter().map(|(n, _)| n).take(4).collect();
        assert_eq!(
            names,
            [&b"CONTENT_LENGTH"[..], b"HTTP_X0", b"HTTP_X1", b"HTTP_X2"]
        );
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

    /// The pairs found a word at a time are the strings between the NULs
    /// (and the end), two by two, whatever the bytes around the NULs (bytes
    /// with the high bit set, ones, NULs side by side) and wherever they
    /// fall in a word.
    #[test]
    fn pairs_are_the_strings_between_the_nuls() {
        // Mostly NULs too, so that runs of more NULs than are kept at once
        // are split up.
        let alphabets: [&[u8]; 2] = [&[0u8, 1, 0x7F, 0x80, 0x81, 0xFF, b'A'], &[0, 0, 0, b'A']];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let lens = (0..80).chain((80..700).step_by(31));
        for (len, alphabet) in lens.flat_map(|len| alphabets.map(|a| (len, a))) {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                let strings: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
                let want: Vec<(&[u8], &[u8])> = strings
                    .chunks_exact(2)
                    .map(|pair| (pair[0], pair[1]))
                    .collect();
                let mut spans = Vec::new();
                let odd = split_pairs(&bytes, &mut spans);
                let got: Vec<(&[u8], &[u8])> = spans
                    .iter()
                    .map(|s| {
                        let part = |a: u32, b: u32| &bytes[a as usize..b as usize];
                        (part(s[0], s[1]), part(s[2], s[3]))
                    })
                    .collect();
                assert_eq!(got, want, "{bytes:?}");
                assert_eq!(odd, strings.len() % 2 == 1, "{bytes:?}");
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

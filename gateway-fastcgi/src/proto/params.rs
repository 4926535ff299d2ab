//! Name-value pairs (spec §3.4), the content of `FCGI_PARAMS`,
//! `FCGI_GET_VALUES` and `FCGI_GET_VALUES_RESULT`.
//!
//! A pair is a name length, a value length, the name, then the value (no NUL
//! terminators). A length below 128 takes one byte; otherwise four bytes,
//! big-endian, with the top bit set and the 31 lower bits holding the length.
//! Any mix of the two forms is allowed:
//!
//! ```text
//! short:  0nnnnnnn                                  (0..=127)
//! long:   1nnnnnnn nnnnnnnn nnnnnnnn nnnnnnnn       (31-bit value)
//!
//! pair:   nameLength  valueLength  nameData[nameLength]  valueData[valueLength]
//! ```
//!
//! The stream of pairs is cut into records without regard to pair
//! boundaries, so [`ParamsDecoder`] accepts the bytes in arbitrary pieces.

use bytes::{BufMut, Bytes, BytesMut};

use super::encode::{encode_stream, encode_stream_end};
use super::error::ProtocolError;
use super::record::RecordType;

/// A long length of 2^31-1 would overflow a C `int` once anything is added to
/// it (libfcgi rejects it, CVE-2025-23016); it is refused here too.
const MAX_PAIR_LEN: usize = 0x7fff_fffe;

/// An ordered list of name-value pairs, exactly as received: duplicates are
/// kept, names and values are raw bytes.
///
/// The pairs lie in one shared buffer, each a name directly followed by its
/// value, found by offsets: decoding a stream slices nothing and counts no
/// reference per pair.
#[derive(Clone, Default)]
pub struct Params {
    buf: Bytes,
    /// Each pair: where its name begins and ends, where its value begins
    /// (the end of its name) and ends, in `buf`.
    spans: Vec<[u32; 4]>,
    /// What the server reads of every request, noted as the pairs are
    /// found.
    noted: Noted,
}

/// The pairs a FastCGI server reads for every request, noted as a stream
/// is decoded: the first `CONTENT_LENGTH`'s value (its start and end) and
/// whether there is an `FCGI_ROLE`.
#[derive(Clone, Copy, Default, Debug)]
struct Noted {
    content_length: Option<[u32; 2]>,
    role: bool,
}

impl Noted {
    /// Takes note of a pair whose name is `name` and value lies at
    /// `value`, if the name is one of the noted ones.
    #[inline]
    fn note(&mut self, name: &[u8], value: [u32; 2]) {
        // Nearly every name differs from both in length.
        match name.len() {
            14 if self.content_length.is_none() && name == b"CONTENT_LENGTH" => {
                self.content_length = Some(value);
            }
            9 if name == b"FCGI_ROLE" => self.role = true,
            _ => {}
        }
    }
}

impl Params {
    /// An empty list.
    pub fn new() -> Params {
        Params::default()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The bytes of `start..end` (always within `buf`: spans are checked
    /// when made).
    #[inline]
    fn bytes(&self, start: u32, end: u32) -> &[u8] {
        self.buf
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The value of the first pair with this name.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of the first `CONTENT_LENGTH`, and whether there is an
    /// `FCGI_ROLE` (both noted as the pairs were found).
    pub(crate) fn length_and_role(&self) -> (Option<&[u8]>, bool) {
        let length = self
            .noted
            .content_length
            .map(|[start, end]| self.bytes(start, end));
        (length, self.noted.role)
    }

    /// The pairs, in order.
    pub fn iter(&self) -> ParamsIter<'_> {
        ParamsIter {
            params: self,
            spans: self.spans.iter(),
        }
    }

    /// Appends a pair (copied into the list's buffer).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] that [is too large](ProtocolError::is_too_large)
    /// when the list's pairs would take more than 4 GiB in all (the list is
    /// left as it was).
    pub fn push(
        &mut self,
        name: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), ProtocolError> {
        let (name, value) = (name.as_ref(), value.as_ref());
        let too_large = || ProtocolError::params_too_large(u32::MAX as usize);
        let offset = |n: Option<usize>| n.and_then(|n| u32::try_from(n).ok()).ok_or_else(too_large);
        let start = offset(Some(self.buf.len()))?;
        let value_at = offset(self.buf.len().checked_add(name.len()))?;
        let end = offset((value_at as usize).checked_add(value.len()))?;
        // Taken back without a copy when nothing else holds the buffer.
        let mut buf = BytesMut::from(std::mem::take(&mut self.buf));
        buf.extend_from_slice(name);
        buf.extend_from_slice(value);
        self.buf = buf.freeze();
        self.spans.push([start, value_at, value_at, end]);
        self.noted.note(name, [value_at, end]);
        Ok(())
    }

    /// A list of `pairs`, in order (each copied into the list's buffer).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] that [is too large](ProtocolError::is_too_large)
    /// when the pairs take more than 4 GiB in all.
    pub fn from_pairs<N, V>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Params, ProtocolError>
    where
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut params = Params::new();
        for (n, v) in pairs {
            params.push(n, v)?;
        }
        Ok(params)
    }

    /// The pairs as a vector, each name and value a slice of the shared
    /// buffer.
    pub fn into_vec(self) -> Vec<(Bytes, Bytes)> {
        let slice = |start: u32, end: u32| {
            if start < end {
                self.buf.slice(start as usize..end as usize)
            } else {
                Bytes::new()
            }
        };
        self.spans
            .iter()
            .map(|&[n, n_end, v, end]| (slice(n, n_end), slice(v, end)))
            .collect()
    }

    /// The buffer the pairs lie in and, for each pair, the offsets in it
    /// of its name and its value: `[name start, name end, value start,
    /// value end]`.
    pub(crate) fn into_spans(self) -> (Bytes, Vec<[u32; 4]>) {
        (self.buf, self.spans)
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Params {}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Raw<'a>(&'a [u8]);
        impl std::fmt::Debug for Raw<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "b\"{}\"", self.0.escape_ascii())
            }
        }
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (Raw(n), Raw(v))))
            .finish()
    }
}

/// The pairs of a [`Params`], in order, as `(name, value)`.
#[derive(Debug, Clone)]
pub struct ParamsIter<'a> {
    params: &'a Params,
    spans: std::slice::Iter<'a, [u32; 4]>,
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let &[n, n_end, v, end] = self.spans.next()?;
        Some((self.params.bytes(n, n_end), self.params.bytes(v, end)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for ParamsIter<'_> {}

impl IntoIterator for Params {
    type Item = (Bytes, Bytes);
    type IntoIter = std::vec::IntoIter<(Bytes, Bytes)>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = ParamsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What [`parse_pair`] found at the front of a buffer.
enum Progress {
    /// A whole pair: the lengths take `header` bytes, then name, then value.
    Pair {
        header: usize,
        name: usize,
        value: usize,
    },
    /// The buffer must hold at least this many bytes before a pair can be
    /// taken off it.
    Need(usize),
}

/// Size of the length field starting at the front of `buf` (1 when unknown).
fn len_size(buf: &[u8]) -> usize {
    match buf.first() {
        Some(byte) if byte & 0x80 != 0 => 4,
        _ => 1,
    }
}

/// Reads one length field: `Ok(Some((length, field size)))`, or `Ok(None)`
/// when `buf` holds only part of it.
fn read_len(buf: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first & 0x80 == 0 {
        return Ok(Some((usize::from(first), 1)));
    }
    let Some(bytes) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_be_bytes(*bytes) & 0x7fff_ffff)
        .map_err(|_| ProtocolError::length_overflow())?;
    if len > MAX_PAIR_LEN {
        return Err(ProtocolError::length_overflow());
    }
    Ok(Some((len, 4)))
}

fn parse_pair(buf: &[u8]) -> Result<Progress, ProtocolError> {
    let Some((name, name_field)) = read_len(buf)? else {
        return Ok(Progress::Need(len_size(buf)));
    };
    let rest = buf.get(name_field..).unwrap_or_default();
    let Some((value, value_field)) = read_len(rest)? else {
        return Ok(Progress::Need(name_field + len_size(rest)));
    };
    let header = name_field + value_field;
    let total = header
        .checked_add(name)
        .and_then(|n| n.checked_add(value))
        .ok_or_else(ProtocolError::length_overflow)?;
    if buf.len() < total {
        Ok(Progress::Need(total))
    } else {
        Ok(Progress::Pair {
            header,
            name,
            value,
        })
    }
}

/// Incremental decoder for a stream of name-value pairs.
///
/// Feed it each record's content with [`push`](Self::push), in order, then
/// call [`finish`](Self::finish) at the end of the stream. A pair may be split
/// across any number of pushes. A stream that arrives in one push is kept as
/// it is, its pairs found by offset without copying; one that arrives in
/// several is copied together (once, bounded by the byte cap). The total
/// number of bytes and of pairs is capped, and a pair whose announced
/// lengths cannot fit under the byte cap is refused as soon as its lengths
/// are known.
#[derive(Debug)]
pub struct ParamsDecoder {
    /// The stream, while it came in one push.
    first: Bytes,
    /// The stream, once it came in more than one push.
    joined: BytesMut,
    /// Where in the stream the next pair begins.
    at: usize,
    /// How many bytes from `at` the stream must hold before the next pair
    /// can be taken.
    need: usize,
    received: usize,
    max_len: usize,
    max_count: usize,
    spans: Vec<[u32; 4]>,
    noted: Noted,
}

impl ParamsDecoder {
    /// A decoder that accepts at most `max_len` bytes holding at most
    /// `max_count` pairs.
    pub fn new(max_len: usize, max_count: usize) -> ParamsDecoder {
        ParamsDecoder {
            first: Bytes::new(),
            joined: BytesMut::new(),
            at: 0,
            need: 0,
            received: 0,
            // Offsets into the stream are kept as `u32`, under 2^31 (what
            // an environ takes as they are).
            max_len: max_len.min(i32::MAX as usize),
            max_count,
            spans: Vec::new(),
            noted: Noted::default(),
        }
    }

    /// Decodes the pairs completed by the next piece of the stream.
    ///
    /// # Errors
    ///
    /// Over the byte or pair cap, or a 4-byte length of 2^31-1 or more. The
    /// decoder must not be used after an error.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), ProtocolError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.received = self.received.saturating_add(chunk.len());
        if self.received > self.max_len {
            return Err(ProtocolError::params_too_large(self.max_len));
        }
        if self.received == chunk.len() {
            // The first piece (or only empty ones before it).
            self.first = chunk;
            let first = std::mem::take(&mut self.first);
            let result = self.drain(&first);
            self.first = first;
            return result;
        }
        if !self.first.is_empty() {
            // A second piece: the stream is copied together from now on.
            self.joined.reserve(self.first.len() + chunk.len());
            self.joined.extend_from_slice(&self.first);
            self.first = Bytes::new();
        }
        self.joined.extend_from_slice(&chunk);
        if self.joined.len() - self.at >= self.need {
            let joined = std::mem::take(&mut self.joined);
            let result = self.drain(&joined);
            self.joined = joined;
            return result;
        }
        Ok(())
    }

    /// Adds the pair of `src` whose name starts at `name_at` and whose
    /// value lies from `value_at` to `end` (within `src`, which is no longer
    /// than `max_len`, so the offsets fit in a `u32`), unless the list is
    /// full.
    #[inline]
    fn take_pair(
        &mut self,
        src: &[u8],
        name_at: usize,
        value_at: usize,
        end: usize,
    ) -> Result<(), ProtocolError> {
        if self.spans.len() >= self.max_count {
            return Err(ProtocolError::too_many_params(self.max_count));
        }
        let offset = |n: usize| n as u32;
        self.noted.note(
            src.get(name_at..value_at).unwrap_or_default(),
            [offset(value_at), offset(end)],
        );
        self.spans.push([
            offset(name_at),
            offset(value_at),
            offset(value_at),
            offset(end),
        ]);
        Ok(())
    }

    /// Takes every complete pair of `src` (the stream so far) from `at`
    /// on.
    fn drain(&mut self, src: &[u8]) -> Result<(), ProtocolError> {
        // Room for the pairs `src` likely holds (web servers' pairs average
        // 20 to 40 bytes), so a request's parameters are not regrown pair by
        // pair.
        let rest_len = src.len().saturating_sub(self.at);
        let likely = (rest_len / 16).min(self.max_count.saturating_sub(self.spans.len()));
        if self.spans.capacity() == 0 {
            // The list the last request's environ left on this thread.
            self.spans = gateway_core::Environ::span_list(likely);
        } else {
            self.spans.reserve(likely);
        }
        let mut at = self.at;
        let result = loop {
            let rest = src.get(at..).unwrap_or_default();
            // The usual pair, both lengths in their one-byte form, read
            // without the general parse.
            if let [name, value, ..] = *rest
                && (name | value) & 0x80 == 0
            {
                let name_at = at + 2;
                let value_at = name_at + usize::from(name);
                let end = value_at + usize::from(value);
                if end <= src.len() {
                    if let Err(e) = self.take_pair(src, name_at, value_at, end) {
                        break Err(e);
                    }
                    at = end;
                    continue;
                }
            }
            match parse_pair(rest) {
                Err(e) => break Err(e),
                Ok(Progress::Need(need)) => {
                    // A pair has begun that cannot end under the cap.
                    if !rest.is_empty() && at.saturating_add(need) > self.max_len {
                        break Err(ProtocolError::params_too_large(self.max_len));
                    }
                    self.need = need;
                    break Ok(());
                }
                Ok(Progress::Pair {
                    header,
                    name,
                    value,
                }) => {
                    // `parse_pair` checked that the pair lies within `rest`.
                    let name_at = at + header;
                    let value_at = name_at + name;
                    let end = value_at + value;
                    if let Err(e) = self.take_pair(src, name_at, value_at, end) {
                        break Err(e);
                    }
                    at = end;
                }
            }
        };
        self.at = at;
        result
    }

    /// Ends the stream and returns the pairs.
    ///
    /// # Errors
    ///
    /// The stream stopped inside a pair.
    pub fn finish(self) -> Result<Params, ProtocolError> {
        if self.at != self.received {
            return Err(ProtocolError::truncated_pair());
        }
        let buf = if self.joined.is_empty() {
            self.first
        } else {
            self.joined.freeze()
        };
        Ok(Params {
            buf,
            spans: self.spans,
            noted: self.noted,
        })
    }
}

/// Decodes a complete block of pairs, such as one `FCGI_GET_VALUES` record.
///
/// # Errors
///
/// As for [`ParamsDecoder::push`] and [`ParamsDecoder::finish`].
pub fn decode_pairs(
    content: Bytes,
    max_len: usize,
    max_count: usize,
) -> Result<Params, ProtocolError> {
    let mut decoder = ParamsDecoder::new(max_len, max_count);
    decoder.push(content)?;
    decoder.finish()
}

/// Size of one length field for a length.
fn field_len(len: usize) -> usize {
    if len < 0x80 { 1 } else { 4 }
}

/// Bytes `encode_pair` writes for this pair.
pub fn encoded_len(name: &[u8], value: &[u8]) -> usize {
    field_len(name.len()) + field_len(value.len()) + name.len() + value.len()
}

fn put_len(dst: &mut BytesMut, len: usize) {
    match (u8::try_from(len), u32::try_from(len)) {
        (Ok(short), _) if short < 0x80 => dst.put_u8(short),
        (_, Ok(long)) => dst.put_u32(long | 0x8000_0000),
        // Unreachable: `encode_pair` checked `len <= MAX_PAIR_LEN`.
        _ => {}
    }
}

/// Appends one name-value pair, choosing the short length form where it fits.
///
/// # Errors
///
/// A name or value of 2^31-1 bytes or more (nothing is written then).
pub fn encode_pair(dst: &mut BytesMut, name: &[u8], value: &[u8]) -> Result<(), ProtocolError> {
    if name.len() > MAX_PAIR_LEN || value.len() > MAX_PAIR_LEN {
        return Err(ProtocolError::length_overflow());
    }
    dst.reserve(encoded_len(name, value));
    put_len(dst, name.len());
    put_len(dst, value.len());
    dst.put_slice(name);
    dst.put_slice(value);
    Ok(())
}

/// Appends a whole `FCGI_PARAMS` stream for a request, as a web server sends
/// it: the pairs in as many records as needed, then the empty record.
///
/// # Errors
///
/// As for [`encode_pair`]; nothing is written then.
pub fn encode_params<I, N, V>(
    dst: &mut BytesMut,
    request_id: u16,
    pairs: I,
) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut block = BytesMut::new();
    for (name, value) in pairs {
        encode_pair(&mut block, name.as_ref(), value.as_ref())?;
    }
    encode_stream(dst, RecordType::Params, request_id, &block);
    encode_stream_end(dst, RecordType::Params, request_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 1 << 20;

    /// The first CONTENT_LENGTH and the presence of FCGI_ROLE are noted
    /// however the stream arrives (in one piece, a byte at a time, with
    /// long lengths) and however the list is made.
    #[test]
    fn length_and_role_noted() {
        let long = vec![b'v'; 200];
        let list: &[(&[u8], &[u8])] = &[
            (b"CONTENT_LENGTHX", b"1"),
            (b"CONTENT_LENGTH", b"12"),
            (b"X", &long),
            (b"CONTENT_LENGTH", b"34"),
            (b"FCGI_ROLE", b"RESPONDER"),
        ];
        let stream = block(list);
        let whole = decode_pairs(stream.clone(), BIG, 100).unwrap();
        let mut decoder = ParamsDecoder::new(BIG, 100);
        for i in 0..stream.len() {
            decoder.push(stream.slice(i..i + 1)).unwrap();
        }
        let bytewise = decoder.finish().unwrap();
        let pushed = Params::from_pairs(list.iter().copied()).unwrap();
        for params in [&whole, &bytewise, &pushed] {
            assert_eq!(params.length_and_role(), (Some(&b"12"[..]), true));
        }
        let none = decode_pairs(block(&[(b"FCGI_ROLEX", b"")]), BIG, 100).unwrap();
        assert_eq!(none.length_and_role(), (None, false));
    }

    fn pairs(params: &Params) -> Vec<(&[u8], &[u8])> {
        params.iter().collect()
    }

    fn block(list: &[(&[u8], &[u8])]) -> Bytes {
        let mut buf = BytesMut::new();
        for (name, value) in list {
            encode_pair(&mut buf, name, value).unwrap();
        }
        buf.freeze()
    }

    fn decode_in_pieces(pieces: &[&[u8]]) -> Result<Params, ProtocolError> {
        let mut decoder = ParamsDecoder::new(BIG, 1000);
        for piece in pieces {
            decoder.push(Bytes::copy_from_slice(piece))?;
        }
        decoder.finish()
    }

    /// Name "X" with a 200-byte value: a 1-byte then a 4-byte length.
    #[test]
    fn vector_x_200_f3() {
        let value = vec![b'v'; 200];
        let encoded = block(&[(b"X", &value)]);
        assert_eq!(&encoded[..6], b"\x01\x80\x00\x00\xc8\x58");
        assert_eq!(&encoded[6..], &value[..]);
        assert_eq!(encoded.len(), encoded_len(b"X", &value));
        let params = decode_pairs(encoded, BIG, 10).unwrap();
        assert_eq!(pairs(&params), [(&b"X"[..], &value[..])]);
    }

    /// All four length combinations (11, 14, 41, 44), plus a long form
    /// used for a short length, which is also valid.
    #[test]
    fn four_length_combinations_f3() {
        let long_name = vec![b'N'; 200];
        let long_value = vec![b'V'; 300];
        let list: [(&[u8], &[u8]); 4] = [
            (b"abc", b"de"),
            (b"abc", &long_value),
            (&long_name, b"de"),
            (&long_name, &long_value),
        ];
        let encoded = block(&list);
        assert_eq!(&encoded[..2], b"\x03\x02");
        assert_eq!(&encoded[7..12], b"\x03\x80\x00\x01\x2c");
        let params = decode_pairs(encoded, BIG, 10).unwrap();
        assert_eq!(pairs(&params), list);

        let non_canonical = Bytes::from_static(b"\x80\x00\x00\x01\x80\x00\x00\x00a");
        let params = decode_pairs(non_canonical, BIG, 10).unwrap();
        assert_eq!(pairs(&params), [(&b"a"[..], &b""[..])]);
    }

    /// Spec example B.2, a pair split across two records.
    #[test]
    fn spec_example_b2_split_across_records_f3() {
        let params = decode_in_pieces(&[
            b"\x0b\x02SERVER_PORT80\x0b\x0eSER",
            b"VER_ADDR199.170.183.42",
        ])
        .unwrap();
        assert_eq!(
            pairs(&params),
            [
                (&b"SERVER_PORT"[..], &b"80"[..]),
                (&b"SERVER_ADDR"[..], &b"199.170.183.42"[..]),
            ]
        );
        assert_eq!(params.get(b"SERVER_ADDR").unwrap(), b"199.170.183.42");
    }

    #[test]
    fn empty_names_and_values_and_duplicates() {
        let params =
            decode_pairs(Bytes::from_static(b"\x00\x00\x01\x00A\x01\x01AB"), BIG, 10).unwrap();
        assert_eq!(
            pairs(&params),
            [(&b""[..], &b""[..]), (b"A", b""), (b"A", b"B")]
        );
        assert_eq!(params.get(b"A").unwrap(), b"");
        assert!(decode_pairs(Bytes::new(), BIG, 10).unwrap().is_empty());
    }

    /// Every split point, every single byte: the same pairs.
    #[test]
    fn split_input() {
        let long_name = vec![b'n'; 130];
        let long_value = vec![b'w'; 1000];
        let encoded = block(&[
            (b"SERVER_PORT", b"80"),
            (b"", b""),
            (&long_name, b"x"),
            (b"Q", &long_value),
            (&long_name, &long_value),
            (b"LAST", b""),
        ]);
        let whole = decode_in_pieces(&[&encoded]).unwrap();
        assert_eq!(whole.len(), 6);
        for cut in 0..=encoded.len() {
            let split = decode_in_pieces(&[&encoded[..cut], &encoded[cut..]]).unwrap();
            assert_eq!(split, whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = encoded.chunks(1).collect();
        assert_eq!(decode_in_pieces(&bytes).unwrap(), whole);
        let threes: Vec<&[u8]> = encoded.chunks(3).collect();
        assert_eq!(decode_in_pieces(&threes).unwrap(), whole);
    }

    /// The pair cap holds for pairs with one-byte and with four-byte
    /// lengths, whole in one push or split across pushes.
    #[test]
    fn pair_cap() {
        let long = [b'v'; 200];
        for pairs in [
            [(&b"A"[..], &b"1"[..]), (b"B", b"2"), (b"C", b"3")],
            [(b"A", &long[..]), (b"B", &long[..]), (b"C", &long[..])],
        ] {
            let encoded = block(&pairs);
            assert_eq!(decode_pairs(encoded.clone(), BIG, 3).unwrap().len(), 3);
            let err = decode_pairs(encoded.clone(), BIG, 2).unwrap_err();
            assert_eq!(
                err.to_string(),
                ProtocolError::too_many_params(2).to_string()
            );
            let bytes: Vec<&[u8]> = encoded.chunks(1).collect();
            let mut decoder = ParamsDecoder::new(BIG, 2);
            let failed = bytes
                .iter()
                .any(|b| decoder.push(Bytes::copy_from_slice(b)).is_err());
            assert!(failed);
        }
    }

    /// Pairs wholly inside one push share its buffer instead of being copied.
    #[test]
    fn whole_pairs_are_not_copied() {
        let encoded = block(&[(b"NAME", b"value")]);
        let params = decode_pairs(encoded.clone(), BIG, 10).unwrap();
        let (name, value) = params.iter().next().unwrap();
        assert_eq!(name.as_ptr(), encoded[2..].as_ptr());
        assert_eq!(value.as_ptr(), encoded[6..].as_ptr());
    }

    /// The stream ends inside a pair.
    #[test]
    fn truncated_pair_b2() {
        let encoded = block(&[(b"NAME", b"value")]);
        for cut in 1..encoded.len() {
            let err = decode_pairs(encoded.slice(..cut), BIG, 10).unwrap_err();
            assert!(err.is_truncated(), "cut at {cut}: {err}");
        }
        let err = decode_pairs(Bytes::from_static(b"\x80\x00"), BIG, 10).unwrap_err();
        assert!(err.is_truncated());
    }

    /// A 4-byte length of 2^31-1 is refused (whatever the cap), also
    /// when the top bit is the only thing making it so.
    #[test]
    fn length_of_two_to_the_31_minus_one_b2() {
        for wire in [
            &b"\xff\xff\xff\xff\x00"[..],
            b"\x01\xff\xff\xff\xffN",
            b"\x7f\xff\xff\xff\xff",
        ] {
            let mut decoder = ParamsDecoder::new(usize::MAX, usize::MAX);
            let err = decoder.push(Bytes::copy_from_slice(wire)).unwrap_err();
            assert!(err.is_too_large(), "{err}");
        }
        // One less is a legal length, refused by the byte cap instead.
        let mut decoder = ParamsDecoder::new(BIG, 10);
        let err = decoder
            .push(Bytes::from_static(b"\xff\xff\xff\xfe\x00"))
            .unwrap_err();
        assert!(err.is_too_large());
        assert_eq!(
            err.to_string(),
            "name-value pairs over the 1048576-byte limit"
        );
    }

    /// The byte cap counts every byte and refuses a pair as soon as its
    /// lengths show it cannot fit.
    #[test]
    fn byte_cap_b2() {
        let encoded = block(&[(b"NAME", b"value"), (b"N2", b"v2")]);
        let exact = encoded.len();
        assert!(decode_pairs(encoded.clone(), exact, 10).is_ok());
        assert!(
            decode_pairs(encoded.clone(), exact - 1, 10)
                .unwrap_err()
                .is_too_large()
        );

        let mut decoder = ParamsDecoder::new(100, 10);
        decoder.push(Bytes::from_static(b"\x04")).unwrap();
        let err = decoder
            .push(Bytes::from_static(b"\x80\x00\x00\x60"))
            .unwrap_err();
        assert!(err.is_too_large());
    }

    #[test]
    fn pair_count_cap() {
        let encoded = Bytes::from_static(b"\x00\x00\x00\x00\x00\x00");
        assert_eq!(decode_pairs(encoded.clone(), BIG, 3).unwrap().len(), 3);
        let err = decode_pairs(encoded, BIG, 2).unwrap_err();
        assert!(err.is_too_large());
        assert_eq!(err.to_string(), "more than 2 name-value pairs");
    }

    /// Many one-byte pushes of one large value stay linear: the decoder only
    /// retries once the announced pair length is in.
    #[test]
    fn one_byte_pushes_of_a_large_value() {
        let value = vec![b'v'; 200_000];
        let encoded = block(&[(b"V", &value)]);
        let mut decoder = ParamsDecoder::new(BIG, 10);
        for byte in encoded.chunks(1) {
            decoder.push(Bytes::copy_from_slice(byte)).unwrap();
        }
        let params = decoder.finish().unwrap();
        assert_eq!(params.get(b"V").map(<[u8]>::len), Some(200_000));
    }

    #[test]
    fn encode_params_stream() {
        let mut out = BytesMut::new();
        encode_params(&mut out, 1, [("A", "1"), ("BB", "")]).unwrap();
        assert_eq!(
            &out[..],
            b"\x01\x04\x00\x01\x00\x08\x00\x00\x01\x01A1\x02\x00BB\
              \x01\x04\x00\x01\x00\x00\x00\x00"
        );
        let mut out = BytesMut::new();
        encode_params(&mut out, 1, Vec::<(&str, &str)>::new()).unwrap();
        assert_eq!(&out[..], b"\x01\x04\x00\x01\x00\x00\x00\x00");
    }

    #[test]
    fn params_collection() {
        let mut params = Params::from_pairs([("a", "1"), ("b", "2")]).unwrap();
        params.push("a", "3").unwrap();
        assert_eq!(params.len(), 3);
        assert_eq!(params.get(b"a").unwrap(), b"1");
        assert_eq!(params.get(b"zz"), None);
        let names: Vec<&[u8]> = (&params).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [b"a", b"b", b"a"]);
        assert_eq!(params.into_vec().len(), 3);
    }
}

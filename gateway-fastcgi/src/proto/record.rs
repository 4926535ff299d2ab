//! Records: the framing of FastCGI 1.0 (spec §3.3, constants from §8).
//!
//! Every record starts with an 8-byte header, followed by the content and
//! then padding that the receiver skips:
//!
//! ```text
//!  byte   0         1        2         3         4          5          6          7
//!       +---------+--------+---------+---------+----------+----------+----------+----------+
//!       | version |  type  |  requestId (BE)   | contentLength (BE)  | padding  | reserved |
//!       |  = 1    |        |  B1     |  B0     |    B1    |    B0    |  Length  |          |
//!       +---------+--------+---------+---------+----------+----------+----------+----------+
//!       | content: contentLength bytes (0..=65535)                                        |
//!       +---------------------------------------------------------------------------------+
//!       | padding: paddingLength bytes (0..=255), contents unspecified                    |
//!       +---------------------------------------------------------------------------------+
//! ```
//!
//! [`decode`] takes complete records off the front of a buffer, whatever way
//! the bytes were split on the way in; the encoders live in
//! [`encode`](super::encode).

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::error::ProtocolError;

/// File descriptor on which a web server hands the application its listening
/// socket (§2.2).
pub const FCGI_LISTENSOCK_FILENO: i32 = 0x0;

/// Number of bytes in a record header (§8).
pub const FCGI_HEADER_LEN: usize = 0x08;

/// The only protocol version there is; any other value is an error (§3.3).
pub const FCGI_VERSION_1: u8 = 0x01;

/// Record type: the web server starts a request (§5.1).
pub const FCGI_BEGIN_REQUEST: u8 = 0x01;
/// Record type: the web server aborts a request (§5.4).
pub const FCGI_ABORT_REQUEST: u8 = 0x02;
/// Record type: the application finished a request (§5.5).
pub const FCGI_END_REQUEST: u8 = 0x03;
/// Record type: stream of name-value pairs for a request (§5.2).
pub const FCGI_PARAMS: u8 = 0x04;
/// Record type: the request body stream (§5.3).
pub const FCGI_STDIN: u8 = 0x05;
/// Record type: the response stream (§5.3).
pub const FCGI_STDOUT: u8 = 0x06;
/// Record type: the error stream (§5.3).
pub const FCGI_STDERR: u8 = 0x07;
/// Record type: the Filter role's file data stream (§5.3, §6.4).
pub const FCGI_DATA: u8 = 0x08;
/// Record type: management query for variables (§4.1).
pub const FCGI_GET_VALUES: u8 = 0x09;
/// Record type: answer to [`FCGI_GET_VALUES`] (§4.1).
pub const FCGI_GET_VALUES_RESULT: u8 = 0x0a;
/// Record type: answer to a management record the application does not know (§4.2).
pub const FCGI_UNKNOWN_TYPE: u8 = 0x0b;
/// The highest record type FastCGI 1.0 defines.
pub const FCGI_MAXTYPE: u8 = FCGI_UNKNOWN_TYPE;

/// Request id of management records (§3.3).
pub const FCGI_NULL_REQUEST_ID: u16 = 0x0000;

/// `FCGI_BEGIN_REQUEST` flag: keep the connection open after the request (§5.1).
pub const FCGI_KEEP_CONN: u8 = 0x01;

/// Role: answer HTTP requests, like CGI (§6.2).
pub const FCGI_RESPONDER: u16 = 0x0001;
/// Role: decide whether a request is authorised (§6.3).
pub const FCGI_AUTHORIZER: u16 = 0x0002;
/// Role: like Responder, with an extra data file to filter (§6.4).
pub const FCGI_FILTER: u16 = 0x0003;

/// Protocol status: normal end of request (§5.5).
pub const FCGI_REQUEST_COMPLETE: u8 = 0x00;
/// Protocol status: a second request on a connection that does not multiplex (§5.5).
pub const FCGI_CANT_MPX_CONN: u8 = 0x01;
/// Protocol status: the application is out of a resource (§5.5).
pub const FCGI_OVERLOADED: u8 = 0x02;
/// Protocol status: the role is not one the application plays (§5.5).
pub const FCGI_UNKNOWN_ROLE: u8 = 0x03;

/// `FCGI_GET_VALUES` variable: maximum concurrent transport connections (§4.1).
pub const FCGI_MAX_CONNS: &[u8] = b"FCGI_MAX_CONNS";
/// `FCGI_GET_VALUES` variable: maximum concurrent requests (§4.1).
pub const FCGI_MAX_REQS: &[u8] = b"FCGI_MAX_REQS";
/// `FCGI_GET_VALUES` variable: `"1"` if connections are multiplexed, else `"0"` (§4.1).
pub const FCGI_MPXS_CONNS: &[u8] = b"FCGI_MPXS_CONNS";

/// Most content bytes one record can carry (the `contentLength` field is a `u16`).
pub const MAX_CONTENT_LEN: usize = 0xffff;

/// Largest possible record: header, maximal content and maximal padding.
///
/// [`decode`] never needs more than this many buffered bytes to make progress.
pub const MAX_RECORD_LEN: usize = FCGI_HEADER_LEN + MAX_CONTENT_LEN + 0xff;

/// A record type (the header's `type` byte).
///
/// Built from a byte with `From<u8>`, which maps the eleven defined values to
/// their variants and everything else to [`Other`](RecordType::Other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// `FCGI_BEGIN_REQUEST` (1).
    BeginRequest,
    /// `FCGI_ABORT_REQUEST` (2).
    AbortRequest,
    /// `FCGI_END_REQUEST` (3).
    EndRequest,
    /// `FCGI_PARAMS` (4).
    Params,
    /// `FCGI_STDIN` (5).
    Stdin,
    /// `FCGI_STDOUT` (6).
    Stdout,
    /// `FCGI_STDERR` (7).
    Stderr,
    /// `FCGI_DATA` (8).
    Data,
    /// `FCGI_GET_VALUES` (9).
    GetValues,
    /// `FCGI_GET_VALUES_RESULT` (10).
    GetValuesResult,
    /// `FCGI_UNKNOWN_TYPE` (11).
    UnknownType,
    /// A type byte FastCGI 1.0 does not define (0, or 12 and above).
    Other(u8),
}

impl RecordType {
    /// Whether records of this type form a stream that ends with an empty
    /// record (§3.3): `FCGI_PARAMS`, `FCGI_STDIN`, `FCGI_STDOUT`,
    /// `FCGI_STDERR` and `FCGI_DATA`.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            RecordType::Params
                | RecordType::Stdin
                | RecordType::Stdout
                | RecordType::Stderr
                | RecordType::Data
        )
    }

    /// Whether this is one of the application record types (1 to 8), which
    /// belong to a request and never travel on request id 0.
    pub fn is_application(self) -> bool {
        !matches!(
            self,
            RecordType::GetValues
                | RecordType::GetValuesResult
                | RecordType::UnknownType
                | RecordType::Other(_)
        )
    }
}

impl From<u8> for RecordType {
    fn from(byte: u8) -> Self {
        match byte {
            FCGI_BEGIN_REQUEST => RecordType::BeginRequest,
            FCGI_ABORT_REQUEST => RecordType::AbortRequest,
            FCGI_END_REQUEST => RecordType::EndRequest,
            FCGI_PARAMS => RecordType::Params,
            FCGI_STDIN => RecordType::Stdin,
            FCGI_STDOUT => RecordType::Stdout,
            FCGI_STDERR => RecordType::Stderr,
            FCGI_DATA => RecordType::Data,
            FCGI_GET_VALUES => RecordType::GetValues,
            FCGI_GET_VALUES_RESULT => RecordType::GetValuesResult,
            FCGI_UNKNOWN_TYPE => RecordType::UnknownType,
            other => RecordType::Other(other),
        }
    }
}

impl From<RecordType> for u8 {
    fn from(t: RecordType) -> u8 {
        match t {
            RecordType::BeginRequest => FCGI_BEGIN_REQUEST,
            RecordType::AbortRequest => FCGI_ABORT_REQUEST,
            RecordType::EndRequest => FCGI_END_REQUEST,
            RecordType::Params => FCGI_PARAMS,
            RecordType::Stdin => FCGI_STDIN,
            RecordType::Stdout => FCGI_STDOUT,
            RecordType::Stderr => FCGI_STDERR,
            RecordType::Data => FCGI_DATA,
            RecordType::GetValues => FCGI_GET_VALUES,
            RecordType::GetValuesResult => FCGI_GET_VALUES_RESULT,
            RecordType::UnknownType => FCGI_UNKNOWN_TYPE,
            RecordType::Other(byte) => byte,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            RecordType::BeginRequest => "FCGI_BEGIN_REQUEST",
            RecordType::AbortRequest => "FCGI_ABORT_REQUEST",
            RecordType::EndRequest => "FCGI_END_REQUEST",
            RecordType::Params => "FCGI_PARAMS",
            RecordType::Stdin => "FCGI_STDIN",
            RecordType::Stdout => "FCGI_STDOUT",
            RecordType::Stderr => "FCGI_STDERR",
            RecordType::Data => "FCGI_DATA",
            RecordType::GetValues => "FCGI_GET_VALUES",
            RecordType::GetValuesResult => "FCGI_GET_VALUES_RESULT",
            RecordType::UnknownType => "FCGI_UNKNOWN_TYPE",
            RecordType::Other(byte) => return write!(f, "record type {byte:#04x}"),
        };
        f.write_str(name)
    }
}

/// A record header, as on the wire (see the [module docs](self) for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version; [`FCGI_VERSION_1`] in every valid record.
    pub version: u8,
    /// Record type.
    pub record_type: RecordType,
    /// Request id; [`FCGI_NULL_REQUEST_ID`] for management records.
    pub request_id: u16,
    /// Number of content bytes after the header.
    pub content_length: u16,
    /// Number of padding bytes after the content.
    pub padding_length: u8,
}

impl Header {
    /// Reads a header from its 8 wire bytes. No field is validated.
    pub fn parse(bytes: &[u8; FCGI_HEADER_LEN]) -> Header {
        let [
            version,
            record_type,
            id1,
            id0,
            len1,
            len0,
            padding_length,
            _reserved,
        ] = *bytes;
        Header {
            version,
            record_type: RecordType::from(record_type),
            request_id: u16::from_be_bytes([id1, id0]),
            content_length: u16::from_be_bytes([len1, len0]),
            padding_length,
        }
    }

    /// The 8 wire bytes of this header (the reserved byte is 0).
    pub fn to_bytes(&self) -> [u8; FCGI_HEADER_LEN] {
        let [id1, id0] = self.request_id.to_be_bytes();
        let [len1, len0] = self.content_length.to_be_bytes();
        [
            self.version,
            self.record_type.into(),
            id1,
            id0,
            len1,
            len0,
            self.padding_length,
            0,
        ]
    }

    /// Total length of the record this header starts: header, content and padding.
    pub fn record_len(&self) -> usize {
        FCGI_HEADER_LEN + usize::from(self.content_length) + usize::from(self.padding_length)
    }
}

/// A decoded record: its type, request id and content, padding removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Record type.
    pub record_type: RecordType,
    /// Request id; [`FCGI_NULL_REQUEST_ID`] for management records.
    pub request_id: u16,
    /// Content bytes (at most [`MAX_CONTENT_LEN`] when decoded from the wire).
    pub content: Bytes,
}

impl Record {
    /// Creates a record.
    pub fn new(record_type: RecordType, request_id: u16, content: impl Into<Bytes>) -> Record {
        Record {
            record_type,
            request_id,
            content: content.into(),
        }
    }
}

/// Takes one complete record off the front of `buf`.
///
/// Returns `Ok(None)` while `buf` holds less than a whole record (header,
/// content and padding), leaving `buf` untouched apart from reserving room for
/// the rest, so bytes may arrive split anywhere. The padding is consumed and
/// dropped. Because a record is at most [`MAX_RECORD_LEN`] bytes, a caller that
/// calls `decode` until it returns `Ok(None)` never holds more than that many
/// undecoded bytes.
///
/// # Errors
///
/// A header whose version is not [`FCGI_VERSION_1`] (checked as soon as the 8
/// header bytes are in). The connection must then be closed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Record>, ProtocolError> {
    let Some(head) = buf.first_chunk::<FCGI_HEADER_LEN>() else {
        buf.reserve(FCGI_HEADER_LEN - buf.len());
        return Ok(None);
    };
    let header = Header::parse(head);
    if header.version != FCGI_VERSION_1 {
        return Err(ProtocolError::unsupported_version(header.version));
    }
    let total = header.record_len();
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let content = if header.content_length == 0 {
        // The end of a stream, most often: nothing to share with `buf`
        // (which splitting off would count a reference to).
        buf.advance(total);
        Bytes::new()
    } else {
        let mut record = buf.split_to(total);
        record.advance(FCGI_HEADER_LEN);
        record.truncate(usize::from(header.content_length));
        record.freeze()
    };
    Ok(Some(Record {
        record_type: header.record_type,
        request_id: header.request_id,
        content,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// STDIN record for request 1 with content "abc" and 5 padding bytes.
    const STDIN_ABC: &[u8] = b"\x01\x05\x00\x01\x00\x03\x05\x00abc\xff\xff\xff\xff\xff";

    fn decode_all(mut buf: BytesMut) -> (Vec<Record>, BytesMut) {
        let mut records = Vec::new();
        while let Some(record) = decode(&mut buf).unwrap() {
            records.push(record);
        }
        (records, buf)
    }

    #[test]
    fn constants_match_the_spec() {
        assert_eq!(
            [
                FCGI_BEGIN_REQUEST,
                FCGI_ABORT_REQUEST,
                FCGI_END_REQUEST,
                FCGI_PARAMS,
                FCGI_STDIN,
                FCGI_STDOUT,
                FCGI_STDERR,
                FCGI_DATA,
                FCGI_GET_VALUES,
                FCGI_GET_VALUES_RESULT,
                FCGI_UNKNOWN_TYPE,
            ],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        );
        assert_eq!(FCGI_MAXTYPE, 11);
        assert_eq!((FCGI_RESPONDER, FCGI_AUTHORIZER, FCGI_FILTER), (1, 2, 3));
        assert_eq!(
            (
                FCGI_REQUEST_COMPLETE,
                FCGI_CANT_MPX_CONN,
                FCGI_OVERLOADED,
                FCGI_UNKNOWN_ROLE
            ),
            (0, 1, 2, 3)
        );
        assert_eq!(MAX_RECORD_LEN, 65798);
    }

    #[test]
    fn record_type_round_trips_every_byte() {
        for byte in 0..=u8::MAX {
            let t = RecordType::from(byte);
            assert_eq!(u8::from(t), byte);
            assert_eq!(matches!(t, RecordType::Other(_)), byte == 0 || byte > 11);
            assert_eq!(t.is_application(), (1..=8).contains(&byte));
        }
        assert!(RecordType::Stdin.is_stream());
        assert!(!RecordType::BeginRequest.is_stream());
        assert_eq!(RecordType::Stdin.to_string(), "FCGI_STDIN");
        assert_eq!(RecordType::Other(0x0c).to_string(), "record type 0x0c");
    }

    #[test]
    fn header_layout_f2() {
        let header = Header::parse(b"\x01\x05\x12\x34\xab\xcd\x07\xee");
        assert_eq!(
            header,
            Header {
                version: 1,
                record_type: RecordType::Stdin,
                request_id: 0x1234,
                content_length: 0xabcd,
                padding_length: 7,
            }
        );
        assert_eq!(header.record_len(), 8 + 0xabcd + 7);
        assert_eq!(header.to_bytes(), *b"\x01\x05\x12\x34\xab\xcd\x07\x00");
    }

    /// The receiver skips the padding, whatever it contains.
    #[test]
    fn decode_skips_padding_f2() {
        let mut wire = BytesMut::from(STDIN_ABC);
        wire.extend_from_slice(b"\x01\x05\x00\x01\x00\x00\x00\x00");
        let (records, rest) = decode_all(wire);
        assert_eq!(
            records,
            [
                Record::new(RecordType::Stdin, 1, &b"abc"[..]),
                Record::new(RecordType::Stdin, 1, Bytes::new()),
            ]
        );
        assert!(rest.is_empty());
    }

    /// Every strict prefix decodes to nothing and is left untouched; feeding
    /// one byte at a time gives the same records as feeding all at once.
    #[test]
    fn decode_split_input() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(STDIN_ABC);
        wire.extend_from_slice(b"\x01\x04\x00\x02\x00\x02\x00\x00\x01\x00");
        wire.extend_from_slice(b"\x01\x09\x00\x00\x00\x00\x00\x00");
        let (whole, rest) = decode_all(wire.clone());
        assert_eq!(whole.len(), 3);
        assert!(rest.is_empty());

        let first_len = STDIN_ABC.len();
        for cut in 0..first_len {
            let mut prefix = BytesMut::from(&wire[..cut]);
            assert_eq!(decode(&mut prefix), Ok(None), "prefix of {cut} bytes");
            assert_eq!(&prefix[..], &wire[..cut]);
        }

        let mut buf = BytesMut::new();
        let mut bytewise = Vec::new();
        for byte in wire.iter() {
            buf.extend_from_slice(&[*byte]);
            while let Some(record) = decode(&mut buf).unwrap() {
                bytewise.push(record);
            }
        }
        assert_eq!(bytewise, whole);
        assert!(buf.is_empty());

        for cut in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut split = Vec::new();
            while let Some(record) = decode(&mut buf).unwrap() {
                split.push(record);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(record) = decode(&mut buf).unwrap() {
                split.push(record);
            }
            assert_eq!(split, whole, "split at {cut}");
        }
    }

    /// A version other than 1 is refused from the header alone, before
    /// any content arrives.
    #[test]
    fn unsupported_version_b1() {
        for version in [0, 2, 0xff] {
            let mut buf = BytesMut::from(&[version, 1, 0, 1, 0xff, 0xff, 0xff, 0][..]);
            let err = decode(&mut buf).unwrap_err();
            assert!(err.is_unsupported_version(), "{err}");
        }
        let mut partial = BytesMut::from(&b"\x02\x01\x00"[..]);
        assert_eq!(decode(&mut partial), Ok(None));
    }

    /// The largest record decodes; nothing short of it does.
    #[test]
    fn maximal_record_is_bounded() {
        let mut wire = BytesMut::from(&b"\x01\x05\x00\x01\xff\xff\xff\x00"[..]);
        wire.resize(MAX_RECORD_LEN, b'x');
        let mut short = BytesMut::from(&wire[..MAX_RECORD_LEN - 1]);
        assert_eq!(decode(&mut short), Ok(None));
        let (records, rest) = decode_all(wire);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].content.len(), MAX_CONTENT_LEN);
        assert!(rest.is_empty());
    }
}

//! Record encoders.
//!
//! Each function appends whole records to a `BytesMut`: header, content and
//! padding one after the other, so a record always goes out in one write
//! (some peers, such as `cgi-fcgi`, mishandle a header split across reads).
//! Content is padded to a multiple of 8 bytes, as nginx does; stream data over
//! [`MAX_CONTENT_LEN`] bytes is split into several records.

use bytes::{BufMut, BytesMut};

use super::body::{BeginRequestBody, EndRequestBody, ProtocolStatus};
use super::error::ProtocolError;
use super::record::{
    FCGI_HEADER_LEN, FCGI_NULL_REQUEST_ID, FCGI_VERSION_1, Header, MAX_CONTENT_LEN, RecordType,
};

/// Number of padding bytes that bring `content_len` to a multiple of 8.
pub fn padding_len(content_len: usize) -> u8 {
    // The result is in 0..=7, so the cast is exact.
    (content_len.wrapping_neg() & 7) as u8
}

/// Appends one record whose content the caller has checked to be at most
/// `MAX_CONTENT_LEN` bytes.
fn put_record(dst: &mut BytesMut, record_type: RecordType, request_id: u16, content: &[u8]) {
    debug_assert!(content.len() <= MAX_CONTENT_LEN);
    let content_length = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let padding_length = padding_len(content.len());
    let header = Header {
        version: FCGI_VERSION_1,
        record_type,
        request_id,
        content_length,
        padding_length,
    };
    dst.reserve(header.record_len());
    dst.put_slice(&header.to_bytes());
    dst.put_slice(content);
    dst.put_bytes(0, usize::from(padding_length));
}

/// Appends exactly one record with this content (which may be empty).
///
/// # Errors
///
/// Content over [`MAX_CONTENT_LEN`] bytes; nothing is written then.
pub fn encode_record(
    dst: &mut BytesMut,
    record_type: RecordType,
    request_id: u16,
    content: &[u8],
) -> Result<(), ProtocolError> {
    if content.len() > MAX_CONTENT_LEN {
        return Err(ProtocolError::content_too_long(content.len()));
    }
    put_record(dst, record_type, request_id, content);
    Ok(())
}

/// Appends `data` to a stream (`FCGI_STDOUT`, `FCGI_STDERR`, or on the client
/// side `FCGI_PARAMS`, `FCGI_STDIN`, `FCGI_DATA`) as as many records as it
/// takes, each with at most [`MAX_CONTENT_LEN`] content bytes.
///
/// Empty `data` writes **nothing**: an empty record would end the stream.
/// Use [`encode_stream_end`] for that.
pub fn encode_stream(dst: &mut BytesMut, record_type: RecordType, request_id: u16, data: &[u8]) {
    let records = data.len().div_ceil(MAX_CONTENT_LEN);
    dst.reserve(data.len() + records * (FCGI_HEADER_LEN + 7));
    for chunk in data.chunks(MAX_CONTENT_LEN) {
        put_record(dst, record_type, request_id, chunk);
    }
}

/// Appends the empty record that ends a stream (§3.3).
pub fn encode_stream_end(dst: &mut BytesMut, record_type: RecordType, request_id: u16) {
    put_record(dst, record_type, request_id, &[]);
}

/// Appends an `FCGI_END_REQUEST` record (§5.5).
///
/// For request 1 with status 0 and [`ProtocolStatus::RequestComplete`] this is
/// `01 03 00 01 00 08 00 00 00 00 00 00 00 00 00 00`.
pub fn encode_end_request(
    dst: &mut BytesMut,
    request_id: u16,
    app_status: u32,
    protocol_status: ProtocolStatus,
) {
    let body = EndRequestBody {
        app_status,
        protocol_status: protocol_status.as_u8(),
    };
    put_record(dst, RecordType::EndRequest, request_id, &body.to_bytes());
}

/// Appends an `FCGI_UNKNOWN_TYPE` record naming the management record type
/// the application did not understand (§4.2):
/// `01 0b 00 00 00 08 00 00 | T 00 00 00 00 00 00 00`.
pub fn encode_unknown_type(dst: &mut BytesMut, record_type: u8) {
    put_record(
        dst,
        RecordType::UnknownType,
        FCGI_NULL_REQUEST_ID,
        &[record_type, 0, 0, 0, 0, 0, 0, 0],
    );
}

/// Appends an `FCGI_BEGIN_REQUEST` record (§5.1), as a web server sends it.
///
/// `role` is a wire value so that clients can also send roles this crate does
/// not know; pass `Role::Responder.into()` for the usual one.
pub fn encode_begin_request(dst: &mut BytesMut, request_id: u16, role: u16, flags: u8) {
    let body = BeginRequestBody { role, flags };
    put_record(dst, RecordType::BeginRequest, request_id, &body.to_bytes());
}

/// Appends an `FCGI_ABORT_REQUEST` record (§5.4), as a web server sends it.
pub fn encode_abort_request(dst: &mut BytesMut, request_id: u16) {
    put_record(dst, RecordType::AbortRequest, request_id, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::record::{MAX_RECORD_LEN, Record, decode};
    use bytes::Bytes;

    fn decode_all(mut buf: BytesMut) -> Vec<Record> {
        let mut records = Vec::new();
        while let Some(record) = decode(&mut buf).unwrap() {
            records.push(record);
        }
        assert!(buf.is_empty(), "trailing bytes");
        records
    }

    #[test]
    fn padding_to_a_multiple_of_eight_f2() {
        let expected = [0, 7, 6, 5, 4, 3, 2, 1, 0, 7];
        for (len, pad) in expected.iter().enumerate() {
            assert_eq!(padding_len(len), *pad, "len {len}");
        }
        assert_eq!(padding_len(MAX_CONTENT_LEN), 1);
    }

    /// Header, content and padding are contiguous; the padding is zeros.
    #[test]
    fn stdout_record_bytes_f2() {
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stdout, 1, b"Status: 200 OK\r\n");
        assert_eq!(
            &out[..],
            b"\x01\x06\x00\x01\x00\x10\x00\x00Status: 200 OK\r\n"
        );
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stderr, 0x0102, b"oops");
        assert_eq!(&out[..], b"\x01\x07\x01\x02\x00\x04\x04\x00oops\0\0\0\0");
    }

    /// An empty chunk writes no record at all; only the explicit end
    /// marker is an empty record.
    #[test]
    fn empty_chunk_writes_nothing_b9() {
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stdout, 1, b"");
        assert!(out.is_empty());
        encode_stream_end(&mut out, RecordType::Stdout, 1);
        assert_eq!(&out[..], b"\x01\x06\x00\x01\x00\x00\x00\x00");
    }

    /// A chunk over 65535 bytes becomes several records, each at
    /// most 65535 content bytes and padded to a multiple of 8.
    #[test]
    fn large_chunk_is_split_b9() {
        let data: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stdout, 7, &data);
        assert_eq!(out.len() % 8, 0);
        // Record boundaries: 65535 + 1 pad, twice, then 18930 + 6 pad.
        assert_eq!(&out[..8], b"\x01\x06\x00\x07\xff\xff\x01\x00");
        assert_eq!(&out[65544..65552], b"\x01\x06\x00\x07\xff\xff\x01\x00");
        assert_eq!(&out[131088..131096], b"\x01\x06\x00\x07\x49\xf2\x06\x00");
        let records = decode_all(out);
        assert_eq!(records.len(), 3);
        let joined: Vec<u8> = records.iter().flat_map(|r| r.content.to_vec()).collect();
        assert_eq!(joined, data);
        assert!(
            records
                .iter()
                .all(|r| r.request_id == 7 && r.record_type == RecordType::Stdout)
        );
    }

    #[test]
    fn exact_multiple_of_max_content() {
        let data = vec![b'z'; 2 * MAX_CONTENT_LEN];
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stdout, 1, &data);
        assert_eq!(out.len(), 2 * (MAX_CONTENT_LEN + 9));
        assert!(out.len() / 2 <= MAX_RECORD_LEN);
        assert_eq!(decode_all(out).len(), 2);
    }

    #[test]
    fn encode_record_refuses_oversized_content() {
        let mut out = BytesMut::new();
        let big = vec![0; MAX_CONTENT_LEN + 1];
        let err = encode_record(&mut out, RecordType::GetValuesResult, 0, &big).unwrap_err();
        assert!(err.is_too_large());
        assert!(out.is_empty());
        encode_record(&mut out, RecordType::GetValuesResult, 0, &big[1..]).unwrap();
        assert_eq!(out.len(), MAX_CONTENT_LEN + 9);
    }

    /// The normal end of request 1.
    #[test]
    fn end_request_bytes_f11() {
        let mut out = BytesMut::new();
        encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
        assert_eq!(
            &out[..],
            b"\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        );
        let mut out = BytesMut::new();
        encode_end_request(&mut out, 0x0203, 0x0a0b0c0d, ProtocolStatus::Overloaded);
        assert_eq!(
            &out[..],
            b"\x01\x03\x02\x03\x00\x08\x00\x00\x0a\x0b\x0c\x0d\x02\x00\x00\x00"
        );
    }

    /// Libfcgi's refusal of a second request on a connection.
    #[test]
    fn cant_mpx_conn_bytes_f9() {
        let mut out = BytesMut::new();
        encode_end_request(&mut out, 2, 0, ProtocolStatus::CantMpxConn);
        assert_eq!(
            &out[..],
            b"\x01\x03\x00\x02\x00\x08\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00"
        );
    }

    /// The answer to an unknown management record type.
    #[test]
    fn unknown_type_bytes_f5() {
        for t in [0u8, 0x0c, 0x42, 0xff] {
            let mut out = BytesMut::new();
            encode_unknown_type(&mut out, t);
            let mut expected = b"\x01\x0b\x00\x00\x00\x08\x00\x00".to_vec();
            expected.extend_from_slice(&[t, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(&out[..], &expected[..]);
        }
    }

    #[test]
    fn client_side_records() {
        let mut out = BytesMut::new();
        encode_begin_request(&mut out, 1, 1, 1);
        encode_abort_request(&mut out, 1);
        assert_eq!(
            &out[..],
            b"\x01\x01\x00\x01\x00\x08\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\
              \x01\x02\x00\x01\x00\x00\x00\x00"
        );
        let records = decode_all(out);
        assert_eq!(
            records[1],
            Record::new(RecordType::AbortRequest, 1, Bytes::new())
        );
    }
}

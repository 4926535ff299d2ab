//! The `tokio_util::codec` adapter and the crate error type.

use std::error::Error as _;
use std::io;

use bytes::{Bytes, BytesMut};
use gateway_fastcgi::Error;
use gateway_fastcgi::codec::RecordCodec;
use gateway_fastcgi::proto::{MAX_CONTENT_LEN, Record, RecordType};
use tokio_util::codec::{Decoder, Encoder};

fn encode(record: Record) -> Result<BytesMut, Error> {
    let mut buf = BytesMut::new();
    RecordCodec::new().encode(record, &mut buf)?;
    Ok(buf)
}

fn decode_all(codec: &mut RecordCodec, buf: &mut BytesMut) -> Vec<Record> {
    let mut records = Vec::new();
    while let Some(record) = codec.decode(buf).unwrap() {
        records.push(record);
    }
    records
}

/// Split input: every prefix, then one byte at a time.
#[test]
fn decoder_split_input() {
    let mut wire = encode(Record::new(RecordType::Stdin, 1, &b"hello"[..])).unwrap();
    wire.extend_from_slice(&encode(Record::new(RecordType::Stdin, 1, Bytes::new())).unwrap());
    let whole = decode_all(&mut RecordCodec::new(), &mut wire.clone());
    assert_eq!(
        whole,
        [
            Record::new(RecordType::Stdin, 1, &b"hello"[..]),
            Record::new(RecordType::Stdin, 1, Bytes::new()),
        ]
    );
    for cut in 0..wire.len() {
        let mut codec = RecordCodec::new();
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut records = decode_all(&mut codec, &mut buf);
        buf.extend_from_slice(&wire[cut..]);
        records.extend(decode_all(&mut codec, &mut buf));
        assert_eq!(records, whole, "split at {cut}");
    }
    let mut codec = RecordCodec::new();
    let mut buf = BytesMut::new();
    let mut records = Vec::new();
    for byte in wire.iter() {
        buf.extend_from_slice(&[*byte]);
        records.extend(decode_all(&mut codec, &mut buf));
    }
    assert_eq!(records, whole);
}

/// A connection closed in the middle of a record is a protocol error; closed
/// between records it is a clean end.
#[test]
fn eof_inside_a_record() {
    let wire = encode(Record::new(RecordType::Stdin, 1, &b"hello"[..])).unwrap();
    let mut codec = RecordCodec::new();
    let mut buf = BytesMut::from(&wire[..10]);
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(err.is_protocol());
    assert!(err.protocol_error().unwrap().is_truncated());

    let mut buf = wire.clone();
    assert!(codec.decode_eof(&mut buf).unwrap().is_some());
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

/// B1 through the codec.
#[test]
fn bad_version_b1() {
    let mut buf = BytesMut::from(&b"\x00\x01\x00\x01\x00\x08\x00\x00"[..]);
    let err = RecordCodec::new().decode(&mut buf).unwrap_err();
    assert!(err.is_protocol());
    assert!(!err.is_io());
    assert!(err.protocol_error().unwrap().is_unsupported_version());
    assert_eq!(err.to_string(), "FastCGI protocol error");
    assert_eq!(
        err.source().unwrap().to_string(),
        "unsupported FastCGI version 0"
    );
}

/// F2, B9: stream records are split at 65535 bytes; an empty stream record
/// is the explicit end marker.
#[test]
fn encoder_splits_streams_f2_b9() {
    let data = Bytes::from(vec![b'x'; MAX_CONTENT_LEN + 10]);
    let mut buf = encode(Record::new(RecordType::Stdout, 1, data.clone())).unwrap();
    assert_eq!(&buf[..8], b"\x01\x06\x00\x01\xff\xff\x01\x00");
    assert_eq!(buf.len() % 8, 0);
    let records = decode_all(&mut RecordCodec::new(), &mut buf);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].content.len(), 10);

    let end = encode(Record::new(RecordType::Stdout, 1, Bytes::new())).unwrap();
    assert_eq!(&end[..], b"\x01\x06\x00\x01\x00\x00\x00\x00");
}

#[test]
fn encoder_refuses_oversized_non_stream_records() {
    let big = Bytes::from(vec![0; MAX_CONTENT_LEN + 1]);
    let err = encode(Record::new(RecordType::GetValuesResult, 0, big)).unwrap_err();
    assert!(err.is_protocol());
    assert!(err.protocol_error().unwrap().is_too_large());
}

#[test]
fn io_errors() {
    let err = Error::from(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
    assert!(err.is_io());
    assert!(!err.is_protocol());
    assert!(err.protocol_error().is_none());
    assert_eq!(err.to_string(), "FastCGI transport error");
    assert_eq!(err.source().unwrap().to_string(), "reset");
}

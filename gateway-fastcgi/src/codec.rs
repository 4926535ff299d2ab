//! A [`tokio_util::codec`] adapter for the record layer.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::Error;
use crate::proto::{self, ProtocolError, Record};

/// Decodes and encodes FastCGI records, for use with
/// [`FramedRead`](tokio_util::codec::FramedRead) and
/// [`FramedWrite`](tokio_util::codec::FramedWrite).
///
/// Decoding is [`proto::decode`]: records split anywhere, padding skipped,
/// at most [`MAX_RECORD_LEN`](proto::MAX_RECORD_LEN) bytes buffered per record.
/// Encoding writes each record as header, content and padding together;
/// stream records with more than 65535 content bytes become several records,
/// and a stream record with empty content is the stream's end marker.
///
/// ```
/// use bytes::BytesMut;
/// use gateway_fastcgi::codec::RecordCodec;
/// use gateway_fastcgi::proto::{Record, RecordType};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = RecordCodec::new();
/// let mut buf = BytesMut::new();
/// codec.encode(Record::new(RecordType::Stdout, 1, &b"hi"[..]), &mut buf)?;
/// assert_eq!(&buf[..], b"\x01\x06\x00\x01\x00\x02\x06\x00hi\0\0\0\0\0\0");
/// let record = codec.decode(&mut buf)?;
/// assert_eq!(record, Some(Record::new(RecordType::Stdout, 1, &b"hi"[..])));
/// assert!(buf.is_empty());
/// # Ok::<(), gateway_fastcgi::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordCodec {
    _priv: (),
}

impl RecordCodec {
    /// A codec.
    pub fn new() -> RecordCodec {
        RecordCodec::default()
    }
}

impl Decoder for RecordCodec {
    type Item = Record;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Record>, Error> {
        Ok(proto::decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Record>, Error> {
        match proto::decode(src)? {
            Some(record) => Ok(Some(record)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::truncated_record().into()),
        }
    }
}

impl Encoder<Record> for RecordCodec {
    type Error = Error;

    fn encode(&mut self, record: Record, dst: &mut BytesMut) -> Result<(), Error> {
        if record.record_type.is_stream() && !record.content.is_empty() {
            proto::encode_stream(dst, record.record_type, record.request_id, &record.content);
            Ok(())
        } else {
            Ok(proto::encode_record(
                dst,
                record.record_type,
                record.request_id,
                &record.content,
            )?)
        }
    }
}

//! Output side of one request (spec §5.3, §5.5, §6.2).

use bytes::BytesMut;

use super::body::ProtocolStatus;
use super::encode::{encode_end_request, encode_stream, encode_stream_end};
use super::record::RecordType;

/// Encodes the application's output for one request.
///
/// The response goes out as `FCGI_STDOUT` data, then the empty `FCGI_STDOUT`
/// record; if anything was written to `FCGI_STDERR`, the empty `FCGI_STDERR`
/// record; then `FCGI_END_REQUEST`. `FCGI_STDOUT` and `FCGI_STDERR`
/// data may interleave. Empty writes produce no record, so they can
/// never end a stream early; writes over 65535 bytes are split.
///
/// Each request can own its encoder and buffer, so one slow request does not
/// hold up the others on a multiplexed connection.
///
/// ```
/// use bytes::BytesMut;
/// use gateway_fastcgi::proto::ResponseEncoder;
///
/// let mut out = BytesMut::new();
/// let mut response = ResponseEncoder::new(1);
/// response.stdout(&mut out, b"");
/// assert!(out.is_empty());
/// response.finish(&mut out, 0);
/// assert_eq!(
///     &out[..],
///     b"\x01\x06\x00\x01\x00\x00\x00\x00\
///       \x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
/// );
/// ```
#[derive(Debug)]
pub struct ResponseEncoder {
    request_id: u16,
    stderr_used: bool,
}

impl ResponseEncoder {
    /// An encoder for request `request_id`.
    pub fn new(request_id: u16) -> ResponseEncoder {
        ResponseEncoder {
            request_id,
            stderr_used: false,
        }
    }

    /// The request id.
    pub fn request_id(&self) -> u16 {
        self.request_id
    }

    /// Appends response bytes as `FCGI_STDOUT` records (none if `data` is empty).
    pub fn stdout(&mut self, dst: &mut BytesMut, data: &[u8]) {
        encode_stream(dst, RecordType::Stdout, self.request_id, data);
    }

    /// Appends error-stream bytes as `FCGI_STDERR` records (none if `data` is
    /// empty).
    pub fn stderr(&mut self, dst: &mut BytesMut, data: &[u8]) {
        if !data.is_empty() {
            self.stderr_used = true;
        }
        encode_stream(dst, RecordType::Stderr, self.request_id, data);
    }

    /// Ends the output: the end markers, then `FCGI_END_REQUEST` with
    /// `app_status` (0 for success, non-zero when the application failed or
    /// was aborted) and `FCGI_REQUEST_COMPLETE`.
    pub fn finish(self, dst: &mut BytesMut, app_status: u32) {
        encode_stream_end(dst, RecordType::Stdout, self.request_id);
        if self.stderr_used {
            encode_stream_end(dst, RecordType::Stderr, self.request_id);
        }
        encode_end_request(
            dst,
            self.request_id,
            app_status,
            ProtocolStatus::RequestComplete,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::record::{Record, decode};

    /// Data, empty STDOUT, then END_REQUEST; no STDERR records when the
    /// error stream was not used.
    #[test]
    fn normal_end_f11() {
        let mut out = BytesMut::new();
        let mut response = ResponseEncoder::new(1);
        response.stdout(&mut out, b"Status: 200 OK\r\n\r\nhi");
        response.stderr(&mut out, b"");
        response.finish(&mut out, 0);
        assert_eq!(
            &out[..],
            b"\x01\x06\x00\x01\x00\x14\x04\x00Status: 200 OK\r\n\r\nhi\0\0\0\0\
              \x01\x06\x00\x01\x00\x00\x00\x00\
              \x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        );
    }

    /// STDERR interleaves with STDOUT and gets its own end marker;
    /// a failed application reports a non-zero appStatus.
    #[test]
    fn stderr_is_ended_when_used_f12() {
        let mut out = BytesMut::new();
        let mut response = ResponseEncoder::new(3);
        assert_eq!(response.request_id(), 3);
        response.stdout(&mut out, b"a");
        response.stderr(&mut out, b"e");
        response.stdout(&mut out, b"b");
        response.finish(&mut out, 1);
        let mut records = Vec::new();
        while let Some(record) = decode(&mut out).unwrap() {
            records.push(record);
        }
        let kinds: Vec<(RecordType, &[u8])> = records
            .iter()
            .map(|r: &Record| (r.record_type, &r.content[..]))
            .collect();
        assert_eq!(
            kinds,
            [
                (RecordType::Stdout, &b"a"[..]),
                (RecordType::Stderr, b"e"),
                (RecordType::Stdout, b"b"),
                (RecordType::Stdout, b""),
                (RecordType::Stderr, b""),
                (RecordType::EndRequest, b"\x00\x00\x00\x01\x00\x00\x00\x00"),
            ]
        );
        assert!(records.iter().all(|r| r.request_id == 3));
    }

    /// Empty writes never produce an empty (stream-ending) record.
    #[test]
    fn empty_writes_are_dropped_b9() {
        let mut out = BytesMut::new();
        let mut response = ResponseEncoder::new(1);
        response.stdout(&mut out, b"");
        response.stderr(&mut out, b"");
        assert!(out.is_empty());
    }
}

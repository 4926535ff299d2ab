//! The protocol error type.

use std::fmt;

use super::record::RecordType;

/// A violation of the FastCGI protocol.
///
/// Returned by the decoders and the [`Connection`](super::Connection) state
/// machine when the peer sends something FastCGI 1.0 does not allow (or that
/// this implementation refuses, such as parameters over the configured cap),
/// and by the encoders when asked to write something the wire format cannot
/// carry. After a decoding error the connection cannot be resynchronised: the
/// caller must close it.
///
/// The cause is opaque; the `is_*` predicates classify it and
/// [`Display`](fmt::Display) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    UnsupportedVersion(u8),
    TruncatedRecord,
    BeginBodyLength { id: u16, len: usize },
    NullRequestId(RecordType),
    UnexpectedType { id: u16, record_type: RecordType },
    DuplicateBegin { id: u16 },
    BeforeParamsEnd { id: u16, record_type: RecordType },
    AfterEnd { id: u16, record_type: RecordType },
    DataForRole { id: u16 },
    ParamsTooLarge { limit: usize },
    TooManyParams { limit: usize },
    LengthOverflow,
    TruncatedPair,
    ContentTooLong { len: usize },
}

impl ProtocolError {
    fn new(kind: Kind) -> Self {
        ProtocolError { kind }
    }

    pub(crate) fn unsupported_version(version: u8) -> Self {
        Self::new(Kind::UnsupportedVersion(version))
    }

    pub(crate) fn truncated_record() -> Self {
        Self::new(Kind::TruncatedRecord)
    }

    pub(crate) fn begin_body_length(id: u16, len: usize) -> Self {
        Self::new(Kind::BeginBodyLength { id, len })
    }

    pub(crate) fn null_request_id(record_type: RecordType) -> Self {
        Self::new(Kind::NullRequestId(record_type))
    }

    pub(crate) fn unexpected_type(id: u16, record_type: RecordType) -> Self {
        Self::new(Kind::UnexpectedType { id, record_type })
    }

    pub(crate) fn duplicate_begin(id: u16) -> Self {
        Self::new(Kind::DuplicateBegin { id })
    }

    pub(crate) fn before_params_end(id: u16, record_type: RecordType) -> Self {
        Self::new(Kind::BeforeParamsEnd { id, record_type })
    }

    pub(crate) fn after_end(id: u16, record_type: RecordType) -> Self {
        Self::new(Kind::AfterEnd { id, record_type })
    }

    pub(crate) fn data_for_role(id: u16) -> Self {
        Self::new(Kind::DataForRole { id })
    }

    pub(crate) fn params_too_large(limit: usize) -> Self {
        Self::new(Kind::ParamsTooLarge { limit })
    }

    pub(crate) fn too_many_params(limit: usize) -> Self {
        Self::new(Kind::TooManyParams { limit })
    }

    pub(crate) fn length_overflow() -> Self {
        Self::new(Kind::LengthOverflow)
    }

    pub(crate) fn truncated_pair() -> Self {
        Self::new(Kind::TruncatedPair)
    }

    pub(crate) fn content_too_long(len: usize) -> Self {
        Self::new(Kind::ContentTooLong { len })
    }

    /// The record header carried a version other than `FCGI_VERSION_1`.
    pub fn is_unsupported_version(&self) -> bool {
        matches!(self.kind, Kind::UnsupportedVersion(_))
    }

    /// Something was over a limit: the parameter byte or pair cap, a
    /// name-value length of 2^31-1 or more, or (when encoding) record content
    /// over 65535 bytes.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self.kind,
            Kind::ParamsTooLarge { .. }
                | Kind::TooManyParams { .. }
                | Kind::LengthOverflow
                | Kind::ContentTooLong { .. }
        )
    }

    /// The input ended in the middle of a record or of a name-value pair.
    pub fn is_truncated(&self) -> bool {
        matches!(self.kind, Kind::TruncatedRecord | Kind::TruncatedPair)
    }

    /// A record arrived that its request's state does not allow: a record
    /// type the web server never sends, an application record on request id
    /// 0, a second `FCGI_BEGIN_REQUEST` for an active id, a stream record
    /// before `FCGI_PARAMS` ended or after its own end marker, or
    /// `FCGI_DATA` outside the Filter role.
    pub fn is_unexpected_record(&self) -> bool {
        matches!(
            self.kind,
            Kind::NullRequestId(_)
                | Kind::UnexpectedType { .. }
                | Kind::DuplicateBegin { .. }
                | Kind::BeforeParamsEnd { .. }
                | Kind::AfterEnd { .. }
                | Kind::DataForRole { .. }
        )
    }

    /// An `FCGI_BEGIN_REQUEST` body was not exactly 8 bytes long.
    pub fn is_bad_begin_request(&self) -> bool {
        matches!(self.kind, Kind::BeginBodyLength { .. })
    }

    /// The request id the error concerns, when it concerns one.
    pub fn request_id(&self) -> Option<u16> {
        match self.kind {
            Kind::BeginBodyLength { id, .. }
            | Kind::UnexpectedType { id, .. }
            | Kind::DuplicateBegin { id }
            | Kind::BeforeParamsEnd { id, .. }
            | Kind::AfterEnd { id, .. }
            | Kind::DataForRole { id } => Some(id),
            Kind::NullRequestId(_) => Some(0),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::UnsupportedVersion(v) => write!(f, "unsupported FastCGI version {v}"),
            Kind::TruncatedRecord => f.write_str("FastCGI record cut short"),
            Kind::BeginBodyLength { id, len } => write!(
                f,
                "FCGI_BEGIN_REQUEST for request {id} has a {len}-byte body (expected 8)"
            ),
            Kind::NullRequestId(t) => write!(f, "{t} on the management request id 0"),
            Kind::UnexpectedType { id, record_type } => {
                write!(f, "unexpected {record_type} for request {id}")
            }
            Kind::DuplicateBegin { id } => {
                write!(f, "FCGI_BEGIN_REQUEST for request {id}, which is active")
            }
            Kind::BeforeParamsEnd { id, record_type } => {
                write!(f, "{record_type} for request {id} before FCGI_PARAMS ended")
            }
            Kind::AfterEnd { id, record_type } => {
                write!(f, "{record_type} for request {id} after the stream ended")
            }
            Kind::DataForRole { id } => {
                write!(f, "FCGI_DATA for request {id}, whose role is not FILTER")
            }
            Kind::ParamsTooLarge { limit } => {
                write!(f, "name-value pairs over the {limit}-byte limit")
            }
            Kind::TooManyParams { limit } => write!(f, "more than {limit} name-value pairs"),
            Kind::LengthOverflow => f.write_str("name-value length of 2^31-1 or more"),
            Kind::TruncatedPair => f.write_str("name-value pair cut short"),
            Kind::ContentTooLong { len } => {
                write!(f, "record content of {len} bytes (at most 65535 fit)")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

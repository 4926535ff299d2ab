//! The crate's error type.

use std::{error::Error as StdError, fmt, io};

use crate::proto::ProtocolError;

/// An error reading an SCGI request.
///
/// The cause is private; the `is_*` predicates tell the cases apart. All of
/// them are caused by the peer or the connection, so a server logs them at
/// `debug!` and closes the connection.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The request header is malformed or over a limit.
    Protocol(ProtocolError),
    /// Reading from the connection failed.
    Io(io::Error),
    /// The peer closed the connection inside the request header.
    TruncatedHeader,
    /// The peer closed the connection before `CONTENT_LENGTH` body bytes.
    TruncatedBody { expected: u64, received: u64 },
}

impl Error {
    pub(crate) fn truncated_header() -> Self {
        Error {
            kind: Kind::TruncatedHeader,
        }
    }

    pub(crate) fn truncated_body(expected: u64, received: u64) -> Self {
        Error {
            kind: Kind::TruncatedBody { expected, received },
        }
    }

    /// The request header is malformed or over a limit; the source is the
    /// [`ProtocolError`].
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol(_))
    }

    /// Reading from the connection failed; the source is the `io::Error`.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_))
    }

    /// The connection ended after part of the request header.
    pub fn is_truncated_header(&self) -> bool {
        matches!(self.kind, Kind::TruncatedHeader)
    }

    /// The connection ended before the body reached `CONTENT_LENGTH` bytes.
    /// The application must see this as a body error, not as a short body.
    pub fn is_truncated_body(&self) -> bool {
        matches!(self.kind, Kind::TruncatedBody { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Protocol(err) => fmt::Display::fmt(err, f),
            Kind::Io(err) => fmt::Display::fmt(err, f),
            Kind::TruncatedHeader => {
                f.write_str("connection closed inside the SCGI request header")
            }
            Kind::TruncatedBody { expected, received } => write!(
                f,
                "connection closed after {received} of {expected} request body bytes"
            ),
        }
    }
}

impl StdError for Error {
    // Both wrapped errors are shown by `Display` already; hand on their
    // causes, not the errors themselves, so a report does not repeat them.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::Protocol(err) => err.source(),
            Kind::Io(err) => err.source(),
            Kind::TruncatedHeader | Kind::TruncatedBody { .. } => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(err: ProtocolError) -> Self {
        Error {
            kind: Kind::Protocol(err),
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error {
            kind: Kind::Io(err),
        }
    }
}

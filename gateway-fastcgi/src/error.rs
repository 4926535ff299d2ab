//! The crate's error type.

use std::{fmt, io};

use crate::proto::ProtocolError;

/// An error from this crate.
///
/// The cause is opaque: the `is_*` predicates classify it and
/// [`source`](std::error::Error::source) gives the underlying error.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl Error {
    /// The transport failed.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_))
    }

    /// The peer broke the FastCGI protocol (or a record could not be encoded);
    /// the connection must be closed.
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol(_))
    }

    /// The protocol error, if this is one.
    pub fn protocol_error(&self) -> Option<&ProtocolError> {
        match &self.kind {
            Kind::Protocol(e) => Some(e),
            Kind::Io(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Io(_) => f.write_str("FastCGI transport error"),
            Kind::Protocol(_) => f.write_str("FastCGI protocol error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io(e) => Some(e),
            Kind::Protocol(e) => Some(e),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error { kind: Kind::Io(e) }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Error {
        Error {
            kind: Kind::Protocol(e),
        }
    }
}

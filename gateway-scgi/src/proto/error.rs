//! The error a malformed SCGI request header produces.

use std::fmt;

/// A malformed SCGI request header.
///
/// The peer sent bytes that break the SCGI request format (nascheme/scgi
/// `doc/protocol.txt`, section 3) or exceed a configured limit. The
/// connection cannot continue: the server closes it (optionally after a
/// `Status: 400` reply). [`Display`](fmt::Display) gives a short reason,
/// meant for a `debug!` log line.
///
/// The exact cause is private; the `is_*` predicates sort it into the groups
/// a server may want to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    kind: Kind,
    reason: &'static str,
}

/// What went wrong, one variant per rejected case of the request format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The netstring length is empty or starts with a non-digit.
    LengthNotDigit,
    /// The netstring length has a leading zero ("0" alone is fine).
    LengthLeadingZero,
    /// The length digits are followed by something other than `:`.
    MissingColon,
    /// The header block is not followed by `,`.
    MissingComma,
    /// The netstring length is over the configured cap.
    TooLarge,
    /// The header block does not end in NUL.
    NotNulTerminated,
    /// The header block holds an odd number of NUL-terminated strings.
    OddStringCount,
    /// A header name is empty.
    EmptyName,
    /// A header name appears twice.
    DuplicateName,
    /// The first header is not `CONTENT_LENGTH` (or there is none).
    FirstNotContentLength,
    /// `CONTENT_LENGTH` is empty, not all ASCII digits, or over `u64::MAX`.
    InvalidContentLength,
    /// No `SCGI` header, and the configuration is strict.
    MissingMarker,
    /// `SCGI` is not `1`, and the configuration is strict.
    InvalidMarker,
}

impl ProtocolError {
    pub(crate) const fn new(kind: Kind, reason: &'static str) -> Self {
        ProtocolError { kind, reason }
    }

    /// The precise cause, for tests that check each rejected case.
    #[cfg(test)]
    pub(crate) const fn kind(&self) -> Kind {
        self.kind
    }

    /// The netstring framing is broken: the length is not ASCII digits, has a
    /// leading zero, or is not followed by `:`; or the block is not followed
    /// by `,`.
    pub fn is_netstring(&self) -> bool {
        matches!(
            self.kind,
            Kind::LengthNotDigit
                | Kind::LengthLeadingZero
                | Kind::MissingColon
                | Kind::MissingComma
        )
    }

    /// The header block announced a length over the configured cap
    /// ([`Config::max_header_len`](super::Config::max_header_len)).
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, Kind::TooLarge)
    }

    /// The `name NUL value NUL` pairs are malformed: the block does not end
    /// in NUL, holds an odd number of strings, or has an empty or repeated
    /// name.
    pub fn is_header_pairs(&self) -> bool {
        matches!(
            self.kind,
            Kind::NotNulTerminated | Kind::OddStringCount | Kind::EmptyName | Kind::DuplicateName
        )
    }

    /// The first header is not `CONTENT_LENGTH`, or its value is not a
    /// non-empty string of ASCII digits that fits in a `u64`.
    pub fn is_content_length(&self) -> bool {
        matches!(
            self.kind,
            Kind::FirstNotContentLength | Kind::InvalidContentLength
        )
    }

    /// The `SCGI` header is missing or not `1`, and the configuration is
    /// strict ([`Config::strict_marker`](super::Config::strict_marker)).
    pub fn is_scgi_marker(&self) -> bool {
        matches!(self.kind, Kind::MissingMarker | Kind::InvalidMarker)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed SCGI request header: {}", self.reason)
    }
}

impl std::error::Error for ProtocolError {}

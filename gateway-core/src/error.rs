//! The crate's error type.

use std::fmt;

/// A boxed error that can cross threads: what applications and bodies return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from the gateway core.
///
/// Opaque on purpose: ask it what it is with the `is_*` predicates.
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The request (environ) could not become an `http::Request`.
    BadRequest(&'static str),
    /// The request body ended before `CONTENT_LENGTH` bytes arrived.
    IncompleteBody,
    /// The request body is larger than the configured limit.
    BodyTooLarge,
    /// The application's response head is not valid.
    InvalidResponse(&'static str),
    /// The application (or its body) failed.
    App,
    /// The application panicked.
    Panic,
    /// Writing to the client failed because it went away.
    Disconnected,
    /// Another I/O failure.
    Io,
    /// The response body ended before its declared Content-Length.
    ShortBody,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Self { kind, source: None }
    }

    pub(crate) fn with(kind: Kind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// The request could not be turned into an `http::Request` (answered 400).
    pub fn is_bad_request(&self) -> bool {
        matches!(self.kind, Kind::BadRequest(_))
    }

    /// The request body ended before its declared length (the client went
    /// away, or a proxy cut it short).
    pub fn is_incomplete_body(&self) -> bool {
        self.kind == Kind::IncompleteBody
    }

    /// The request body exceeded the configured limit.
    pub fn is_body_too_large(&self) -> bool {
        self.kind == Kind::BodyTooLarge
    }

    /// The application's response was invalid (bad status, header or length).
    pub fn is_invalid_response(&self) -> bool {
        matches!(self.kind, Kind::InvalidResponse(_) | Kind::ShortBody)
    }

    /// The application returned an error, or its body did.
    pub fn is_app(&self) -> bool {
        self.kind == Kind::App
    }

    /// The application panicked.
    pub fn is_panic(&self) -> bool {
        self.kind == Kind::Panic
    }

    /// The client went away while the response was written.
    pub fn is_disconnect(&self) -> bool {
        self.kind == Kind::Disconnected
    }

    /// Another I/O error.
    pub fn is_io(&self) -> bool {
        self.kind == Kind::Io
    }

    fn describe(&self) -> &'static str {
        match self.kind {
            Kind::BadRequest(why) => why,
            Kind::IncompleteBody => "request body ended before CONTENT_LENGTH bytes",
            Kind::BodyTooLarge => "request body exceeds the configured limit",
            Kind::InvalidResponse(why) => why,
            Kind::App => "application error",
            Kind::Panic => "application panicked",
            Kind::Disconnected => "client disconnected",
            Kind::Io => "i/o error",
            Kind::ShortBody => "response body shorter than its Content-Length",
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("gateway_core::Error");
        d.field("kind", &self.kind);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())?;
        if let (Kind::App | Kind::Panic | Kind::Io, Some(s)) = (self.kind, &self.source) {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Whether an I/O error means the peer went away (C16: broken pipe,
/// connection reset, connection aborted), which is not a server fault.
pub fn is_disconnect(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(err.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
}

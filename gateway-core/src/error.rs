//! The crate's error type.

use std::fmt;

/// A boxed error that can cross threads: what applications and bodies return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from the gateway core.
///
/// Opaque on purpose: ask it what it is with the `is_*` predicates.
pub struct Error {
    pub(crate) kind: Kind,
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
    /// The request body stopped arriving for longer than the read timeout.
    BodyTimeout,
    /// The request body was malformed on the wire (a bad chunk size, a
    /// protocol error in the stream that carries it).
    MalformedBody,
    /// The request has a body of unknown length that the backend cannot
    /// find the end of.
    LengthRequired,
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

    /// A request body that ended before its declared length: the client (or
    /// the web server in front) went away or cut it short. For backends to
    /// return as their body's error; `source` says what happened.
    pub fn incomplete_body(source: impl Into<BoxError>) -> Self {
        Self::with(Kind::IncompleteBody, source)
    }

    /// A request body larger than
    /// [`Limits::max_body_len`](crate::Limits::max_body_len). For backends
    /// to return as their body's error (answered 413 while nothing was
    /// sent).
    pub fn body_too_large() -> Self {
        Self::new(Kind::BodyTooLarge)
    }

    /// A request body that stopped arriving for longer than
    /// [`Limits::body_read_timeout`](crate::Limits::body_read_timeout). For
    /// backends to return as their body's error (answered 408 while nothing
    /// was sent).
    pub fn body_timeout() -> Self {
        Self::new(Kind::BodyTimeout)
    }

    /// A request body malformed on the wire (a bad chunk size, a framing
    /// error). For backends to return as their body's error (answered 400
    /// while nothing was sent).
    pub fn malformed_body(source: impl Into<BoxError>) -> Self {
        Self::with(Kind::MalformedBody, source)
    }

    /// A request body of unknown length whose end the backend cannot find
    /// (a CGI stdin that is a terminal, so nothing will close it). For
    /// backends to return as their body's error (answered 411 while nothing
    /// was sent).
    pub fn length_required() -> Self {
        Self::new(Kind::LengthRequired)
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

    /// The request body stopped arriving for longer than the read timeout.
    pub fn is_body_timeout(&self) -> bool {
        self.kind == Kind::BodyTimeout
    }

    /// The request body was malformed on the wire.
    pub fn is_malformed_body(&self) -> bool {
        self.kind == Kind::MalformedBody
    }

    /// The failure is the client's (or the web server's in front), not the
    /// application's: a bad request, a request body that was cut short,
    /// too large, too slow or malformed, or a client that went away. Such
    /// failures are logged at debug level and never as application errors.
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self.kind,
            Kind::BadRequest(_)
                | Kind::IncompleteBody
                | Kind::BodyTooLarge
                | Kind::BodyTimeout
                | Kind::MalformedBody
                | Kind::LengthRequired
                | Kind::Disconnected
        )
    }

    /// The status a client fault is answered with while nothing has been
    /// sent: 400, 408 (body timeout) or 413 (body too large); `None` for
    /// failures that are not the client's. 411 for a body whose end cannot
    /// be found.
    pub fn client_status(&self) -> Option<http::StatusCode> {
        use http::StatusCode as S;
        match self.kind {
            Kind::BadRequest(_) | Kind::IncompleteBody | Kind::MalformedBody => {
                Some(S::BAD_REQUEST)
            }
            Kind::Disconnected => Some(S::BAD_REQUEST),
            Kind::BodyTooLarge => Some(S::PAYLOAD_TOO_LARGE),
            Kind::BodyTimeout => Some(S::REQUEST_TIMEOUT),
            Kind::LengthRequired => Some(S::LENGTH_REQUIRED),
            _ => None,
        }
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
            Kind::BodyTimeout => "request body read timed out",
            Kind::MalformedBody => "malformed request body",
            Kind::LengthRequired => "request body of unknown length with no end to read to",
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
        if let (
            Kind::App | Kind::Panic | Kind::Io | Kind::MalformedBody | Kind::IncompleteBody,
            Some(s),
        ) = (self.kind, &self.source)
        {
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

/// Whether an I/O error means the peer went away (broken pipe,
/// connection reset, connection aborted), which is not a server fault.
pub fn is_disconnect(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(err.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
}

//! How a request ended.

use http::StatusCode;

/// How a request ended, for the backend to act on (an aborted response is
/// signalled the way its protocol allows) and to log.
#[derive(Debug)]
pub struct Outcome {
    pub(crate) status: Option<StatusCode>,
    pub(crate) bytes_sent: u64,
    pub(crate) kind: OutcomeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutcomeKind {
    Complete,
    ErrorPage,
    Aborted,
    Disconnected,
    Failed,
}

impl Outcome {
    /// The status sent, if a head was sent.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The body bytes sent.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// The response was sent in full (the error page and a 400 count too).
    pub fn is_complete(&self) -> bool {
        matches!(self.kind, OutcomeKind::Complete | OutcomeKind::ErrorPage)
    }

    /// The application failed before anything was sent, and the error page
    /// went out instead.
    pub fn is_error_page(&self) -> bool {
        self.kind == OutcomeKind::ErrorPage
    }

    /// The response failed after its head was sent (application or body
    /// error, short body): the backend must make the client see truncation
    /// (close the connection, FastCGI appStatus, CGI exit status).
    pub fn is_aborted(&self) -> bool {
        self.kind == OutcomeKind::Aborted
    }

    /// The client went away.
    pub fn is_disconnected(&self) -> bool {
        self.kind == OutcomeKind::Disconnected
    }

    /// Writing failed for another reason, or the error page itself failed.
    pub fn is_failed(&self) -> bool {
        self.kind == OutcomeKind::Failed
    }
}

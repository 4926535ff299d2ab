//! Input side of one request: the events it produces and the state machine
//! that checks the order of its streams (spec §3.3, §5, §6).
//!
//! A request's input is, in this order: `FCGI_BEGIN_REQUEST`; the
//! `FCGI_PARAMS` stream up to its empty record; then `FCGI_STDIN` up to its
//! empty record and, for the Filter role only, `FCGI_DATA` likewise (those two
//! may interleave). `FCGI_ABORT_REQUEST` may come at any time.

use std::time::Instant;

use bytes::Bytes;

use super::body::{ProtocolStatus, Role};
use super::error::ProtocolError;
use super::params::{Params, ParamsDecoder};
use super::record::RecordType;

/// What a [`Connection`](super::Connection) learned from the input.
///
/// The connection has already queued the replies that need no application
/// (see [`Connection::take_output`](super::Connection::take_output)); the
/// management and rejection events are reported for logging and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A request started. Its parameters follow.
    Begin {
        /// Request id.
        id: u16,
        /// The role to play.
        role: Role,
        /// Whether `FCGI_KEEP_CONN` was set: if not, the application closes
        /// the connection once the request ends.
        keep_conn: bool,
    },
    /// The whole `FCGI_PARAMS` stream of a request arrived; the application
    /// can be called now.
    Params {
        /// Request id.
        id: u16,
        /// The pairs, in the order received.
        params: Params,
    },
    /// A piece of the request body (`FCGI_STDIN`, never empty).
    Stdin {
        /// Request id.
        id: u16,
        /// The bytes.
        data: Bytes,
    },
    /// The request body ended (the empty `FCGI_STDIN` record).
    StdinEnd {
        /// Request id.
        id: u16,
    },
    /// A piece of the Filter role's data file (`FCGI_DATA`, never empty).
    Data {
        /// Request id.
        id: u16,
        /// The bytes.
        data: Bytes,
    },
    /// The Filter role's data file ended (the empty `FCGI_DATA` record).
    DataEnd {
        /// Request id.
        id: u16,
    },
    /// The web server aborted the request. The application should be
    /// cancelled and the request ended with an `FCGI_END_REQUEST` promptly.
    /// Further input for the request is ignored.
    Abort {
        /// Request id.
        id: u16,
    },
    /// An `FCGI_BEGIN_REQUEST` was refused and already answered with an
    /// `FCGI_END_REQUEST` carrying this status. The id is not active.
    Rejected {
        /// Request id.
        id: u16,
        /// Why: [`CantMpxConn`](ProtocolStatus::CantMpxConn),
        /// [`Overloaded`](ProtocolStatus::Overloaded) or
        /// [`UnknownRole`](ProtocolStatus::UnknownRole).
        status: ProtocolStatus,
    },
    /// An `FCGI_GET_VALUES` query, already answered.
    GetValues {
        /// The names asked for, known or not.
        names: Vec<Bytes>,
    },
    /// A management record of a type this crate does not handle, already
    /// answered with `FCGI_UNKNOWN_TYPE`.
    UnknownManagement {
        /// The record's type byte.
        record_type: u8,
    },
}

/// Where a request is in its `FCGI_PARAMS` stream.
#[derive(Debug)]
enum ParamsState {
    Receiving(ParamsDecoder),
    Done,
}

/// State of one active request, from its `FCGI_BEGIN_REQUEST` until the
/// application ends it.
#[derive(Debug)]
pub(crate) struct Request {
    role: Role,
    keep_conn: bool,
    params: ParamsState,
    stdin_ended: bool,
    data_ended: bool,
    aborted: bool,
    /// The body read timeout gave up on its input: what still arrives for
    /// it is ignored.
    input_given_up: bool,
    /// Until its parameters are complete: when its head began.
    head_started: Option<Instant>,
}

impl Request {
    pub(crate) fn new(
        role: Role,
        keep_conn: bool,
        params: ParamsDecoder,
        head_started: Option<Instant>,
    ) -> Request {
        Request {
            role,
            keep_conn,
            params: ParamsState::Receiving(params),
            stdin_ended: false,
            data_ended: false,
            aborted: false,
            input_given_up: false,
            head_started,
        }
    }

    /// While the parameters are incomplete: when the request's head began
    /// (`None` then only without a clock).
    pub(crate) fn head_started(&self) -> Option<Instant> {
        match self.params {
            ParamsState::Receiving(_) => self.head_started,
            ParamsState::Done => None,
        }
    }

    /// Whether all of the request's input streams have ended (or it was
    /// aborted).
    pub(crate) fn input_ended(&self) -> bool {
        self.aborted
            || self.input_given_up
            || (matches!(self.params, ParamsState::Done)
                && self.stdin_ended
                && (self.data_ended || self.role != Role::Filter))
    }

    /// Whether the request's parameters are complete and more of its
    /// input is due: what the body read timeout watches.
    pub(crate) fn awaits_input(&self) -> bool {
        matches!(self.params, ParamsState::Done) && !self.input_ended()
    }

    /// Stops taking input for the request (its body read timed out).
    pub(crate) fn give_up_input(&mut self) {
        self.input_given_up = true;
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    pub(crate) fn keep_conn(&self) -> bool {
        self.keep_conn
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// Handles an input record for this request (`id` is its id).
    pub(crate) fn input(
        &mut self,
        id: u16,
        record_type: RecordType,
        content: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        if self.aborted || (self.input_given_up && record_type != RecordType::AbortRequest) {
            // The web server may still have had records in flight.
            return Ok(None);
        }
        match record_type {
            RecordType::AbortRequest => {
                self.aborted = true;
                Ok(Some(Event::Abort { id }))
            }
            RecordType::Params => self.params(id, content),
            RecordType::Stdin => {
                self.check_params_done(id, record_type)?;
                stream(&mut self.stdin_ended, id, record_type, content).map(|end| {
                    Some(match end {
                        Some(data) => Event::Stdin { id, data },
                        None => Event::StdinEnd { id },
                    })
                })
            }
            RecordType::Data => {
                if self.role != Role::Filter {
                    return Err(ProtocolError::data_for_role(id));
                }
                self.check_params_done(id, record_type)?;
                stream(&mut self.data_ended, id, record_type, content).map(|end| {
                    Some(match end {
                        Some(data) => Event::Data { id, data },
                        None => Event::DataEnd { id },
                    })
                })
            }
            other => Err(ProtocolError::unexpected_type(id, other)),
        }
    }

    fn params(&mut self, id: u16, content: Bytes) -> Result<Option<Event>, ProtocolError> {
        let ParamsState::Receiving(decoder) = &mut self.params else {
            return Err(ProtocolError::after_end(id, RecordType::Params));
        };
        if !content.is_empty() {
            decoder.push(content)?;
            return Ok(None);
        }
        match std::mem::replace(&mut self.params, ParamsState::Done) {
            ParamsState::Receiving(decoder) => {
                let params = decoder.finish()?;
                Ok(Some(Event::Params { id, params }))
            }
            ParamsState::Done => Err(ProtocolError::after_end(id, RecordType::Params)),
        }
    }

    fn check_params_done(&self, id: u16, record_type: RecordType) -> Result<(), ProtocolError> {
        match self.params {
            ParamsState::Done => Ok(()),
            ParamsState::Receiving(_) => Err(ProtocolError::before_params_end(id, record_type)),
        }
    }
}

/// One record of an input byte stream: `Some(data)` for data, `None` for the
/// end marker, an error after the end marker.
fn stream(
    ended: &mut bool,
    id: u16,
    record_type: RecordType,
    content: Bytes,
) -> Result<Option<Bytes>, ProtocolError> {
    if *ended {
        return Err(ProtocolError::after_end(id, record_type));
    }
    if content.is_empty() {
        *ended = true;
        Ok(None)
    } else {
        Ok(Some(content))
    }
}

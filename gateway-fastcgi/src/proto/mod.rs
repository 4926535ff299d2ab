//! The FastCGI 1.0 protocol, without I/O.
//!
//! Everything here is pure: bytes in, records and events out, reply bytes
//! appended to a buffer. Nothing reads a socket, spawns a task or looks at a
//! clock, so the code can be tested with input split at every byte and
//! fuzzed. Section numbers (§) refer to the FastCGI Specification 1.0
//! (Open Market, 1996); F and B numbers to the project's behaviour checklist.
//!
//! The layers, bottom up:
//!
//! - [`record`]: the constants and the record framing, with [`decode`], which
//!   takes whole records off a buffer, and [`encode`], which writes them;
//! - [`body`]: the fixed-layout bodies of `FCGI_BEGIN_REQUEST` (with the
//!   [`Role`]) and `FCGI_END_REQUEST` (with the [`ProtocolStatus`]);
//! - [`params`]: name-value pairs, decoded incrementally across records;
//! - [`management`]: `FCGI_GET_VALUES` and its result;
//! - [`Connection`]: the per-connection state machine that checks the order
//!   of records, tracks the active requests and yields [`Event`]s, queuing
//!   the replies that need no application;
//! - [`ResponseEncoder`]: the application's output for one request.
//!
//! A connection driver reads bytes into a buffer, calls
//! [`Connection::next_event`] until it returns `Ok(None)`, writes
//! [`Connection::take_output`] to the transport, hands events to the
//! application, encodes the application's output with a [`ResponseEncoder`],
//! calls [`Connection::finish`] when a request ends, and closes the transport
//! on any [`ProtocolError`] or as [`Connection::poll_close`] says. Time is
//! passed in: [`Connection::received`] after each read,
//! [`Connection::handle_timeout`] when [`Connection::poll_timeout`] is
//! reached.

pub mod body;
mod connection;
pub mod encode;
mod error;
pub mod management;
pub mod params;
pub mod record;
mod request;
mod response;

pub use body::{BeginRequestBody, EndRequestBody, ProtocolStatus, Role};
pub(crate) use connection::Idle;
pub use connection::{Close, Config, Connection};
pub use encode::{
    encode_abort_request, encode_begin_request, encode_end_request, encode_record, encode_stream,
    encode_stream_end, encode_unknown_type, padding_len,
};
pub use error::ProtocolError;
pub use management::{encode_get_values, encode_get_values_result};
pub use params::{Params, ParamsDecoder, ParamsIter, decode_pairs, encode_pair, encode_params};
pub use record::{Header, MAX_CONTENT_LEN, MAX_RECORD_LEN, Record, RecordType, decode};
pub use request::Event;
pub use response::ResponseEncoder;

//! FastCGI 1.0 application server for tower and axum applications.
//!
//! A web server (nginx, Apache httpd, lighttpd, IIS, or libfcgi's
//! `cgi-fcgi`) forwards requests to the application over FastCGI; this crate
//! speaks the application side of the protocol so that any
//! `tower::Service` over `http` types, an axum `Router` included, can answer
//! them with the handler semantics of `gateway-core`.
//!
//! # What this version provides
//!
//! The protocol layer, in [`proto`], free of I/O:
//!
//! - records: the spec's constants, the header, a decoder that accepts input
//!   split anywhere and skips padding, and encoders that write each record
//!   (header, content, padding) contiguously, splitting large output;
//! - name-value pairs with 1- and 4-byte lengths, decoded across record
//!   boundaries, with caps on their size and number;
//! - request assembly: a per-connection state machine that checks the order
//!   of records, tracks the active requests, answers management queries,
//!   refuses what it cannot serve, and reports [`proto::Event`]s;
//! - the output encoder for one request's response;
//! - a [`tokio_util::codec`] adapter, [`codec::RecordCodec`].
//!
//! The connection driver and the server (listeners, running the application
//! through `gateway-core`) build on this layer and on `gateway-core`.
//!
//! # Defaults and limits
//!
//! [`proto::Config`] defaults to what libfcgi reports to `FCGI_GET_VALUES`
//! (one connection, one request, no multiplexing), and caps one request's
//! parameters at 1 MiB and 4096 pairs. A record is at most
//! [`proto::MAX_RECORD_LEN`] bytes, so the decoder never buffers more than
//! that. Any protocol violation is reported as a [`proto::ProtocolError`]
//! and means the connection must be closed.

pub mod codec;
mod error;
pub mod proto;

pub use error::Error;

//! The SCGI request format, sans I/O: bytes in, a parsed header out.
//!
//! Nothing here reads sockets, spawns tasks or looks at clocks, so every
//! rule can be tested with the input split at any byte, and fuzzed. The
//! [`codec`](crate::codec) module wraps the parser for `tokio_util`.
//!
//! # Wire format
//!
//! A request (nascheme/scgi `doc/protocol.txt`, section 3) is a netstring
//! holding the header block, followed by the body:
//!
//! ```text
//! +--------+-----+------------------------------------------+-----+------------------+
//! | len    | ':' | name NUL value NUL name NUL value NUL ... | ',' | body             |
//! | digits |     | (len bytes; first name: CONTENT_LENGTH)   |     | (CONTENT_LENGTH) |
//! +--------+-----+------------------------------------------+-----+------------------+
//!
//! "70:CONTENT_LENGTH\0" "27\0" "SCGI\0" "1\0" "REQUEST_METHOD\0" "POST\0"
//!     "REQUEST_URI\0" "/deepthought\0" "," "What is the answer to life?"
//! ```
//!
//! - `len` is ASCII digits without leading zeros (`0` only for an empty
//!   block), capped by [`Config::max_header_len`].
//! - The block is `name NUL value NUL` pairs: it ends in NUL, holds an even
//!   number of strings, names are non-empty and unique, values may be empty.
//! - The first header is `CONTENT_LENGTH`, non-empty ASCII digits, present
//!   even when `0`; the body is exactly that many bytes.
//! - `SCGI` = `1` is required by the protocol; where it comes depends on the
//!   web server (second for Apache, last for lighttpd, anywhere or absent for
//!   nginx), see [`Marker`] and [`Config::strict_marker`].

mod config;
mod error;
mod header;
mod parser;

#[cfg(test)]
mod tests;

pub use config::Config;
pub use error::ProtocolError;
pub use header::{Header, Marker};
pub use parser::HeaderParser;

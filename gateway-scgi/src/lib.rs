//! An SCGI application server for tower and axum applications.
//!
//! SCGI (nascheme/scgi `doc/protocol.txt`) is the simple alternative to
//! FastCGI: the web server (nginx `scgi_pass`, Apache `mod_proxy_scgi`,
//! lighttpd `mod_scgi`) opens a connection per request, sends the CGI
//! environment as a netstring of `name NUL value NUL` pairs followed by the
//! body, reads a CGI-style response, and the application server closes the
//! connection.
//!
//! This version provides the protocol layer:
//!
//! - [`proto`]: the sans-I/O request-header parser ([`proto::HeaderParser`])
//!   with its limits and strictness ([`proto::Config`]);
//! - [`codec`]: a `tokio_util` decoder yielding the header, then the body up
//!   to `CONTENT_LENGTH`, then the end of the request.
//!
//! The server itself (accepting connections and running the application
//! through the handler of `gateway-core`, which also writes the response in
//! CGI form) builds on these.
//!
//! ```
//! use bytes::BytesMut;
//! use gateway_scgi::proto::{Config, HeaderParser, Marker};
//!
//! let mut parser = HeaderParser::new(&Config::new());
//! let mut buf = BytesMut::from(
//!     &b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00\
//!        REQUEST_URI\x00/deepthought\x00,What is the answer to life?"[..],
//! );
//! let header = parser.parse(&mut buf)?.ok_or("incomplete header")?;
//! assert_eq!(header.content_length(), 27);
//! assert_eq!(header.marker(), Marker::Present);
//! assert_eq!(header.get(b"REQUEST_URI"), Some(&b"/deepthought"[..]));
//! assert_eq!(&buf[..], b"What is the answer to life?");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
mod error;
pub mod proto;

pub use error::Error;

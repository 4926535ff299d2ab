//! Limits and strictness of the request-header parser.

/// Settings for [`HeaderParser`](super::HeaderParser).
///
/// Setters take `&mut self` and return `&mut Self`, so they chain:
///
/// ```
/// use gateway_scgi::proto::{Config, HeaderParser};
///
/// let mut config = Config::new();
/// config.max_header_len(16 * 1024).strict_marker(true);
/// let parser = HeaderParser::new(&config);
/// # let _ = parser;
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(super) max_header_len: usize,
    pub(super) strict_marker: bool,
    pub(super) merge_repeated: bool,
}

impl Config {
    /// The default cap on the header block: 64 KiB.
    pub const DEFAULT_MAX_HEADER_LEN: usize = 64 * 1024;

    /// The defaults: a 64 KiB header block, lenient about the `SCGI` header.
    pub fn new() -> Self {
        Config {
            max_header_len: Self::DEFAULT_MAX_HEADER_LEN,
            strict_marker: false,
            merge_repeated: true,
        }
    }

    /// The largest header block accepted, in bytes: the netstring length,
    /// not counting the length digits, `:` and `,`.
    ///
    /// A longer length is rejected as soon as its digits show it is over the
    /// cap, so the number of length digits read is bounded too (at most one
    /// more than the cap has). The cap is at most 4 GiB less two bytes; a
    /// larger one is taken as that.
    pub fn max_header_len(&mut self, max: usize) -> &mut Self {
        self.max_header_len = max;
        self
    }

    /// How to treat the `SCGI` header, which the protocol requires to be `1`.
    ///
    /// Lenient (`false`, the default): a missing `SCGI` header or another
    /// value is accepted and reported through
    /// [`Header::marker`](super::Header::marker), because nginx sends `SCGI`
    /// only when its configuration includes `scgi_params`. Strict (`true`):
    /// either is a [`ProtocolError`](super::ProtocolError).
    pub fn strict_marker(&mut self, strict: bool) -> &mut Self {
        self.strict_marker = strict;
        self
    }
}

impl Config {
    /// What to do with a request header the web server sent twice as an
    /// `HTTP_*` pair (the protocol forbids repeated names).
    ///
    /// nginx before 1.23 — Debian 12's nginx is 1.22 — sends one `HTTP_*`
    /// pair per header line, so a client that repeats a header (two
    /// `X-Forwarded-For` lines, two `Cookie` lines) would have its request
    /// refused. Merging (`true`, the default) joins the values in order
    /// with `, ` (`; ` for `HTTP_COOKIE`), as nginx 1.23, Apache and
    /// lighttpd do themselves, keeping the first pair's position. `false`
    /// rejects them. Any other repeated name is always an error.
    pub fn merge_repeated_headers(&mut self, merge: bool) -> &mut Self {
        self.merge_repeated = merge;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

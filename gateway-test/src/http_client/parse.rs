//! Parsing a whole response (HTTP/1.x or CGI output) from its bytes.

use std::fmt;

use super::Response;

/// How a response body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by rule: a response to HEAD, 1xx, 204 or 304.
    None,
    /// `Content-Length` with this value.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Delimited by the end of the connection (or, for CGI output, of the
    /// program's output); a cut cannot be detected.
    Close,
}

/// Whether the body arrived whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The declared end was reached: the last chunk and the end of the
    /// trailers, the `Content-Length`, or (for [`Framing::Close`] and
    /// [`Framing::None`]) the end of the input.
    Complete,
    /// The input ended before the declared end of the body.
    Truncated,
    /// The chunked coding was invalid; the text says where.
    Malformed(String),
}

impl Completion {
    /// True for [`Completion::Complete`].
    pub fn is_complete(&self) -> bool {
        matches!(self, Completion::Complete)
    }
}

/// A response head that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
}

impl ParseError {
    fn new(message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad response: {}", self.message)
    }
}

impl std::error::Error for ParseError {}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Splits off one line ending in LF (a CR before it is dropped). `None` if
/// there is no LF.
fn take_line(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = input.iter().position(|&b| b == b'\n')?;
    let (line, rest) = input.split_at(end);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, rest.get(1..).unwrap_or_default()))
}

/// Header fields in order, names and values decoded as ISO-8859-1.
type Fields = Vec<(String, String)>;

/// Reads header lines up to the empty line. `None` if the input ends first.
fn take_fields(mut input: &[u8]) -> Result<Option<(Fields, &[u8])>, ParseError> {
    let mut fields = Vec::new();
    loop {
        let Some((line, rest)) = take_line(input) else {
            return Ok(None);
        };
        input = rest;
        if line.is_empty() {
            return Ok(Some((fields, input)));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| {
            ParseError::new(format!("header line without a colon: {:?}", latin1(line)))
        })?;
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        fields.push((
            latin1(name),
            latin1(value).trim_matches([' ', '\t']).to_owned(),
        ));
    }
}

/// Parses a whole HTTP/1.x response, everything the server sent until it
/// closed the connection. `head_request` says whether it answers a HEAD
/// request (so no body is expected).
///
/// For a response that has no body by rule, any bytes after the head are put
/// in `body` (a correct server sends none). For a `Content-Length` or chunked
/// body, bytes after its end go to `excess`.
pub fn parse_response(raw: &[u8], head_request: bool) -> Result<Response, ParseError> {
    let (status_line, rest) =
        take_line(raw).ok_or_else(|| ParseError::new("no complete status line"))?;
    let status_line = latin1(status_line);
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    if !version.starts_with("HTTP/") {
        return Err(ParseError::new(format!(
            "not a status line: {status_line:?}"
        )));
    }
    let status = parse_status_code(parts.next().unwrap_or_default())?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let (headers, rest) = take_fields(rest)?
        .ok_or_else(|| ParseError::new("the head does not end with an empty line"))?;
    let mut response = Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
        framing: Framing::Close,
        completion: Completion::Complete,
        excess: Vec::new(),
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        response.framing = Framing::None;
        response.body = rest.to_vec();
    } else if let Some(codings) = response.header("transfer-encoding") {
        let chunked = codings
            .rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        if chunked {
            response.framing = Framing::Chunked;
            decode_chunked(rest, &mut response);
        } else {
            response.body = rest.to_vec();
        }
    } else if let Some(length) = content_length(&response)? {
        response.framing = Framing::ContentLength(length);
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if rest.len() < length {
            response.body = rest.to_vec();
            response.completion = Completion::Truncated;
        } else {
            let (body, excess) = rest.split_at(length);
            response.body = body.to_vec();
            response.excess = excess.to_vec();
        }
    } else {
        response.body = rest.to_vec();
    }
    Ok(response)
}

fn parse_status_code(text: &str) -> Result<u16, ParseError> {
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(format!("bad status code {text:?}")));
    }
    text.parse()
        .map_err(|_| ParseError::new(format!("bad status code {text:?}")))
}

/// The `Content-Length`, if any; repeated equal values are one value.
fn content_length(response: &Response) -> Result<Option<u64>, ParseError> {
    let mut found: Option<u64> = None;
    for value in response.header_all("content-length") {
        for item in value.split(',') {
            let item = item.trim();
            let n: u64 = item
                .parse()
                .map_err(|_| ParseError::new(format!("bad Content-Length {value:?}")))?;
            if found.is_some_and(|f| f != n) {
                return Err(ParseError::new("conflicting Content-Length values"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn decode_chunked(mut input: &[u8], response: &mut Response) {
    loop {
        let Some((line, rest)) = take_line(input) else {
            response.completion = Completion::Truncated;
            return;
        };
        let size_text = latin1(line);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            response.completion =
                Completion::Malformed(format!("bad chunk size line {size_text:?}"));
            return;
        };
        input = rest;
        if size == 0 {
            match take_fields(input) {
                Ok(Some((trailers, rest))) => {
                    response.trailers = trailers;
                    response.excess = rest.to_vec();
                }
                Ok(None) => response.completion = Completion::Truncated,
                Err(e) => response.completion = Completion::Malformed(e.message),
            }
            return;
        }
        if input.len() < size {
            response.body.extend_from_slice(input);
            response.completion = Completion::Truncated;
            return;
        }
        let (data, rest) = input.split_at(size);
        response.body.extend_from_slice(data);
        input = if let Some(rest) = rest.strip_prefix(b"\r\n") {
            rest
        } else if let Some(rest) = rest.strip_prefix(b"\n") {
            rest
        } else if rest.is_empty() || rest == b"\r" {
            response.completion = Completion::Truncated;
            return;
        } else {
            response.completion = Completion::Malformed("chunk data not followed by CRLF".into());
            return;
        };
    }
}

/// Parses the output of a CGI program (RFC 3875 §6): header lines ended by
/// LF or CRLF, an empty line, then the body up to the end of the output.
///
/// The status comes from the `Status` header (kept among the headers); with
/// none it is 302 when there is a `Location`, else 200. `version` is `CGI`.
/// Output that starts with `HTTP/` (a non-parsed-header program) is parsed
/// as an HTTP response.
pub fn parse_cgi_output(raw: &[u8]) -> Result<Response, ParseError> {
    if raw.starts_with(b"HTTP/") {
        return parse_response(raw, false);
    }
    let (headers, rest) = take_fields(raw)?
        .ok_or_else(|| ParseError::new("the CGI header block does not end with an empty line"))?;
    let mut response = Response {
        version: "CGI".to_owned(),
        status: 200,
        reason: String::new(),
        headers,
        body: rest.to_vec(),
        trailers: Vec::new(),
        framing: Framing::Close,
        completion: Completion::Complete,
        excess: Vec::new(),
    };
    if let Some(status) = response.header("status").map(str::to_owned) {
        let (code, reason) = status.split_once(' ').unwrap_or((&status, ""));
        response.status = parse_status_code(code)?;
        response.reason = reason.to_owned();
    } else if response.header("location").is_some() {
        response.status = 302;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b \r\n\r\nhello",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.version.as_str(), r.status, r.reason.as_str()),
            ("HTTP/1.1", 200, "OK")
        );
        assert_eq!(
            r.headers,
            vec![
                ("Content-Length".into(), "5".into()),
                ("X-A".into(), "b".into())
            ]
        );
        assert_eq!(r.body, b"hello");
        assert_eq!(r.framing, Framing::ContentLength(5));
        assert_eq!(r.completion, Completion::Complete);
        assert!(r.excess.is_empty());
    }

    #[test]
    fn content_length_short_is_truncated() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello", false).unwrap();
        assert_eq!(r.body, b"hello");
        assert_eq!(r.completion, Completion::Truncated);
    }

    #[test]
    fn content_length_excess_is_kept_apart() {
        let r =
            parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhello", false).unwrap();
        assert_eq!(r.body, b"he");
        assert_eq!(r.excess, b"llo");
    }

    #[test]
    fn conflicting_content_length_is_an_error() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc";
        assert!(parse_response(raw, false).is_err());
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc";
        assert_eq!(parse_response(raw, false).unwrap().body, b"abc");
    }

    #[test]
    fn chunked_body_with_extension_and_trailer() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.body, b"hello world");
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(r.completion, Completion::Complete);
        assert_eq!(r.trailers, vec![("X-T".into(), "1".into())]);
    }

    #[test]
    fn chunked_without_terminator_is_truncated_at_every_cut() {
        let raw: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n7\r\npartial\r\n0\r\n\r\n";
        let head_len = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        for cut in head_len..raw.len() {
            let r = parse_response(&raw[..cut], false).unwrap();
            assert_eq!(r.completion, Completion::Truncated, "cut at {cut}");
            assert!(
                b"partial".starts_with(&r.body),
                "cut at {cut}: {:?}",
                r.body
            );
        }
        assert_eq!(
            parse_response(raw, false).unwrap().completion,
            Completion::Complete
        );
    }

    #[test]
    fn chunked_with_bad_size_is_malformed() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
        let r = parse_response(raw, false).unwrap();
        assert!(
            matches!(r.completion, Completion::Malformed(_)),
            "{:?}",
            r.completion
        );
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n";
        let r = parse_response(raw, false).unwrap();
        assert!(
            matches!(r.completion, Completion::Malformed(_)),
            "{:?}",
            r.completion
        );
    }

    #[test]
    fn close_delimited_body() {
        let r = parse_response(
            b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nall of it",
            false,
        )
        .unwrap();
        assert_eq!(r.framing, Framing::Close);
        assert_eq!(r.body, b"all of it");
        assert!(r.completion.is_complete());
    }

    #[test]
    fn no_body_responses_keep_stray_bytes_in_body() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", true).unwrap();
        assert_eq!(r.framing, Framing::None);
        assert!(r.body.is_empty());
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\noops", false).unwrap();
        assert_eq!(r.framing, Framing::None);
        assert_eq!(r.body, b"oops");
    }

    #[test]
    fn bad_heads_are_errors() {
        assert!(parse_response(b"", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nX: y\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false).is_err());
        assert!(parse_response(b"Status: 200 OK\r\n\r\n", false).is_err());
    }

    #[test]
    fn latin1_bytes_survive() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nX-B: \xe9\xff\r\n\r\n", false).unwrap();
        assert_eq!(r.header("x-b"), Some("\u{e9}\u{ff}"));
    }

    #[test]
    fn cgi_output() {
        let r = parse_cgi_output(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
            .unwrap();
        assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.body, b"nope");
        let r = parse_cgi_output(b"Content-Type: text/plain\n\nlf only").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"lf only"[..]));
        let r = parse_cgi_output(b"Location: http://x/\r\n\r\n").unwrap();
        assert_eq!(r.status, 302);
        let r = parse_cgi_output(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(r.status, 201);
        assert!(parse_cgi_output(b"Status: 200 OK\r\n").is_err());
        assert!(parse_cgi_output(b"Status: abc\r\n\r\n").is_err());
    }
}

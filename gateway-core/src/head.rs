//! Response head encoders: the CGI `Status:` form and the origin
//! `HTTP/x.y` form.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode, Version, header};

/// A reason phrase to send instead of the status code's canonical one.
///
/// Put it in the response's extensions (the [`start_response`
/// adapter](crate::imperative) does so for a status like `"200 Okay"`). It
/// is sent as given, so it must not contain CR or LF; the pipeline checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonPhrase(pub Bytes);

/// How a backend's response head is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadFormat {
    /// The CGI form, used by CGI, FastCGI and SCGI: `Status: 200 OK\r\n`,
    /// the headers, a blank line. Never `Date` or `Server`.
    Cgi,
    /// The origin-server form (wsgiref's `origin_server`, and CGI's NPH
    /// mode): `HTTP/<version> 200 OK\r\n`, `Date` unless the app gave one,
    /// `Server` if set and the app gave none, then the headers. For an
    /// HTTP/0.9 request nothing at all is written.
    Origin {
        /// The version on the status line: the handler's, not the
        /// request's.
        version: Version,
        /// The `Server` product string, if any.
        server_software: Option<Bytes>,
    },
}

/// The reason phrase for `status`: the registered one, or `Unknown`.
pub(crate) fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Unknown")
}

fn put_status(buf: &mut BytesMut, status: StatusCode, reason_phrase: Option<&[u8]>) {
    buf.put_slice(status.as_str().as_bytes());
    buf.put_u8(b' ');
    match reason_phrase {
        Some(r) => buf.put_slice(r),
        None => buf.put_slice(reason(status).as_bytes()),
    }
    buf.put_slice(b"\r\n");
}

/// Room for the head and a small body after it, so that neither grows the
/// buffer piece by piece.
fn reserve_head(buf: &mut BytesMut, headers: &HeaderMap) {
    let fields: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    buf.reserve(fields + 128 + 512);
}

fn put_headers(buf: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        match written_name(name) {
            Some(line_start) => {
                buf.put_slice(line_start.as_bytes());
                buf.put_slice(value.as_bytes());
                buf.put_slice(b"\r\n");
            }
            None => put_header(buf, name.as_str().as_bytes(), value.as_bytes()),
        }
    }
}

/// The start of the line of the headers most responses carry, name
/// capitalised as [`put_header`] writes it, without a pass over the name.
fn written_name(name: &HeaderName) -> Option<&'static str> {
    // Standard names compare as their constants: a few instructions each.
    Some(if name == header::CONTENT_TYPE {
        "Content-Type: "
    } else if name == header::CONTENT_LENGTH {
        "Content-Length: "
    } else if name == header::CACHE_CONTROL {
        "Cache-Control: "
    } else if name == header::SET_COOKIE {
        "Set-Cookie: "
    } else if name == header::LOCATION {
        "Location: "
    } else if name == header::LAST_MODIFIED {
        "Last-Modified: "
    } else if name == header::ETAG {
        "Etag: "
    } else if name == header::VARY {
        "Vary: "
    } else if name == header::CONTENT_ENCODING {
        "Content-Encoding: "
    } else {
        return None;
    })
}

/// Writes a header with its name in the conventional capitalisation
/// (`content-type` → `Content-Type`), as CGI programs and wsgiref emit them.
fn put_header(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.reserve(name.len() + value.len() + 4);
    let start = buf.len();
    buf.put_slice(name);
    if let Some(written) = buf.get_mut(start..) {
        let mut upper = true;
        for b in written {
            if upper {
                b.make_ascii_uppercase();
            }
            upper = *b == b'-';
        }
    }
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// Encodes a CGI response head: `Status: <code> <reason>\r\n`, every header
/// as `Name: value\r\n` in order, and the blank line.
///
/// ```
/// use bytes::BytesMut;
/// use http::{HeaderMap, StatusCode};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("content-length", "4".parse().unwrap());
/// let mut buf = BytesMut::new();
/// gateway_core::head::encode_cgi(&mut buf, StatusCode::OK, None, &headers);
/// assert_eq!(&buf[..], b"Status: 200 OK\r\nContent-Length: 4\r\n\r\n");
/// ```
pub fn encode_cgi(
    buf: &mut BytesMut,
    status: StatusCode,
    reason_phrase: Option<&[u8]>,
    headers: &HeaderMap,
) {
    encode_cgi_with_length(buf, status, reason_phrase, headers, None);
}

/// [`encode_cgi`] with a `Content-Length` written after `headers`
/// (which have none) when `length` is given.
pub(crate) fn encode_cgi_with_length(
    buf: &mut BytesMut,
    status: StatusCode,
    reason_phrase: Option<&[u8]>,
    headers: &HeaderMap,
    length: Option<u64>,
) {
    reserve_head(buf, headers);
    buf.put_slice(b"Status: ");
    put_status(buf, status, reason_phrase);
    put_headers(buf, headers);
    put_length(buf, length);
    buf.put_slice(b"\r\n");
}

/// `Content-Length: <n>\r\n`, when there is a length.
fn put_length(buf: &mut BytesMut, length: Option<u64>) {
    let Some(mut n) = length else {
        return;
    };
    let mut line = *b"Content-Length: 00000000000000000000\r\n";
    let digits_end = line.len() - 2;
    let mut start = digits_end;
    loop {
        start -= 1;
        if let Some(d) = line.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    const PREFIX: usize = b"Content-Length: ".len();
    buf.put_slice(&line[..PREFIX]);
    buf.put_slice(&line[start..]);
}

/// Encodes an origin response head: the status line with `version`, `Date`
/// (now) unless `headers` has one, `Server` if given and absent, then the
/// headers and the blank line. HTTP/0.9 gets nothing: call
/// [`HeadFormat`]-aware code instead of this for such requests.
pub fn encode_origin(
    buf: &mut BytesMut,
    version: Version,
    status: StatusCode,
    reason_phrase: Option<&[u8]>,
    headers: &HeaderMap,
    server_software: Option<&[u8]>,
) {
    encode_origin_with_length(
        buf,
        version,
        status,
        reason_phrase,
        headers,
        server_software,
        None,
    );
}

/// [`encode_origin`] with a `Content-Length` written after `headers`
/// (which have none) when `length` is given.
pub(crate) fn encode_origin_with_length(
    buf: &mut BytesMut,
    version: Version,
    status: StatusCode,
    reason_phrase: Option<&[u8]>,
    headers: &HeaderMap,
    server_software: Option<&[u8]>,
    length: Option<u64>,
) {
    reserve_head(buf, headers);
    buf.put_slice(match version {
        Version::HTTP_10 => b"HTTP/1.0 ",
        Version::HTTP_2 => b"HTTP/2.0 ",
        _ => b"HTTP/1.1 ",
    });
    put_status(buf, status, reason_phrase);
    if !headers.contains_key(header::DATE) {
        buf.put_slice(b"Date: ");
        with_http_date(|d| buf.put_slice(d));
        buf.put_slice(b"\r\n");
    }
    if let Some(server) = server_software
        && !headers.contains_key(header::SERVER)
    {
        put_header(buf, b"server", server);
    }
    put_headers(buf, headers);
    put_length(buf, length);
    buf.put_slice(b"\r\n");
}

thread_local! {
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Calls `f` with the current time as an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted at most once a second per
/// thread.
pub fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            c.1 = format_http_date(secs);
            c.0 = secs;
        }
        f(&c.1)
    })
}

/// Formats seconds since the Unix epoch as an IMF-fixdate (RFC 9110 §5.6.7).
pub fn format_http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let weekday = DAYS[(days % 7) as usize];
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's method.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u64;

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(weekday);
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[5..7].copy_from_slice(&two(day));
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year));
    out[17..19].copy_from_slice(&two(hh));
    out[20..22].copy_from_slice(&two(mm));
    out[23..25].copy_from_slice(&two(ss));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_http_date(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        // C15's fixed date.
        assert_eq!(
            &format_http_date(1_149_533_394),
            b"Mon, 05 Jun 2006 18:49:54 GMT"
        );
        assert_eq!(
            &format_http_date(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_http_date(4_102_444_799),
            b"Thu, 31 Dec 2099 23:59:59 GMT"
        );
    }

    /// The names written from the table are the ones the capitalising
    /// rule gives.
    #[test]
    fn written_names_follow_the_capitalising_rule() {
        let names = [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CACHE_CONTROL,
            header::SET_COOKIE,
            header::LOCATION,
            header::LAST_MODIFIED,
            header::ETAG,
            header::VARY,
            header::CONTENT_ENCODING,
        ];
        for name in names {
            let line = written_name(&name).expect("in the table");
            let mut buf = BytesMut::new();
            put_header(&mut buf, name.as_str().as_bytes(), b"");
            assert_eq!(format!("{line}\r\n").as_bytes(), &buf[..], "{name}");
        }
        assert_eq!(written_name(&header::SERVER), None);
    }

    /// A length written apart reads as the same header inserted into the
    /// map, in the same place (after the others).
    #[test]
    fn a_length_apart_is_written_as_the_header_would_be() {
        for n in [0u64, 7, 10, 13, 999, 10_000, 123_456_789, u64::MAX] {
            let mut h = HeaderMap::new();
            h.insert("content-type", "text/plain".parse().unwrap());
            let mut apart = BytesMut::new();
            encode_cgi_with_length(&mut apart, StatusCode::OK, None, &h, Some(n));
            h.insert(header::CONTENT_LENGTH, n.into());
            let mut inserted = BytesMut::new();
            encode_cgi(&mut inserted, StatusCode::OK, None, &h);
            assert_eq!(apart, inserted, "{n}");
        }
    }

    #[test]
    fn header_names_are_capitalised() {
        let mut h = HeaderMap::new();
        h.insert("x-custom-thing", "v".parse().unwrap());
        h.insert("etag", "\"1\"".parse().unwrap());
        let mut buf = BytesMut::new();
        encode_cgi(&mut buf, StatusCode::NOT_FOUND, None, &h);
        assert_eq!(
            &buf[..],
            b"Status: 404 Not Found\r\nX-Custom-Thing: v\r\nEtag: \"1\"\r\n\r\n"
        );
    }

    #[test]
    fn origin_head_puts_date_and_server_first() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        let mut buf = BytesMut::new();
        encode_origin(
            &mut buf,
            Version::HTTP_11,
            StatusCode::OK,
            None,
            &h,
            Some(b"Gw/1"),
        );
        let text = std::str::from_utf8(&buf).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(
            text.ends_with(" GMT\r\nServer: Gw/1\r\nContent-Type: text/plain\r\n\r\n"),
            "{text}"
        );
    }
}

//! The header orders nginx, Apache httpd and lighttpd send.

use super::*;

#[test]
fn q7_nginx_content_length_first_marker_from_scgi_params() -> TestResult {
    // nginx writes CONTENT_LENGTH itself, then scgi_params (SCGI in the
    // middle, empty values sent as is), then the request headers as HTTP_*
    // (including HTTP_CONTENT_TYPE and HTTP_CONTENT_LENGTH).
    let mut input = request(&[
        ("CONTENT_LENGTH", "5"),
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", "/app/form?x=1"),
        ("QUERY_STRING", "x=1"),
        ("CONTENT_TYPE", "text/plain"),
        ("DOCUMENT_URI", "/app/form"),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SCGI", "1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "41234"),
        ("SERVER_PORT", "8080"),
        ("SERVER_NAME", "localhost"),
        ("HTTP_HOST", "localhost:8080"),
        ("HTTP_USER_AGENT", "curl/7.88.1"),
        ("HTTP_CONTENT_TYPE", "text/plain"),
        ("HTTP_CONTENT_LENGTH", "5"),
    ]);
    input.extend_from_slice(b"hello");
    let (header, body) = parse_with(&strict(), &input)?;
    assert_eq!(header.content_length(), 5);
    assert_eq!(header.marker(), Marker::Present);
    assert_eq!(names(&header).get(7), Some(&&b"SCGI"[..]));
    assert_eq!(header.iter().len(), 18);
    assert_eq!(body, b"hello");
    Ok(())
}

#[test]
fn q7_nginx_without_scgi_params_has_no_marker() -> TestResult {
    let input = request(&[
        ("CONTENT_LENGTH", "0"),
        ("HTTP_HOST", "localhost"),
        ("HTTP_ACCEPT", "*/*"),
    ]);
    let (header, _) = parse(&input)?;
    assert_eq!(header.marker(), Marker::Missing);
    assert_eq!(header.content_length(), 0);
    Ok(())
}

#[test]
fn q7_nginx_before_1_23_repeated_request_headers_are_merged() -> TestResult {
    // nginx 1.23 joins repeated request headers; older versions send one
    // HTTP_* pair per header line, which the format forbids: by default the
    // values are joined as nginx 1.23 would (cookies with "; ").
    let input = request(&[
        ("CONTENT_LENGTH", "0"),
        ("SCGI", "1"),
        ("HTTP_X_FORWARDED_FOR", "10.0.0.1"),
        ("HTTP_COOKIE", "a=1"),
        ("HTTP_X_FORWARDED_FOR", "10.0.0.2"),
        ("HTTP_COOKIE", "b=2"),
        ("HTTP_ACCEPT", "*/*"),
    ]);
    let (header, _) = parse(&input)?;
    let pairs: Vec<(&[u8], &[u8])> = header.iter().collect();
    assert_eq!(
        pairs,
        vec![
            (&b"CONTENT_LENGTH"[..], &b"0"[..]),
            (b"SCGI", b"1"),
            (b"HTTP_X_FORWARDED_FOR", b"10.0.0.1, 10.0.0.2"),
            (b"HTTP_COOKIE", b"a=1; b=2"),
            (b"HTTP_ACCEPT", b"*/*"),
        ]
    );
    // Merging off: the format's rule.
    let mut config = Config::new();
    config.merge_repeated_headers(false);
    assert_eq!(
        rejection(&config, &input).map(|e| e.kind()),
        Some(Kind::DuplicateName)
    );
    Ok(())
}

#[test]
fn q11_apache_content_length_then_marker_then_env() -> TestResult {
    let input = request(&[
        ("CONTENT_LENGTH", "0"),
        ("SCGI", "1"),
        ("HTTP_HOST", "localhost"),
        ("PATH", "/usr/bin:/bin"),
        ("SERVER_SIGNATURE", ""),
        ("SERVER_SOFTWARE", "Apache/2.4.62 (Debian)"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("REMOTE_ADDR", "::1"),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", ""),
        ("REQUEST_URI", "/app/"),
        ("SCRIPT_NAME", "/app/"),
    ]);
    let (header, _) = parse_with(&strict(), &input)?;
    assert_eq!(
        names(&header).get(..2),
        Some(&[&b"CONTENT_LENGTH"[..], b"SCGI"][..])
    );
    assert_eq!(header.get(b"GATEWAY_INTERFACE"), None);
    assert_eq!(header.get(b"SERVER_SIGNATURE"), Some(&b""[..]));
    Ok(())
}

#[test]
fn q14_lighttpd_marker_last() -> TestResult {
    let mut input = request(&[
        ("CONTENT_LENGTH", "3"),
        ("SERVER_SOFTWARE", "lighttpd/1.4.69"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "PUT"),
        ("REQUEST_URI", "/app/%7Ex"),
        ("SCRIPT_NAME", "/app"),
        ("PATH_INFO", "/~x"),
        ("REDIRECT_STATUS", "200"),
        ("HTTP_HOST", "localhost"),
        ("SCGI", "1"),
    ]);
    input.extend_from_slice(b"abc");
    let (header, body) = parse_with(&strict(), &input)?;
    assert_eq!(names(&header).last(), Some(&&b"SCGI"[..]));
    assert_eq!(header.get(b"REQUEST_URI"), Some(&b"/app/%7Ex"[..]));
    assert_eq!(body, b"abc");
    Ok(())
}

//! Response headers: wsgiref's `Headers` class adapted to `http::HeaderMap`
//! and our head rendering (CHECKLIST C20), hop-by-hop names (C21).

mod common;

use common::*;
use gateway_core::{Body, HOP_BY_HOP, is_hop_by_hop};
use http::{HeaderMap, HeaderValue, Response};

/// C20, adapted: wsgiref's `Headers` is a list of pairs; ours is
/// `http::HeaderMap`. Lookups are case-insensitive, `insert` replaces every
/// value (wsgiref's `h[k] = v`), removing a missing name is fine,
/// `get_all` keeps append order. `add_header(…, **params)` has no
/// counterpart (the app formats the value), and the TypeError for a
/// non-list cannot happen in Rust.
#[test]
fn c20_header_map_semantics() {
    let mut h = HeaderMap::new();
    h.append("foo", HeaderValue::from_static("bar"));
    assert_eq!(h.get("Foo").unwrap(), "bar");
    assert_eq!(h.get("FOO").unwrap(), "bar");
    h.append("Foo", HeaderValue::from_static("baz"));
    let all: Vec<_> = h.get_all("foo").iter().collect();
    assert_eq!(all, ["bar", "baz"]);
    h.insert("FOO", HeaderValue::from_static("only"));
    let all: Vec<_> = h.get_all("foo").iter().collect();
    assert_eq!(all, ["only"]);
    assert!(h.remove("missing").is_none());
    assert!(h.get("missing").is_none());
}

/// C20: rendering is `Name: value\r\n` per value in order, then `\r\n`;
/// values are bytes (Latin-1 `obs-text` passes through).
#[tokio::test]
async fn c20_rendering() {
    let app = respond(|| {
        let mut res = Response::new(Body::from("x"));
        let h = res.headers_mut();
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        h.append("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        res
    });
    let r = run_cgi(app).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Multi: 1\r\nX-Multi: 2\r\nX-Latin: caf\xe9\r\nContent-Length: 1\r\n\r\nx"
    );
    // No headers at all: the status line, then the blank line.
    let mut buf = bytes::BytesMut::new();
    gateway_core::head::encode_cgi(&mut buf, http::StatusCode::OK, None, &HeaderMap::new());
    assert_eq!(&buf[..], b"Status: 200 OK\r\n\r\n");
}

/// C21: the hop-by-hop list, in any case, with wsgiref's quirk: `Trailers`
/// (plural) is one, `Trailer` is not.
#[test]
fn c21_hop_by_hop_names() {
    for name in [
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
    ] {
        assert!(is_hop_by_hop(name), "{name}");
        assert!(is_hop_by_hop(&name.to_ascii_lowercase()), "{name}");
        assert!(is_hop_by_hop(&name.to_ascii_uppercase()), "{name}");
    }
    for name in [
        "Accept",
        "Cache-Control",
        "Date",
        "Pragma",
        "Trailer",
        "Via",
        "Warning",
    ] {
        assert!(!is_hop_by_hop(name), "{name}");
    }
    assert_eq!(HOP_BY_HOP.len(), 8);
}

/// C21/G7: the pipeline removes hop-by-hop fields (and a `Status` field)
/// from an app's response and keeps the rest.
#[tokio::test]
async fn c21_pipeline_strips_hop_by_hop() {
    let app = respond(|| {
        response(
            Body::from("x"),
            &[
                ("content-type", "text/plain"),
                ("connection", "close"),
                ("keep-alive", "timeout=5"),
                ("proxy-authenticate", "Basic"),
                ("proxy-authorization", "Basic eA=="),
                ("te", "trailers"),
                ("trailers", "x"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
                ("status", "404 Not Found"),
                ("trailer", "x-checksum"),
                ("x-a", "1"),
            ],
        )
    });
    let r = run_cgi(app).await;
    let text = r.text();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "x");
    let mut lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines.remove(0), "Status: 200 OK");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "Content-Length: 1",
            "Content-Type: text/plain",
            "Trailer: x-checksum",
            "X-A: 1"
        ]
    );
}

/// C13/C21: removing hop-by-hop fields must not reorder the others.
#[tokio::test]
async fn c21_strip_keeps_order_of_the_rest() {
    let app = respond(|| {
        response(
            Body::from("x"),
            &[
                ("x-a", "1"),
                ("connection", "close"),
                ("x-b", "2"),
                ("x-c", "3"),
                ("x-d", "4"),
            ],
        )
    });
    let r = run_cgi(app).await;
    assert_eq!(
        r.text(),
        "Status: 200 OK\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nContent-Length: 1\r\n\r\nx"
    );
}

//! The SCGI server over real loopback sockets: requests, bodies, responses
//! in CGI form.

mod support;

use std::time::Duration;

use gateway_core::Limits;
use gateway_scgi::Server;
use support::{TestServer, exchange, get, request, split};

/// The protocol document's example request.
const S1: &[u8] = b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00\
REQUEST_URI\x00/deepthought\x00,What is the answer to life?";

#[tokio::test]
async fn s1_vector_gets_a_cgi_response() {
    let server = TestServer::start(Limits::default()).await;
    let out = exchange(server.addr, S1.to_vec()).await.unwrap();
    assert_eq!(
        out,
        b"Status: 200 OK\r\nContent-Length: 27\r\n\r\nWhat is the answer to life?"
    );
}

#[tokio::test]
async fn s2_environ_is_the_header_raw_and_in_order() {
    let server = TestServer::start(Limits::default()).await;
    let req = request(
        &[
            ("REQUEST_METHOD", b"GET"),
            ("REQUEST_URI", b"/env?q=1"),
            ("HTTP_X_RAW", b"caf\xe9"),
            ("EMPTY", b""),
            ("A_LAST", b"z"),
        ],
        b"",
    );
    let out = exchange(server.addr, req).await.unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("Status: 200 OK"), "{head}");
    assert_eq!(
        body,
        b"CONTENT_LENGTH=0\nSCGI=1\nREQUEST_METHOD=GET\nREQUEST_URI=/env?q=1\n\
HTTP_X_RAW=caf\xe9\nEMPTY=\nA_LAST=z\n"
    );
}

#[tokio::test]
async fn q7_repeated_http_pairs_reach_the_environ_joined_in_place() {
    let server = TestServer::start(Limits::default()).await;
    let req = request(
        &[
            ("REQUEST_METHOD", b"GET"),
            ("REQUEST_URI", b"/env"),
            ("HTTP_COOKIE", b"a=1"),
            ("HTTP_X_FORWARDED_FOR", b"10.0.0.1"),
            ("HTTP_COOKIE", b"b=2"),
            ("HTTP_X_RAW", b"caf\xe9"),
            ("HTTP_X_FORWARDED_FOR", b"10.0.0.2"),
            ("HTTP_COOKIE", b""),
            ("A_LAST", b"z"),
        ],
        b"",
    );
    let out = exchange(server.addr, req).await.unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("Status: 200 OK"), "{head}");
    assert_eq!(
        body,
        b"CONTENT_LENGTH=0\nSCGI=1\nREQUEST_METHOD=GET\nREQUEST_URI=/env\n\
HTTP_COOKIE=a=1; b=2; \nHTTP_X_FORWARDED_FOR=10.0.0.1, 10.0.0.2\nHTTP_X_RAW=caf\xe9\nA_LAST=z\n"
    );
}

#[tokio::test]
async fn gateway_info_says_scgi_multithread_not_multiprocess() {
    let server = TestServer::start(Limits::default()).await;
    let out = exchange(server.addr, get("/info")).await.unwrap();
    let (_, body) = split(&out);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "scgi multithread=true multiprocess=false run_once=false \
         peer=Some(127.0.0.1) local=Some(127.0.0.1)"
    );
}

#[tokio::test]
async fn s3_large_body_is_streamed_exactly() {
    let server = TestServer::start(Limits::default()).await;
    let body: Vec<u8> = (0..4 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    // Bytes after CONTENT_LENGTH are not body.
    let mut req = request(&[("REQUEST_URI", b"/echo")], &body);
    req.extend_from_slice(b"JUNK AFTER THE BODY");
    let out = exchange(server.addr, req).await.unwrap();
    let (head, got) = split(&out);
    assert!(head.contains("Content-Length: 4194304"), "{head}");
    assert!(got == body, "echoed body differs ({} bytes)", got.len());
}

#[tokio::test]
async fn s3_body_sent_with_the_header_is_read_exactly() {
    // The header, the body and bytes past it in one write: the body is
    // what CONTENT_LENGTH says, whether the application reads it or not,
    // and the response arrives whole before the close.
    let server = TestServer::start(Limits::default()).await;
    for (uri, want) in [
        (&b"/echo"[..], &b"a small form body"[..]),
        (b"/ignore", b"ignored"),
    ] {
        let mut req = request(&[("REQUEST_URI", uri)], b"a small form body");
        req.extend_from_slice(b"JUNK AFTER THE BODY");
        let out = exchange(server.addr, req).await.unwrap();
        let (head, got) = split(&out);
        assert!(head.starts_with("Status: 200 OK"), "{head}");
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn b5_short_body_is_a_body_error_for_the_app() {
    let server = TestServer::start(Limits::default()).await;
    let mut req = request(&[("REQUEST_URI", b"/echo")], b"0123456789");
    req.truncate(req.len() - 4);
    // The peer ends its side after 6 of 10 body bytes.
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    wr.write_all(&req).await.unwrap();
    wr.shutdown().await.unwrap();
    let mut out = Vec::new();
    rd.read_to_end(&mut out).await.unwrap();
    let (_, body) = split(&out);
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("body error:"), "{text}");
}

#[tokio::test]
async fn body_read_timeout_fails_the_body() {
    let mut limits = Limits::default();
    limits.body_read_timeout(Duration::from_millis(200));
    let server = TestServer::start(limits).await;
    let mut req = request(&[("REQUEST_URI", b"/echo")], b"0123456789");
    req.truncate(req.len() - 4);
    // The write side stays open: the peer just stops sending.
    let out = exchange(server.addr, req).await.unwrap();
    let (_, body) = split(&out);
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("body error:"), "{text}");
}

#[tokio::test]
async fn max_body_len_is_answered_413() {
    let mut limits = Limits::default();
    limits.max_body_len(Some(4));
    let server = TestServer::start(limits).await;
    let out = exchange(
        server.addr,
        request(&[("REQUEST_URI", b"/echo")], b"too long"),
    )
    .await
    .unwrap();
    let (head, _) = split(&out);
    assert!(head.starts_with("Status: 413"), "{head}");
}

#[tokio::test]
async fn s6_lingering_close_app_answers_without_reading_1mib() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Limits::default()).await;
    let body = vec![b'x'; 1 << 20];
    let req = request(&[("REQUEST_URI", b"/ignore")], &body);
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // The body goes out in pieces, most of them after the response: like a
    // web server still sending, each write must succeed (a server that
    // closed at once would reset the connection and fail them).
    let writer = tokio::spawn(async move {
        for piece in req.chunks(64 * 1024) {
            wr.write_all(piece).await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut out = Vec::new();
    rd.read_to_end(&mut out).await.unwrap();
    assert_eq!(
        out,
        b"Status: 200 OK\r\nContent-Length: 7\r\n\r\nignored",
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let written = writer.await.unwrap();
    assert!(written.is_ok(), "body write failed: {:?}", written.err());
}

#[tokio::test]
async fn aborted_response_resets_the_connection() {
    let server = TestServer::start(Limits::default()).await;
    let result = exchange(server.addr, get("/fail-after")).await;
    match result {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(out) => panic!(
            "a failed response ended normally: {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    // The server goes on.
    let out = exchange(server.addr, get("/ignore")).await.unwrap();
    assert!(out.ends_with(b"ignored"));
}

#[tokio::test]
async fn strict_marker_rejects_a_request_without_scgi() {
    let mut server = Server::new();
    server.strict_marker(true);
    let server = TestServer::start_with(server).await;
    let out = exchange(server.addr, b"17:CONTENT_LENGTH\x000\x00,".to_vec())
        .await
        .unwrap();
    assert!(out.starts_with(b"Status: 400 Bad Request\r\n"));
    // Lenient (the default): the same request is served.
    let lenient = TestServer::start(Limits::default()).await;
    let out = exchange(lenient.addr, b"17:CONTENT_LENGTH\x000\x00,".to_vec())
        .await
        .unwrap();
    assert!(out.starts_with(b"Status: 200 OK\r\n"), "{out:?}");
}

/// A header that arrives in pieces (the first read ends inside the length,
/// the next inside the block) is served as one sent whole, and a malformed
/// one is answered 400 whether it came whole or in pieces.
#[tokio::test]
async fn a_header_in_pieces_is_served_as_one_sent_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Limits::default()).await;
    let whole = exchange(server.addr, S1.to_vec()).await.unwrap();
    let bad = b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00\
REQUEST_URI\x00/deepthought\x00;What is the answer to life?";
    let bad_whole = exchange(server.addr, bad.to_vec()).await.unwrap();
    assert!(split(&bad_whole).0.starts_with("Status: 400"));
    for (bytes, want) in [(S1, &whole), (&bad[..], &bad_whole)] {
        for cuts in [[1, 20], [3, 50], [2, 72]] {
            let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut at = 0;
            for cut in cuts {
                stream.write_all(&bytes[at..cut]).await.unwrap();
                at = cut;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            stream.write_all(&bytes[at..]).await.unwrap();
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.unwrap();
            assert_eq!(&out, want, "cut at {cuts:?}");
        }
    }
}

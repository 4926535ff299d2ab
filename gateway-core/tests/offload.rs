//! `OffloadLayer`: whole files under a configured root become an offload
//! header and an empty body; everything else is sent as it is.

use std::convert::Infallible;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use gateway_core::offload::{OffloadHeader, OffloadLayer, PathEncoding};
use gateway_core::{Body, Environ, ErrorStream, FileBody, FileRegion, Handler, StreamGateway};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-offload-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The layer's answer for a file response made from `path` (status 200).
async fn through(layer: &OffloadLayer, path: &Path) -> (StatusCode, HeaderMap, Bytes, bool) {
    through_with(layer, path, StatusCode::OK, &[]).await
}

async fn through_with(
    layer: &OffloadLayer,
    path: &Path,
    status: StatusCode,
    request_headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes, bool) {
    let path = path.to_path_buf();
    let app = tower::service_fn(move |_req: Request<Body>| {
        let path = path.clone();
        async move {
            let mut res = FileBody::open(&path).unwrap().into_response();
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        }
    });
    let mut req = Request::new(Body::empty());
    for (n, v) in request_headers {
        req.headers_mut().insert(
            http::HeaderName::try_from(*n).unwrap(),
            http::HeaderValue::try_from(*v).unwrap(),
        );
    }
    let res = layer.layer(app).oneshot(req).await.unwrap();
    let offloaded = res.body().is_offloaded();
    let region_kept = res.extensions().get::<FileRegion>().is_some();
    assert_eq!(region_kept, !offloaded, "the region goes with the body");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes, offloaded)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

fn real(path: &Path) -> Vec<u8> {
    std::fs::canonicalize(path)
        .unwrap()
        .as_os_str()
        .as_bytes()
        .to_vec()
}

fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn nginx_gets_a_percent_encoded_uri_below_its_prefix() {
    let dir = TempDir::new("nginx");
    let path = dir.file("sub dir/grüße & co.txt", b"hello");
    let layer = OffloadLayer::nginx(&dir.0, "/protected/");
    assert_eq!(layer.header(), OffloadHeader::XAccelRedirect);
    let (status, headers, body, offloaded) = through(&layer, &path).await;
    assert!(offloaded);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "x-accel-redirect"),
        Some(&b"/protected/sub%20dir/gr%C3%BC%C3%9Fe%20%26%20co.txt"[..])
    );
    assert_eq!(header(&headers, "content-length"), None);
    assert!(body.is_empty());
}

#[tokio::test]
async fn lighttpd_gets_the_real_path_percent_encoded() {
    let dir = TempDir::new("lighttpd");
    let path = dir.file("naïve 100%.bin", b"\x00\x01");
    let layer = OffloadLayer::lighttpd(&dir.0);
    let (_, headers, body, offloaded) = through(&layer, &path).await;
    assert!(offloaded);
    assert!(body.is_empty());
    assert_eq!(
        header(&headers, "x-sendfile"),
        Some(percent(&real(&path)).as_bytes())
    );
}

#[tokio::test]
async fn lighttpd_old_header_name() {
    let dir = TempDir::new("lighttpd-old");
    let path = dir.file("a.txt", b"a");
    let layer = OffloadLayer::new(OffloadHeader::XLighttpdSendFile, PathEncoding::PercentUtf8)
        .map(&dir.0, &dir.0);
    let (_, headers, _, offloaded) = through(&layer, &path).await;
    assert!(offloaded);
    assert_eq!(
        header(&headers, "x-lighttpd-send-file"),
        Some(percent(&real(&path)).as_bytes())
    );
}

#[tokio::test]
async fn apache_gets_the_raw_path() {
    let dir = TempDir::new("apache");
    let path = dir.file("grüße 100%.txt", b"raw");
    let layer = OffloadLayer::apache(&dir.0);
    let (_, headers, _, offloaded) = through(&layer, &path).await;
    assert!(offloaded);
    assert_eq!(header(&headers, "x-sendfile"), Some(&real(&path)[..]));
    // mod_xsendfile 1.0 decodes: ask for percent-encoding.
    let layer = OffloadLayer::apache(&dir.0).encoding(PathEncoding::Percent);
    let (_, headers, _, _) = through(&layer, &path).await;
    assert_eq!(
        header(&headers, "x-sendfile"),
        Some(percent(&real(&path)).as_bytes())
    );
}

/// A file-system target other than the root: the web server sees the files
/// elsewhere.
#[tokio::test]
async fn mapped_target_directory() {
    let dir = TempDir::new("mapped");
    let path = dir.file("x/y.txt", b"y");
    let layer = OffloadLayer::new(OffloadHeader::XSendfile, PathEncoding::Raw)
        .map(&dir.0, "/var/www/files");
    let (_, headers, _, _) = through(&layer, &path).await;
    assert_eq!(
        header(&headers, "x-sendfile"),
        Some(&b"/var/www/files/x/y.txt"[..])
    );
}

#[tokio::test]
async fn files_outside_the_root_are_sent_normally() {
    let root = TempDir::new("root");
    let other = TempDir::new("other");
    let inside = root.file("in.txt", b"in");
    let outside = other.file("secret.txt", b"secret");
    let layer = OffloadLayer::nginx(&root.0, "/protected/");

    let (_, headers, body, offloaded) = through(&layer, &outside).await;
    assert!(!offloaded);
    assert_eq!(&body[..], b"secret");
    assert_eq!(header(&headers, "content-length"), Some(&b"6"[..]));
    assert_eq!(header(&headers, "x-accel-redirect"), None);

    // `..` out of the root.
    let escape = root
        .0
        .join("..")
        .join(other.0.file_name().unwrap())
        .join("secret.txt");
    let (_, headers, body, offloaded) = through(&layer, &escape).await;
    assert!(!offloaded, "{:?}", headers);
    assert_eq!(&body[..], b"secret");

    // A symbolic link inside the root to a file outside it.
    let link = root.0.join("link.txt");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let (_, _, body, offloaded) = through(&layer, &link).await;
    assert!(!offloaded);
    assert_eq!(&body[..], b"secret");

    // A sibling directory whose name starts with the root's is outside.
    let sibling = PathBuf::from(format!("{}-sibling", root.0.display()));
    std::fs::create_dir_all(&sibling).unwrap();
    std::fs::write(sibling.join("s.txt"), b"s").unwrap();
    let (_, _, _, offloaded) = through(&layer, &sibling.join("s.txt")).await;
    std::fs::remove_dir_all(&sibling).unwrap();
    assert!(!offloaded);

    // `..` that stays inside is fine, and resolves.
    std::fs::create_dir_all(root.0.join("sub")).unwrap();
    let (_, headers, _, offloaded) = through(&layer, &root.0.join("sub/../in.txt")).await;
    assert!(offloaded);
    assert_eq!(
        header(&headers, "x-accel-redirect"),
        Some(&b"/protected/in.txt"[..])
    );
    let _ = inside;
}

/// A root reached through a symbolic link is resolved, so its files match.
#[tokio::test]
async fn root_behind_a_symbolic_link() {
    let dir = TempDir::new("linked-root");
    let path = dir.file("real/f.txt", b"f");
    let link = dir.0.join("alias");
    std::os::unix::fs::symlink(dir.0.join("real"), &link).unwrap();
    let layer = OffloadLayer::nginx(&link, "/p");
    let (_, headers, _, offloaded) = through(&layer, &path).await;
    assert!(offloaded);
    assert_eq!(header(&headers, "x-accel-redirect"), Some(&b"/p/f.txt"[..]));
}

/// The header and mapping come from the configuration alone: a client's
/// `X-Sendfile-Type` and `X-Accel-Mapping` change nothing.
#[tokio::test]
async fn request_headers_choose_nothing() {
    let dir = TempDir::new("client");
    let path = dir.file("f.txt", b"f");
    let layer = OffloadLayer::lighttpd(&dir.0);
    let (_, headers, _, offloaded) = through_with(
        &layer,
        &path,
        StatusCode::OK,
        &[
            ("x-sendfile-type", "X-Accel-Redirect"),
            ("x-accel-mapping", "/=/internal/"),
        ],
    )
    .await;
    assert!(offloaded);
    assert_eq!(header(&headers, "x-accel-redirect"), None);
    assert_eq!(
        header(&headers, "x-sendfile"),
        Some(percent(&real(&path)).as_bytes())
    );
}

#[tokio::test]
async fn only_200_responses_are_offloaded() {
    let dir = TempDir::new("status");
    let path = dir.file("404.html", b"not here");
    let layer = OffloadLayer::nginx(&dir.0, "/protected/");
    let (status, headers, body, offloaded) =
        through_with(&layer, &path, StatusCode::NOT_FOUND, &[]).await;
    assert!(!offloaded);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(&body[..], b"not here");
    assert_eq!(header(&headers, "x-accel-redirect"), None);
}

/// A part of a file, or a file body not opened from a path, is streamed.
#[tokio::test]
async fn partial_and_pathless_bodies_are_sent_normally() {
    let dir = TempDir::new("partial");
    let path = dir.file("digits.txt", b"0123456789");
    let layer = OffloadLayer::nginx(&dir.0, "/protected/");
    for (offset, len) in [(2, 5), (0, 10)] {
        let path = path.clone();
        let app = tower::service_fn(move |_req: Request<Body>| {
            let file = std::fs::File::open(&path).unwrap();
            async move { Ok::<_, Infallible>(FileBody::from_file(file, offset, len).into_response()) }
        });
        let res = layer
            .layer(app)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert!(!res.body().is_offloaded());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len() as u64, len);
    }
}

/// The path must still name the file that was opened.
#[tokio::test]
async fn a_file_replaced_after_opening_is_not_offloaded() {
    let dir = TempDir::new("replaced");
    let path = dir.file("f.txt", b"old!");
    let body = FileBody::open(&path).unwrap();
    let replacement = dir.file("g.txt", b"new!");
    std::fs::rename(&replacement, &path).unwrap();
    let layer = OffloadLayer::lighttpd(&dir.0);
    assert_eq!(layer.header_value(body.region()), None);
    let res = layer.offload(body.into_response());
    assert!(!res.body().is_offloaded());
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"old!"
    );
}

/// A header the application set itself is left alone.
#[tokio::test]
async fn an_existing_header_is_kept() {
    let dir = TempDir::new("existing");
    let path = dir.file("f.txt", b"f");
    let layer = OffloadLayer::nginx(&dir.0, "/protected/");
    let mut res = FileBody::open(&path).unwrap().into_response();
    res.headers_mut()
        .insert("x-accel-redirect", http::HeaderValue::from_static("/mine"));
    let res = layer.offload(res);
    assert!(!res.body().is_offloaded());
    assert_eq!(
        header(res.headers(), "x-accel-redirect"),
        Some(&b"/mine"[..])
    );
}

/// Names with `%`, `?` and bytes that are not UTF-8: nginx and Apache 1.0
/// take them percent-encoded, lighttpd refuses what is not UTF-8, and the
/// raw form refuses control characters.
#[tokio::test]
async fn awkward_names() {
    let dir = TempDir::new("names");
    let percent_name = dir.file("100%41.txt", b"p");
    let question = dir.file("what?.txt", b"q");
    let nginx = OffloadLayer::nginx(&dir.0, "/protected/");
    let (_, headers, _, offloaded) = through(&nginx, &percent_name).await;
    assert!(offloaded);
    assert_eq!(
        header(&headers, "x-accel-redirect"),
        Some(&b"/protected/100%2541.txt"[..])
    );
    let (_, headers, _, _) = through(&nginx, &question).await;
    assert_eq!(
        header(&headers, "x-accel-redirect"),
        Some(&b"/protected/what%3F.txt"[..])
    );
    let lighttpd = OffloadLayer::lighttpd(&dir.0);
    assert!(through(&lighttpd, &percent_name).await.3);
    assert!(through(&lighttpd, &question).await.3);

    let latin1 = dir.0.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&latin1, b"l").unwrap();
    let (_, _, body, offloaded) = through(&lighttpd, &latin1).await;
    assert!(!offloaded, "not UTF-8");
    assert_eq!(&body[..], b"l");
    let (_, headers, _, offloaded) = through(&nginx, &latin1).await;
    assert!(offloaded);
    assert_eq!(
        header(&headers, "x-accel-redirect"),
        Some(&b"/protected/caf%E9.txt"[..])
    );
    let apache = OffloadLayer::apache(&dir.0);
    let newline = dir.file("a\nb.txt", b"n");
    assert!(!through(&apache, &newline).await.3);
    assert!(through(&nginx, &newline).await.3);
}

/// Through the handler: the head carries the header and `Content-Length: 0`
/// and nothing else is written, for GET and for HEAD.
#[tokio::test]
async fn through_the_handler_only_a_head_is_sent() {
    let dir = TempDir::new("handler");
    let path = dir.file("big.bin", &vec![b'z'; 200_000]);
    for method in ["GET", "HEAD"] {
        let path = path.clone();
        let app = tower::service_fn(move |_req: Request<Body>| {
            let path = path.clone();
            async move {
                let mut res = FileBody::open(&path).unwrap().into_response();
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/octet-stream"),
                );
                Ok::<Response<FileBody>, Infallible>(res)
            }
        });
        let app = OffloadLayer::nginx(&dir.0, "/protected/").layer(app);
        let mut env = Environ::new();
        env.setup_testing_defaults();
        env.insert("REQUEST_METHOD", method);
        let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), env);
        let outcome = Handler::new().run(&mut gw, app).await;
        assert!(outcome.is_complete(), "{outcome:?}");
        assert_eq!(outcome.bytes_sent(), 0);
        // A HEAD response with no body says nothing about the size.
        let length = if method == "GET" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        assert_eq!(
            String::from_utf8_lossy(gw.writer()),
            format!(
                "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 X-Accel-Redirect: /protected/big.bin\r\n{length}\r\n"
            ),
            "{method}"
        );
    }
}

/// The layer goes on an axum `Router` like any other.
#[tokio::test]
async fn on_an_axum_router() {
    let dir = TempDir::new("axum");
    let path = dir.file("report.pdf", b"%PDF");
    let served = path.clone();
    let app = axum::Router::new()
        .route(
            "/report",
            axum::routing::get(move || {
                let served = served.clone();
                async move { FileBody::open(&served).unwrap().into_response() }
            }),
        )
        .layer(OffloadLayer::nginx(&dir.0, "/protected/"));
    let req = Request::builder()
        .uri("/report")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "x-accel-redirect"),
        Some(&b"/protected/report.pdf"[..])
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

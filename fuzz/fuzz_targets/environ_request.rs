//! Arbitrary CGI meta-variables into the core's request building and into
//! a whole request through the handler, under every path view the backends
//! offer (the full path, the path below `SCRIPT_NAME`, a mount prefix).
//!
//! Input layout: byte 0 picks the path view and the head form, the rest is
//! the environ: lines (`\n`) of `NAME=VALUE` (a line without `=` is a name
//! with an empty value), then, after a line that is exactly `--`, the body.
//!
//! Checks that nothing panics; that a request that builds has a path that
//! starts with `/` and a URI that parses again to the same; that the path
//! the application sees under a path view is a suffix-preserving cut of
//! the full path; and that the handler always writes a response head,
//! except to an HTTP/0.9 request in the origin form, which gets the body
//! alone.

#![no_main]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gateway_core::request::build_request;
use gateway_core::{Body, ErrorStream, Handler, Limits, PathView, StreamGateway};
use gateway_fuzz::{environ_and_body, runtime};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

fn view(selector: u8) -> PathView {
    match selector % 4 {
        0 => PathView::Full,
        1 => PathView::ScriptRelative,
        2 => PathView::Mount(Bytes::from_static(b"/app")),
        _ => PathView::Mount(Bytes::from_static(b"/a%2Fb")),
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, input @ ..] = data else {
        return;
    };
    let (env, body) = environ_and_body(input);

    // The core's builder alone.
    let full = match build_request(&env, Body::empty()) {
        Ok(req) => {
            let uri = req.uri();
            assert!(uri.path().starts_with('/'), "path {:?}", uri.path());
            let again: Uri = uri.to_string().parse().expect("the URI parses again");
            assert_eq!(&again, uri);
            Some(uri.path().to_owned())
        }
        Err(_) => None,
    };

    // A whole request through the handler.
    let mut limits = Limits::default();
    limits.max_body_len(Some(1024));
    let handler = Handler::builder()
        .path_view(view(*selector))
        .limits(limits)
        .build();
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let seen_app = seen.clone();
    let app = tower::service_fn(move |req: Request<Body>| {
        let seen = seen_app.clone();
        async move {
            *seen.lock().unwrap() = Some(req.uri().path().to_owned());
            let n = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().len(),
                Err(_) => usize::MAX,
            };
            Ok::<_, Infallible>(Response::new(Body::from(format!("{n}\n"))))
        }
    });
    let origin = selector & 4 != 0;
    // HTTP/0.9 has no response head: the origin form answers it with the
    // body alone. (`SERVER_PROTOCOL` is read as the core reads it.)
    let http09 = origin
        && env.get("SERVER_PROTOCOL").is_some_and(|p| {
            p.len() == 8 && p[..5].eq_ignore_ascii_case(b"HTTP/") && &p[5..] == b"0.9"
        });
    let out = runtime().block_on(async {
        let reader = std::io::Cursor::new(body);
        let mut gw = if origin {
            StreamGateway::origin(reader, Vec::new(), ErrorStream::null(), env)
        } else {
            StreamGateway::cgi(reader, Vec::new(), ErrorStream::null(), env)
        };
        handler.run(&mut gw, app).await;
        gw.into_writer()
    });
    let seen = seen.lock().unwrap().take();
    if http09 {
        // No head; when the application ran, its body is all there is.
        assert!(!out.starts_with(b"HTTP/"), "a head for HTTP/0.9");
        if seen.is_some() {
            let n = out.strip_suffix(b"\n").expect("the body ends the output");
            assert!(
                !n.is_empty() && n.iter().all(u8::is_ascii_digit),
                "not the body alone: {:?}",
                String::from_utf8_lossy(&out[..out.len().min(64)])
            );
        }
    } else {
        let head_start: &[u8] = if origin { b"HTTP/1." } else { b"Status: " };
        assert!(
            out.starts_with(head_start),
            "no head: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(64)])
        );
    }
    if let Some(path) = seen {
        assert!(path.starts_with('/'), "application saw {path:?}");
        let full = full.expect("the handler built what the builder refused");
        // A path view only cuts a prefix off the full path.
        assert!(
            full.ends_with(&path) || path == "/",
            "full {full:?}, seen {path:?}"
        );
    }
});

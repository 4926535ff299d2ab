//! Arbitrary meta-variables and standard input into a whole CGI request:
//! the IIS `PATH_INFO` fix (when asked), then `serve_streams`, which reads
//! at most `CONTENT_LENGTH` bytes of body and writes a CGI response.
//!
//! Input layout: byte 0 (bit 0: apply the IIS fix), then lines (`\n`) of
//! `NAME=VALUE`, then a line that is exactly `--` and the standard input.
//!
//! Checks that nothing panics, that the fix only ever shortens `PATH_INFO`
//! by a prefix, that the response starts with a `Status:` line (the CGI
//! head form), and that the application never reads more body than
//! `CONTENT_LENGTH` allows.

#![no_main]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gateway_cgi::{fix_iis_path_info, serve_streams};
use gateway_core::{Body, ErrorStream, Handler};

use gateway_fuzz::{environ_and_body, runtime};
use http::{Request, Response};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [options, input @ ..] = data else {
        return;
    };
    let (mut env, stdin) = environ_and_body(input);
    if options & 1 != 0 {
        let before = env.get("PATH_INFO").map(<[u8]>::to_vec);
        fix_iis_path_info(&mut env);
        let after = env.get("PATH_INFO").map(<[u8]>::to_vec);
        match (before, after) {
            (Some(b), Some(a)) => assert!(b.ends_with(&a), "{b:?} became {a:?}"),
            (None, None) => {}
            (b, a) => panic!("{b:?} became {a:?}"),
        }
    }
    // The most body the application may see: CONTENT_LENGTH, nothing when
    // there is none, everything when the length is unknown.
    let limit = match env.body_length() {
        Ok(length) => length.exact().unwrap_or(u64::MAX),
        Err(_) => 0,
    };

    let read = Arc::new(AtomicUsize::new(0));
    let read_app = read.clone();
    let app = tower::service_fn(move |req: Request<Body>| {
        let read = read_app.clone();
        async move {
            if let Ok(body) = req.into_body().collect().await {
                read.store(body.to_bytes().len(), Ordering::Relaxed);
            }
            Ok::<_, Infallible>(Response::new(Body::from("ok\n")))
        }
    });
    let handler = Handler::new();
    let out = runtime().block_on(async {
        let mut out = Vec::new();
        serve_streams(
            &handler,
            std::io::Cursor::new(stdin),
            &mut out,
            ErrorStream::null(),
            env,
            app,
        )
        .await;
        out
    });
    assert!(out.starts_with(b"Status: "), "no CGI head");
    let n = read.load(Ordering::Relaxed) as u64;
    assert!(n <= limit, "read {n} bytes, at most {limit} allowed");
});

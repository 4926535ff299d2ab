//! The imperative `start_response` / `write` adapter (CHECKLIST C6, C11,
//! C19, C29–C31).

mod common;

use common::*;
use gateway_core::imperative::{self, Responder};
use gateway_core::{Body, BoxError};
use http::Request;

/// C6: `write(b"http")` and return → no Content-Length, the head went out
/// with the first write.
#[tokio::test]
async fn c6_write_then_return() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[])?;
        r.write("http").await?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\nhttp"
    );
    assert!(r.outcome.is_complete());
    assert_eq!(r.errors, "");
}

/// C6 variant: start_response and nothing written → `Content-Length: 0`.
#[tokio::test]
async fn c9_start_response_only() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("404 Not Found", &[("Content-Type", "text/plain")])?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(
        r.out,
        b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    );
}

/// C11: output, then an error → exactly the output, no page; the error is
/// logged and the response aborted.
#[tokio::test]
async fn c11_error_after_output() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[])?;
        r.write("Some output has been sent").await?;
        Err("failure after output".into())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\nSome output has been sent"
    );
    assert!(r.outcome.is_aborted());
    assert!(r.errors.contains("failure after output"), "{}", r.errors);
}

/// C11 across a yield: the head is already out when the error comes.
#[tokio::test]
async fn c11_error_after_output_across_yield() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[])?;
        r.write("Some output has been sent").await?;
        tokio::task::yield_now().await;
        Err("failure after output".into())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(
        r.out,
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\nSome output has been sent"
    );
    assert!(r.outcome.is_aborted());
    assert!(r.errors.contains("failure after output"), "{}", r.errors);
}

/// C19: a bad status → the C10 page, with wsgiref's message on the error
/// stream.
#[tokio::test]
async fn c19_bad_status_gives_page_and_message() {
    for (status, message) in [
        ("200", "Status must be at least 4 characters"),
        ("20X OK", "Status message must begin w/3-digit code"),
        ("200OK", "Status message must have a space after code"),
    ] {
        let app = imperative::service(move |_req: Request<Body>, r: Responder| async move {
            r.start_response(status, &[])?;
            Ok(())
        });
        let r = run_cgi(app).await;
        assert_eq!(r.out, ERROR_PAGE, "{status}");
        assert!(r.errors.contains(message), "{status}: {}", r.errors);
        assert!(r.outcome.is_error_page());
    }
}

/// A custom reason phrase is sent as given.
#[tokio::test]
async fn c19_custom_reason_phrase() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 Okay Then", &[])?;
        r.write("x").await?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(
        r.out,
        b"Status: 200 Okay Then\r\nX-Accel-Buffering: no\r\n\r\nx"
    );
}

/// C29: a second start_response is "Headers already set!" (→ page).
#[tokio::test]
async fn c29_start_response_twice() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[])?;
        r.start_response("201 Created", &[])?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(r.errors.contains("Headers already set!"), "{}", r.errors);
}

/// C29: replacing the response before anything is sent works (what
/// `exc_info` is for).
#[tokio::test]
async fn c29_replace_response_before_sending() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[("Content-Type", "text/html")])?;
        r.replace_response("503 Service Unavailable", &[("Retry-After", "5")])?;
        r.write("busy").await?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(
        r.out,
        b"Status: 503 Service Unavailable\r\nRetry-After: 5\r\nX-Accel-Buffering: no\r\n\r\nbusy"
    );
}

/// C29: after the head is sent, replacing fails; returning the error aborts
/// the response (the original output stands, nothing is added).
#[tokio::test]
async fn c29_replace_response_after_sending_fails() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[])?;
        r.write("a").await?;
        tokio::task::yield_now().await;
        r.replace_response("500 Internal Server Error", &[])?;
        r.write("never").await?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(r.out, b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\na");
    assert!(r.outcome.is_aborted());
    assert!(r.errors.contains("Headers already sent"), "{}", r.errors);
}

/// C30: a hop-by-hop header from start_response → page.
#[tokio::test]
async fn c30_hop_by_hop_refused() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[("Connection", "close")])?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(
        r.errors.contains("Hop-by-hop headers not allowed"),
        "{}",
        r.errors
    );
}

/// C18/C30: control characters in a header value → page.
#[tokio::test]
async fn c18_control_character_in_value() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[("X-Bad", "a\r\nInjected: 1")])?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(!r.text().contains("Injected"));
}

/// C31: write before start_response is an error (→ page).
#[tokio::test]
async fn c31_write_before_start_response() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.write("too early").await?;
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(r.out, ERROR_PAGE);
    assert!(
        r.errors.contains("write() before start_response()"),
        "{}",
        r.errors
    );
}

/// Returning without start_response is an error (→ page).
#[tokio::test]
async fn c31_no_start_response_at_all() {
    async fn app(_req: Request<Body>, _r: Responder) -> Result<(), BoxError> {
        Ok(())
    }
    let r = run_cgi(imperative::service(app)).await;
    assert_eq!(r.out, ERROR_PAGE);
}

/// C31: every write reaches the client promptly: when the function waits
/// between writes, the gateway writes and flushes what it has. (A bare
/// `yield_now` is not a wait: the body re-polls the function at once and
/// the writes coalesce; a timer is a real wait.)
#[tokio::test]
async fn c31_writes_flushed_as_they_come() {
    async fn app(_req: Request<Body>, r: Responder) -> Result<(), BoxError> {
        r.start_response("200 OK", &[])?;
        for part in ["one ", "two ", "three"] {
            r.write(part).await?;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        Ok(())
    }
    let mut gw = Recorder::new(testing_env());
    let outcome = gateway_core::Handler::new()
        .run(&mut gw, imperative::service(app))
        .await;
    assert!(outcome.is_complete());
    assert_eq!(
        gw.output(),
        b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\none two three"
    );
    // Each write is followed by a flush.
    let flushes = gw.events.iter().filter(|e| **e == Event::Flush).count();
    assert!(flushes >= 3, "{:?}", gw.events);
    assert_eq!(
        gw.writes(),
        vec![
            b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\none ".to_vec(),
            b"two ".to_vec(),
            b"three".to_vec()
        ]
    );
}

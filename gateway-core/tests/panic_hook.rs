//! The panic hook a handler installs: a panic raised while the handler polls
//! the application reaches the previous hook once per location, message and
//! interval; every other panic reaches it unchanged.
//!
//! The panic hook belongs to the whole process, so this file holds a single
//! test: nothing else runs in its process meanwhile.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gateway_core::{Body, BoxError, ErrorStream, Handler, StreamGateway};
use http::{Request, Response};
use tower::Service;

/// An app that panics with `msg` when called (one location for all).
fn panicking(
    msg: String,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(move |_req: Request<Body>| {
        let msg = msg.clone();
        async move {
            if !msg.is_empty() {
                panic!("{msg}");
            }
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    })
}

async fn run_n<S, B>(handler: &Handler, n: usize, app: S)
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError>,
{
    for _ in 0..n {
        let mut gw = StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), testing_env());
        handler.run(&mut gw, app.clone()).await;
        assert_eq!(gw.writer(), ERROR_PAGE);
    }
}

type Seen = Arc<Mutex<HashMap<String, usize>>>;

fn forwarded(seen: &Seen, msg: &str) -> usize {
    seen.lock().unwrap().get(msg).copied().unwrap_or(0)
}

#[test]
fn repeated_app_panics_reach_the_previous_hook_once() {
    // The "previous" hook: counts what reaches it, by message.
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = match payload.downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        };
        *record.lock().unwrap().entry(msg).or_default() += 1;
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Building a handler wraps the hook.
        let handler = Handler::new();

        run_n(&handler, 1000, panicking("app panic".into())).await;
        assert_eq!(forwarded(&seen, "app panic"), 1);

        // Panics in the response body too.
        let body = Scripted::new([Step::Pending, Step::Panic("body panic")]);
        run_n(&handler, 100, respond(move || Response::new(body.clone()))).await;
        let body = Scripted::new([data(b"x"), Step::Pending, Step::Panic("body panic")]);
        let app = respond(move || Response::new(body.clone()));
        for _ in 0..100 {
            let mut gw =
                StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), testing_env());
            assert!(handler.run(&mut gw, app.clone()).await.is_aborted());
        }
        assert_eq!(forwarded(&seen, "body panic"), 1);

        // Distinct messages at one location are told apart.
        for i in 0..10 {
            run_n(&handler, 3, panicking(format!("numbered panic {i}"))).await;
        }
        for i in 0..10 {
            assert_eq!(forwarded(&seen, &format!("numbered panic {i}")), 1);
        }

        // A handler that opts out marks nothing: every panic goes through.
        let loud = Handler::builder().quiet_repeated_panics(false).build();
        run_n(&loud, 10, panicking("loud panic".into())).await;
        assert_eq!(forwarded(&seen, "loud panic"), 10);

        // So does a zero interval.
        let every = Handler::builder().repeat_summary(Duration::ZERO).build();
        run_n(&every, 10, panicking("every panic".into())).await;
        assert_eq!(forwarded(&seen, "every panic"), 10);

        // Once per interval.
        let interval = Duration::from_millis(300);
        let short = Handler::builder().repeat_summary(interval).build();
        run_n(&short, 10, panicking("interval panic".into())).await;
        assert_eq!(forwarded(&seen, "interval panic"), 1);
        tokio::time::sleep(interval + Duration::from_millis(50)).await;
        run_n(&short, 10, panicking("interval panic".into())).await;
        assert_eq!(forwarded(&seen, "interval panic"), 2);
    });

    // Panics outside an application all reach the previous hook.
    for _ in 0..10 {
        let caught = std::panic::catch_unwind(|| panic!("outside panic"));
        assert!(caught.is_err());
    }
    assert_eq!(forwarded(&seen, "outside panic"), 10);

    let _ = std::panic::take_hook();
}

//! The slow-request log: a request still running past
//! [`Limits::slow_request`](crate::Limits::slow_request) is logged once,
//! with what it is doing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::body::Body;
use crate::error::BoxError;

const WRITING: u8 = 1;

/// Where a request is: in the application (until its response head), or
/// sending the response; and whether it waits for the request body.
#[derive(Debug, Default)]
pub(crate) struct Phase {
    stage: AtomicU8,
    reading: AtomicBool,
}

impl Phase {
    pub(crate) fn writing(&self) {
        self.stage.store(WRITING, Ordering::Relaxed);
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.reading.load(Ordering::Relaxed) {
            "reading the request body"
        } else if self.stage.load(Ordering::Relaxed) == WRITING {
            "writing the response"
        } else {
            "in the application"
        })
    }
}

/// The request body, noting when the application waits for it.
pub(crate) fn watch_body(body: Body, phase: Arc<Phase>) -> Body {
    Body::new(Watched { body, phase })
}

struct Watched {
    body: Body,
    phase: Arc<Phase>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        self.phase
            .reading
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.body)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.phase.reading.store(false, Ordering::Relaxed);
    }
}

/// What the slow-request line says about a request.
#[derive(Debug)]
pub(crate) struct SlowLog {
    pub(crate) threshold: Duration,
    pub(crate) phase: Arc<Phase>,
    pub(crate) method: http::Method,
    /// The path and query.
    pub(crate) uri: String,
}

pin_project! {
    struct Armed {
        #[pin]
        timer: Sleep,
        start: Instant,
        log: SlowLog,
    }
}

pin_project! {
    /// Runs a request, and logs it once if it is still running after the
    /// threshold (when there is one).
    pub(crate) struct Watch<F> {
        #[pin]
        inner: F,
        armed: Option<Pin<Box<Armed>>>,
    }
}

impl<F> Watch<F> {
    pub(crate) fn new(inner: F, log: Option<SlowLog>) -> Self {
        let armed = log.map(|log| {
            let start = Instant::now();
            Box::pin(Armed {
                timer: tokio::time::sleep_until(start + log.threshold),
                start,
                log,
            })
        });
        Self { inner, armed }
    }
}

impl<F: Future> Future for Watch<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(out);
        }
        if let Some(armed) = this.armed
            && armed.as_mut().project().timer.poll(cx).is_ready()
        {
            let Armed { start, log, .. } = &**armed;
            tracing::warn!(
                target: "gateway_core::slow_request",
                method = %log.method,
                uri = %log.uri,
                elapsed_ms = start.elapsed().as_millis() as u64,
                phase = %log.phase,
                "slow request"
            );
            *this.armed = None;
        }
        Poll::Pending
    }
}

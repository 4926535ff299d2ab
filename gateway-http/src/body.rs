//! The request body with a per-read timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::BoxError;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// A body whose every frame must arrive within `timeout` of asking for
    /// it (`Limits::body_read_timeout`), so a client that stops sending
    /// cannot hold the application forever.
    pub(crate) struct TimeoutBody<B> {
        #[pin]
        inner: B,
        // Made on the first read, so a body never read costs no timer.
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
        waiting: bool,
    }
}

impl<B> TimeoutBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: None,
            timeout,
            waiting: false,
        }
    }
}

impl<B> http_body::Body for TimeoutBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if !*this.waiting {
            let deadline = Instant::now() + *this.timeout;
            match this.sleep.as_mut().as_pin_mut() {
                Some(sleep) => sleep.reset(deadline),
                None => this.sleep.set(Some(tokio::time::sleep_until(deadline))),
            }
            *this.waiting = true;
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            *this.waiting = false;
            return Poll::Ready(Some(Err("reading the request body timed out".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

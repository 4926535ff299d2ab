//! The request body with a per-read timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::BoxError;
use gateway_core::server::Stall;
use http_body::{Frame, SizeHint};

pin_project_lite::pin_project! {
    /// A body whose every frame must arrive within `timeout` of asking for
    /// it (`Limits::body_read_timeout`), so a client that stops sending
    /// cannot hold the application forever.
    pub(crate) struct TimeoutBody<B> {
        #[pin]
        inner: B,
        stall: Stall,
    }
}

impl<B> TimeoutBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            stall: Stall::new(timeout),
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
        let this = self.project();
        let poll = this.inner.poll_frame(cx);
        if this.stall.expired(poll.is_ready(), cx) {
            return Poll::Ready(Some(Err("reading the request body timed out".into())));
        }
        poll.map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

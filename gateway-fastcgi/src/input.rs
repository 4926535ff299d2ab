//! Request input streams (`FCGI_STDIN`, `FCGI_DATA`) as bodies, with flow
//! control.
//!
//! The connection driver pushes each record's bytes into a per-request
//! queue; the application pulls them out through an [`http_body::Body`]. A
//! queue may hold up to [`QUEUE_BOUND`] bytes: past that the driver stops
//! reading the connection until the application has taken some. So on a
//! multiplexed connection a request whose application reads slowly does not
//! hold up the others until it has that much unread input waiting; a
//! connection carrying one request at a time (what web servers do) simply
//! follows the application's pace, and memory stays bounded either way.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{Notify, mpsc};

/// How many unread bytes one request's input queue holds before the driver
/// stops reading the connection.
pub(crate) const QUEUE_BOUND: usize = 256 * 1024;

/// The driver's end of an input queue.
#[derive(Debug, Clone)]
pub(crate) struct InputSender {
    tx: mpsc::UnboundedSender<Bytes>,
    flow: Arc<Flow>,
}

#[derive(Debug, Default)]
struct Flow {
    queued: AtomicUsize,
    drained: Notify,
}

/// A new queue and the body that reads it. `length` is the declared length
/// (`CONTENT_LENGTH`), when there is one.
pub(crate) fn channel(length: Option<u64>) -> (InputSender, InputBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    let flow = Arc::new(Flow::default());
    (
        InputSender {
            tx,
            flow: flow.clone(),
        },
        InputBody {
            rx: Some(rx),
            flow: Some(flow),
            remaining: length,
            done: false,
        },
    )
}

impl InputSender {
    /// Queues `data`; returns false when the body is gone (the application
    /// finished or dropped it), so the bytes are discarded.
    pub(crate) fn push(&self, data: Bytes) -> bool {
        let len = data.len();
        self.flow.queued.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(data).is_err() {
            self.flow.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Whether the queue is over its bound (and the body still reading).
    pub(crate) fn is_full(&self) -> bool {
        !self.tx.is_closed() && self.flow.queued.load(Ordering::Acquire) > QUEUE_BOUND
    }

    /// Waits until the queue is back under its bound or the body is gone.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.flow.drained.notified();
            if !self.is_full() {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = self.tx.closed() => return,
            }
        }
    }
}

/// A request input stream as a body: the bytes of the stream's records, up
/// to its end marker.
///
/// With a declared length, the body is cut at that length, and an end marker
/// before it is an error (the client's upload failed, spec §6.2). Without
/// one (an upload the web server streams without a length), the body runs to
/// the end marker.
#[derive(Debug)]
pub(crate) struct InputBody {
    /// `None` when the stream had ended, empty, before the body was made.
    rx: Option<mpsc::UnboundedReceiver<Bytes>>,
    flow: Option<Arc<Flow>>,
    remaining: Option<u64>,
    done: bool,
}

impl InputBody {
    /// The body of a stream whose end marker arrived before any data (no
    /// queue needed). `length` is the declared length, as for [`channel`].
    pub(crate) fn ended(length: Option<u64>) -> InputBody {
        InputBody {
            rx: None,
            flow: None,
            remaining: length,
            done: false,
        }
    }
}

impl http_body::Body for InputBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.done || this.remaining == Some(0) {
            this.done = true;
            return Poll::Ready(None);
        }
        let polled = match this.rx.as_mut() {
            Some(rx) => rx.poll_recv(cx),
            None => Poll::Ready(None),
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(mut data)) => {
                if let Some(flow) = &this.flow {
                    flow.queued.fetch_sub(data.len(), Ordering::AcqRel);
                    flow.drained.notify_waiters();
                }
                if let Some(left) = &mut this.remaining {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    data.truncate(take);
                    *left -= take as u64;
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(None) => {
                this.done = true;
                match this.remaining {
                    Some(left) if left > 0 => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("FastCGI input ended {left} bytes short of CONTENT_LENGTH"),
                    )))),
                    _ => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// The Filter role's data file (the `FCGI_DATA` stream), found in the request
/// extensions of a Filter request.
///
/// Get it with `req.extensions().get::<FilterData>()`, [`take`](Self::take)
/// the stream and read it as an [`http_body::Body`] (for example with
/// `http_body_util::BodyExt`). It is cut at `FCGI_DATA_LENGTH` when the web
/// server sent that parameter (and ending short of it is an error);
/// `FCGI_DATA_LAST_MOD` is among the parameters too.
#[derive(Debug, Clone)]
pub struct FilterData {
    body: Arc<std::sync::Mutex<Option<gateway_core::Body>>>,
}

impl FilterData {
    pub(crate) fn new(body: InputBody) -> FilterData {
        FilterData {
            body: Arc::new(std::sync::Mutex::new(Some(gateway_core::Body::new(body)))),
        }
    }

    /// Takes the data stream out; `None` if it was already taken (from this
    /// value or a clone of it).
    pub fn take(&self) -> Option<gateway_core::Body> {
        self.body.lock().ok().and_then(|mut b| b.take())
    }
}

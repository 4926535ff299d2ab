//! Request input streams (`FCGI_STDIN`, `FCGI_DATA`) as bodies, with flow
//! control and a stall limit.
//!
//! The connection driver pushes each record's bytes into a per-request
//! queue; the application pulls them out through an [`http_body::Body`]. A
//! queue may hold up to [`QUEUE_BOUND`] bytes: past that the driver stops
//! reading the connection until the application has taken some. So on a
//! multiplexed connection a request whose application reads slowly does not
//! hold up the others until it has that much unread input waiting; a
//! connection carrying one request at a time (what web servers do) simply
//! follows the application's pace, and memory stays bounded either way.
//!
//! When the web server sends none of a request's input for
//! `Limits::body_read_timeout` (the connection's deadline, kept by
//! [`crate::proto::Connection`]), the driver ends the queue as timed out:
//! the body fails with [`gateway_core::Error::body_timeout`], and the
//! connection closes once the request has ended. A stream that stops without its
//! end marker (the web server aborted the request or closed the connection)
//! fails with [`gateway_core::Error::incomplete_body`], as does one that
//! ends short of its declared length: both are the client's doing, which
//! the handler answers and logs as such.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use gateway_core::Error;
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
    /// The stream's end marker arrived (set before the sender is dropped).
    ended: AtomicBool,
    /// The web server sent no input within the body read timeout.
    timed_out: AtomicBool,
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

    /// The stream's end marker arrived: the body ends normally once it has
    /// read what was queued. A sender dropped without this (the request was
    /// aborted, the connection closed) makes the body fail as cut short.
    pub(crate) fn finish(self) {
        self.flow.ended.store(true, Ordering::Release);
    }

    /// The web server sent none of the stream within the body read
    /// timeout: the body fails as timed out once it has read what was
    /// queued.
    pub(crate) fn time_out(self) {
        self.flow.timed_out.store(true, Ordering::Release);
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
/// the end marker. Its errors are [`gateway_core::Error`]s: cut short, or
/// no input within the body read timeout.
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

    /// Whether this is the body of a stream that ended before any data
    /// and declared no length past zero: it yields nothing, as
    /// [`Body::empty`](gateway_core::Body::empty) does without a box.
    pub(crate) fn is_empty_ended(&self) -> bool {
        self.rx.is_none() && matches!(self.remaining, None | Some(0))
    }

    /// Ends the body with `error`.
    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for InputBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
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
                let timed_out = this
                    .flow
                    .as_ref()
                    .is_some_and(|flow| flow.timed_out.load(Ordering::Acquire));
                if timed_out {
                    return this.fail(Error::body_timeout());
                }
                let ended = this
                    .flow
                    .as_ref()
                    .is_none_or(|flow| flow.ended.load(Ordering::Acquire));
                if !ended {
                    return this.fail(Error::incomplete_body(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "FastCGI input cut off: the web server aborted the request or closed the connection",
                    )));
                }
                match this.remaining {
                    Some(left) if left > 0 => this.fail(Error::incomplete_body(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("FastCGI input ended {left} bytes short of CONTENT_LENGTH"),
                    ))),
                    _ => {
                        this.done = true;
                        Poll::Ready(None)
                    }
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

/// The exact length of a stream, from the value the web server declared
/// (`CONTENT_LENGTH` for FCGI_STDIN, `FCGI_DATA_LENGTH` for FCGI_DATA), by
/// the core's one rule: digits are a length; `-1` (Caddy, Go's client) or
/// nothing means the stream is read to its end record, which FastCGI always
/// sends, so no body is ever lost for want of a length. A malformed value
/// is read to the end too: the handler answers such a request 400 before
/// the application could read it.
pub(crate) fn declared_length(value: Option<&[u8]>) -> Option<u64> {
    match gateway_core::BodyLength::from_values(value, false) {
        Ok(gateway_core::BodyLength::Known(n)) => Some(n),
        _ => None,
    }
}

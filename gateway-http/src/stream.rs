//! HTTP/2 streams, each on its own task, watched for a response that waits
//! too long for the client's flow-control window.
//!
//! hyper polls a stream's response body only when the stream has room to
//! send: a client that never opens its window leaves the body, and the
//! application inside it, waiting for ever, and since nothing is written
//! to the socket the transport's write timeout never fires. So every
//! stream task hyper hands the executor runs inside a [`Watched`] future,
//! which shares a [`SendClock`] with the stream's response body: the body
//! marks when it handed hyper a chunk (and when hyper asks again), and the
//! watch resets the stream once a chunk has waited longer than
//! `write_timeout`. HTTP/1 connections never use the executor; their bodies
//! have no clock.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_core::server::Stall;

/// Where a stream's response body says whether hyper holds a chunk of it
/// that it has not sent yet.
///
/// Shared by the body and the watch of the same task, so the atomics are
/// only ever touched from one thread at a time (relaxed is enough).
#[derive(Debug, Default)]
pub(crate) struct SendClock {
    /// hyper got a chunk and has not asked for the next one.
    waiting: AtomicBool,
    /// How many times hyper asked for a chunk: a change is progress.
    polls: AtomicU64,
}

impl SendClock {
    /// The body is being polled: hyper sent (or buffered within the window)
    /// what it had.
    pub(crate) fn polled(&self) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// The body handed hyper a chunk; the clock runs until hyper asks again.
    pub(crate) fn handed_over(&self) {
        self.waiting.store(true, Ordering::Relaxed);
    }
}

thread_local! {
    /// The clock of the stream task being polled on this thread, if any.
    static CURRENT: Cell<Option<Arc<SendClock>>> = const { Cell::new(None) };
}

/// The clock of the HTTP/2 stream whose task is running now: for a response
/// body made while its stream's task is polled (hyper polls the service
/// future there). `None` outside such a task.
pub(crate) fn current_clock() -> Option<Arc<SendClock>> {
    CURRENT.with(|c| {
        let clock = c.take();
        let copy = clock.clone();
        c.set(clock);
        copy
    })
}

/// The executor hyper runs HTTP/2 stream tasks on: tokio tasks, each
/// watched.
#[derive(Clone, Debug)]
pub(crate) struct StreamExecutor {
    pub(crate) write_timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Watched {
            inner: fut,
            clock: Some(Arc::new(SendClock::default())),
            stall: Stall::new(self.write_timeout),
            seen: 0,
        });
    }
}

pin_project_lite::pin_project! {
    /// A stream task, ended (its future dropped: the stream is reset, the
    /// application's future dropped) once its response body has waited
    /// longer than the write timeout for hyper to send a chunk.
    struct Watched<F> {
        #[pin]
        inner: F,
        // Moved into `CURRENT` while `inner` is polled.
        clock: Option<Arc<SendClock>>,
        stall: Stall,
        seen: u64,
    }
}

/// Puts a task's clock back when its poll ends, even by a panic.
struct Restore<'a> {
    slot: &'a mut Option<Arc<SendClock>>,
    previous: Option<Arc<SendClock>>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        *self.slot = CURRENT.with(|c| c.replace(self.previous.take()));
    }
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let clock = {
            let previous = CURRENT.with(|c| c.replace(this.clock.take()));
            let restore = Restore {
                slot: this.clock,
                previous,
            };
            if this.inner.poll(cx).is_ready() {
                return Poll::Ready(());
            }
            drop(restore);
            match this.clock.as_deref() {
                Some(clock) => clock,
                None => return Poll::Pending,
            }
        };
        let waiting = clock.waiting.load(Ordering::Relaxed);
        let polls = clock.polls.load(Ordering::Relaxed);
        if !waiting || polls != *this.seen {
            // Not waiting, or progress since the last look: start afresh.
            *this.seen = polls;
            this.stall.expired(true, cx);
        }
        if waiting && this.stall.expired(false, cx) {
            tracing::debug!(
                "a response waited longer than the write timeout for the client's flow-control window; resetting the stream"
            );
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

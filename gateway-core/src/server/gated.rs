//! A future polled only when it was woken itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A future polled only after its own waker fired (and once at first), so
/// a task that is woken often for other reasons does not poll it each
/// time: for the rare events a busy loop also waits on (the server
/// stopping, an idle timer) beside the frequent ones (bytes, connections).
///
/// ```
/// use gateway_core::server::Gated;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut rare = std::pin::pin!(Gated::new(async { 7 }));
/// assert_eq!(rare.as_mut().await, 7);
/// # });
/// ```
pub struct Gated<F> {
    inner: Pin<Box<F>>,
    gate: Arc<Gate>,
    waker: Waker,
    /// The task's waker as last handed to the gate: the gate's lock is
    /// taken only when the task's waker changed.
    task: Option<Waker>,
}

/// Whether a gated future was woken, and the task to wake.
struct Gate {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

impl<F> std::fmt::Debug for Gated<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated")
            .field("fired", &self.gate.fired.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<F: Future> Gated<F> {
    /// `inner`, in a box of its own, polled at the first poll and then
    /// only when it woke its task.
    pub fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            fired: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            inner: Box::pin(inner),
            waker: Waker::from(gate.clone()),
            gate,
            task: None,
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if !this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            this.task = Some(cx.waker().clone());
            *this.gate.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        }
        if !this.gate.fired.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

//! A future polled only when it woke its task itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// What the wrapped future's registrations wake: it notes the wake, then
/// wakes the task that last polled the wrapper.
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// The flag of a gated future that has been polled, its waker, and the
/// task's waker as last handed to the flag (its lock is taken only when
/// the task's waker changed).
#[derive(Debug)]
struct Armed {
    flag: Arc<Flag>,
    waker: Waker,
    task: Option<Waker>,
}

pin_project_lite::pin_project! {
    /// A future polled only after its own waker fired, when it was
    /// changed through [`inner`](Gated::inner), and the first time: the
    /// rare events a busy loop also waits on (the server stopping, a
    /// timer) beside the frequent ones (bytes, connections). `select!`
    /// polls every branch on every turn, and polling an already registered
    /// watch or timer takes its lock each time though nothing happened to
    /// it; gated, it costs an atomic swap.
    ///
    /// ```
    /// use gateway_core::server::Gated;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut rare = std::pin::pin!(Gated::new(async { 7 }));
    /// assert_eq!(rare.as_mut().await, 7);
    /// # });
    /// ```
    #[derive(Debug)]
    pub struct Gated<F> {
        #[pin]
        inner: F,
        // Made at the first poll: a future that is never polled (a
        // connection that never waits) makes none.
        armed: Option<Armed>,
    }
}

impl<F> Gated<F> {
    /// `inner`, polled at the first poll and then only when it woke its
    /// task (or was changed).
    pub fn new(inner: F) -> Self {
        Self { inner, armed: None }
    }

    /// The future, to be changed (a timer set for another time): it is
    /// polled the next time the wrapper is, so that it registers again.
    pub fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        let this = self.project();
        if let Some(armed) = this.armed {
            armed.flag.woken.store(true, Ordering::Relaxed);
        }
        this.inner
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let armed = this.armed.get_or_insert_with(|| {
            let flag = Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: Mutex::new(None),
            });
            Armed {
                waker: Waker::from(flag.clone()),
                flag,
                task: None,
            }
        });
        if !armed.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            armed.task = Some(cx.waker().clone());
            *armed.flag.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        }
        if !armed.flag.woken.swap(false, Ordering::AcqRel) {
            // Registered, and nothing came: its wake will tell.
            return Poll::Pending;
        }
        let polled = this.inner.poll(&mut Context::from_waker(&armed.waker));
        if polled.is_ready() {
            // Whatever is asked of it next starts with a poll.
            armed.flag.woken.store(true, Ordering::Relaxed);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A gated timer fires; set again through `inner`, it fires again; a
    /// gated notification completes when notified, though the wrapper was
    /// polled in between without its future.
    #[tokio::test]
    async fn wakes_when_its_future_does() {
        let start = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let mut timer = std::pin::pin!(Gated::new(tokio::time::sleep(ms(20))));
        timer.as_mut().await;
        assert!(start.elapsed() >= ms(20));
        timer.as_mut().inner().reset(start + ms(60));
        tokio::time::timeout(Duration::from_secs(10), timer.as_mut())
            .await
            .expect("the timer set again fires");
        assert!(start.elapsed() >= ms(60));

        let notify = Arc::new(tokio::sync::Notify::new());
        let mut notified = std::pin::pin!(Gated::new(notify.notified()));
        // Polled (and registered), then polled again with nothing come.
        for _ in 0..2 {
            let pending = std::future::poll_fn(|cx| Poll::Ready(notified.as_mut().poll(cx)))
                .await
                .is_pending();
            assert!(pending);
        }
        let n = notify.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(20)).await;
            n.notify_waiters();
        });
        tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .expect("woken by the notification");
    }
}

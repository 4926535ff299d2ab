//! [`Woken`]: a future that is polled again only once it has woken its
//! task.
//!
//! The dispatcher's loop waits in one `select!` on the connection, the
//! shutdown and its timer. `select!` polls every branch on every turn, and
//! polling a watch that is already registered (the shutdown's notification,
//! the timer's entry) takes its lock each time, though nothing happened to
//! it. Wrapped in [`Woken`], such a future is polled when it woke the task
//! (its event came) or when it was changed ([`Woken::inner`]), and costs an
//! atomic load otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// What the wrapped future's registration wakes: it notes the wake, then
/// wakes the task that last polled the wrapper.
#[derive(Debug, Default)]
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
        let task = self.task.lock().ok().and_then(|t| t.clone());
        if let Some(task) = task {
            task.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// `F`, polled only when it has woken the task since it was last
    /// polled, or has been changed since (and the first time).
    pub(crate) struct Woken<F> {
        #[pin]
        fut: F,
        // Made at the first poll (a connection that never waits makes
        // none): the flag its wakes set, as a waker.
        flag: Option<(Arc<Flag>, Waker)>,
    }
}

impl<F> Woken<F> {
    pub(crate) fn new(fut: F) -> Self {
        Woken { fut, flag: None }
    }

    /// The future, to be changed (a timer set for another time): it is
    /// polled the next time the wrapper is, so that it registers again.
    pub(crate) fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        let this = self.project();
        if let Some((flag, _)) = this.flag {
            flag.woken.store(true, Ordering::Relaxed);
        }
        this.fut
    }
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let (flag, waker) = this.flag.get_or_insert_with(|| {
            // Polled the first time.
            let flag = Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: Mutex::new(None),
            });
            let waker = Waker::from(flag.clone());
            (flag, waker)
        });
        if let Ok(mut task) = flag.task.lock()
            && !task.as_ref().is_some_and(|t| t.will_wake(cx.waker()))
        {
            *task = Some(cx.waker().clone());
        }
        if !flag.woken.swap(false, Ordering::AcqRel) {
            // Registered, and nothing came: its wake will tell.
            return Poll::Pending;
        }
        let polled = this.fut.poll(&mut Context::from_waker(waker));
        if polled.is_ready() {
            // Whatever is asked of it next starts with a poll.
            flag.woken.store(true, Ordering::Relaxed);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A wrapped timer fires; set again through `inner`, it fires again; a
    /// wrapped notification completes when notified, though the wrapper
    /// was polled in between without its future.
    #[tokio::test]
    async fn wakes_when_its_future_does() {
        let start = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let mut timer = std::pin::pin!(Woken::new(tokio::time::sleep(ms(20))));
        timer.as_mut().await;
        assert!(start.elapsed() >= ms(20));
        timer.as_mut().inner().reset(start + ms(60));
        tokio::time::timeout(Duration::from_secs(10), timer.as_mut())
            .await
            .expect("the timer set again fires");
        assert!(start.elapsed() >= ms(60));

        let notify = Arc::new(tokio::sync::Notify::new());
        let mut notified = std::pin::pin!(Woken::new(notify.notified()));
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

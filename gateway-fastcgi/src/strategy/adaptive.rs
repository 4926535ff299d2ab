//! [`Adaptive`]: in the connection's task while one request is in flight,
//! on tasks of their own while several are.

use std::sync::Arc;
use std::task::{Context, Poll};

use gateway_core::Outcome;

use super::{AppFuture, InTask, Spawned, Strategy};
use crate::transport::Sink;

/// Runs a request in the connection's task when it is the only one in
/// flight (it is polled at once, so one that answers without waiting is
/// done before the next request is looked at); a request that starts while
/// another runs goes to a task of its own, and so does the one running in
/// the connection's task (its boxed future moves as it is), so that the two
/// run in parallel.
pub(crate) struct Adaptive {
    in_task: InTask,
    spawned: Spawned,
}

impl Strategy for Adaptive {
    fn new(sink: Arc<dyn Sink>) -> Self {
        Adaptive {
            in_task: InTask::new(sink.clone()),
            spawned: Spawned::new(sink),
        }
    }

    fn start(
        &mut self,
        id: u16,
        app: AppFuture,
        cx: &mut Context<'_>,
    ) -> Option<(Outcome, AppFuture)> {
        if self.in_task.is_empty() && self.spawned.is_empty() {
            return self.in_task.start(id, app, cx);
        }
        for (running, fut) in self.in_task.take_all() {
            self.spawned.start(running, fut, cx);
        }
        self.spawned.start(id, app, cx)
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<(u16, Outcome)> {
        if let Poll::Ready(done) = self.in_task.poll_finished(cx) {
            return Poll::Ready(done);
        }
        if self.spawned.is_empty() {
            // The usual case, without a call.
            return Poll::Pending;
        }
        self.spawned.poll_finished(cx)
    }

    fn cancel(&mut self, id: u16) {
        self.in_task.cancel(id);
        self.spawned.cancel(id);
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;
    use crate::transport::Transport;

    fn strategy() -> Adaptive {
        let (io, _) = tokio::io::duplex(64);
        Adaptive::new(Arc::new(Transport::new(io)))
    }

    /// A run that never finishes.
    struct Pending;

    impl std::future::Future for Pending {
        type Output = Outcome;
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Outcome> {
            Poll::Pending
        }
    }

    impl crate::strategy::AppRun for Pending {
        fn restart(
            self: std::pin::Pin<&mut Self>,
            _: crate::gateway::FcgiGateway,
            _: Option<crate::input::FilterData>,
        ) {
        }
    }

    fn pending() -> AppFuture {
        Box::pin(Pending)
    }

    /// A request alone runs in the connection's task; a second one sends
    /// both to tasks of their own; once none runs, the next is in the
    /// connection's task again.
    #[tokio::test]
    async fn spawns_only_while_several_run() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut s = strategy();
        assert!(s.start(1, pending(), &mut cx).is_none());
        assert!(!s.in_task.is_empty() && s.spawned.is_empty());
        assert!(s.start(2, pending(), &mut cx).is_none());
        assert!(s.in_task.is_empty());
        assert_eq!(s.spawned.len(), 2);
        s.cancel(1);
        s.cancel(2);
        assert!(s.spawned.is_empty());
        assert!(s.start(3, pending(), &mut cx).is_none());
        assert!(!s.in_task.is_empty() && s.spawned.is_empty());
        // Nothing finished.
        let polled = poll_fn(|cx| Poll::Ready(s.poll_finished(cx).is_pending())).await;
        assert!(polled);
    }
}

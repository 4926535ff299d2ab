//! [`Adaptive`]: in the connection's task while one request is in flight,
//! on tasks of their own while several are.

use std::sync::Arc;
use std::task::{Context, Poll};

use gateway_core::Outcome;

use super::{AppFuture, InTask, Spawned, Strategy};
use crate::transport::Sink;

/// Runs a request in the connection's task when it is the only one in
/// flight; a request that starts while another runs goes to a task of its
/// own, and so does the one running in the connection's task (its boxed
/// future moves as it is), so that the two run in parallel.
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

    fn start(&mut self, id: u16, app: AppFuture) {
        if self.in_task.is_empty() && self.spawned.is_empty() {
            self.in_task.start(id, app);
            return;
        }
        for (running, fut) in self.in_task.take_all() {
            self.spawned.start(running, fut);
        }
        self.spawned.start(id, app);
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<(u16, Outcome)> {
        if let Poll::Ready(done) = self.in_task.poll_finished(cx) {
            return Poll::Ready(done);
        }
        self.spawned.poll_finished(cx)
    }

    fn cancel(&mut self, id: u16) {
        self.in_task.cancel(id);
        self.spawned.cancel(id);
    }
}

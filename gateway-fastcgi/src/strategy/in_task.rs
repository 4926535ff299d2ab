//! [`InTask`]: the applications run inside the connection's task.

use std::sync::Arc;
use std::task::{Context, Poll};

use gateway_core::Outcome;

use super::{AppFuture, Strategy};
use crate::transport::Sink;

/// Polls every running request's future inside the connection's task.
/// Usually there is one; a multiplexed connection may have several, all
/// polled whenever the task wakes.
pub(crate) struct InTask {
    running: Vec<(u16, AppFuture)>,
}

impl InTask {
    /// Whether no request runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Takes the running requests out, to be run elsewhere.
    pub(crate) fn take_all(&mut self) -> Vec<(u16, AppFuture)> {
        std::mem::take(&mut self.running)
    }
}

impl Strategy for InTask {
    fn new(_sink: Arc<dyn Sink>) -> Self {
        InTask {
            running: Vec::new(),
        }
    }

    fn start(
        &mut self,
        id: u16,
        mut app: AppFuture,
        cx: &mut Context<'_>,
    ) -> Option<(Outcome, AppFuture)> {
        match app.as_mut().poll(cx) {
            Poll::Ready(outcome) => Some((outcome, app)),
            Poll::Pending => {
                self.running.push((id, app));
                None
            }
        }
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<(u16, Outcome)> {
        for i in 0..self.running.len() {
            if let Poll::Ready(outcome) = self.running[i].1.as_mut().poll(cx) {
                let (id, _) = self.running.swap_remove(i);
                return Poll::Ready((id, outcome));
            }
        }
        Poll::Pending
    }

    fn cancel(&mut self, id: u16) {
        self.running.retain(|(i, _)| *i != id);
    }
}

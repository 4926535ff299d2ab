//! [`Spawned`]: each application runs on a task of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use gateway_core::Outcome;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{AppFuture, Strategy};
use crate::transport::Sink;

/// Runs each request on a task of its own; the task reports the outcome
/// over a channel the dispatcher polls.
pub(crate) struct Spawned {
    sink: Arc<dyn Sink>,
    /// Request id, the serial number of its start, its task.
    tasks: Vec<(u16, u64, JoinHandle<()>)>,
    serial: u64,
    /// Made with the first task (most connections never need one).
    channel: Option<Channel>,
}

type Channel = (
    mpsc::UnboundedSender<(u16, u64, Outcome)>,
    mpsc::UnboundedReceiver<(u16, u64, Outcome)>,
);

impl Spawned {
    /// Whether no request runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// How many requests run.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }
}

/// A request's future on its own task: after each poll, output it appended
/// wakes the dispatcher, which alone writes the connection.
struct Detached {
    app: AppFuture,
    sink: Arc<dyn Sink>,
}

impl Future for Detached {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let polled = self.app.as_mut().poll(cx);
        self.sink.wake_writer();
        polled
    }
}

impl Strategy for Spawned {
    fn new(sink: Arc<dyn Sink>) -> Self {
        Spawned {
            sink,
            tasks: Vec::new(),
            serial: 0,
            channel: None,
        }
    }

    fn start(
        &mut self,
        id: u16,
        app: AppFuture,
        _cx: &mut Context<'_>,
    ) -> Option<(Outcome, AppFuture)> {
        self.serial += 1;
        let serial = self.serial;
        let (tx, _) = self.channel.get_or_insert_with(mpsc::unbounded_channel);
        let tx = tx.clone();
        let app = Detached {
            app,
            sink: self.sink.clone(),
        };
        let task = tokio::spawn(async move {
            let outcome = app.await;
            let _ = tx.send((id, serial, outcome));
        });
        self.tasks.push((id, serial, task));
        None
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<(u16, Outcome)> {
        let Some((_, rx)) = self.channel.as_mut() else {
            return Poll::Pending;
        };
        if self.tasks.is_empty() {
            return Poll::Pending;
        }
        while let Poll::Ready(Some((id, serial, outcome))) = rx.poll_recv(cx) {
            // A request cancelled as it finished is not reported.
            if let Some(i) = self
                .tasks
                .iter()
                .position(|(i, s, _)| (*i, *s) == (id, serial))
            {
                self.tasks.swap_remove(i);
                return Poll::Ready((id, outcome));
            }
        }
        Poll::Pending
    }

    fn cancel(&mut self, id: u16) {
        self.tasks.retain(|(i, _, task)| {
            if *i == id {
                task.abort();
            }
            *i != id
        });
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for (_, _, task) in &self.tasks {
            task.abort();
        }
    }
}

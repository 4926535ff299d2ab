//! Where the applications of a connection's requests run: the dispatcher
//! ([`crate::dispatch`]) is generic over a [`Strategy`], which owns the
//! running requests' futures, polls them (or lets tokio poll them on tasks
//! of their own) and reports each one that finished.
//!
//! - [`InTask`]: every request's future is polled inside the connection's
//!   task, next to the reads and writes of the connection: no task, no
//!   hand-over between threads. Requests of one connection share one core.
//! - [`Spawned`]: every request runs on a task of its own, so the requests
//!   of a multiplexed connection run in parallel.
//! - [`Adaptive`]: in the connection's task while the request is the only
//!   one in flight on its connection; as soon as a second one starts, both
//!   (and every later one while others run) go to tasks of their own.
//!
//! Whatever the strategy, output goes through the connection's one buffer
//! and the dispatcher alone writes it ([`crate::transport`]).

mod adaptive;
mod in_task;
mod spawned;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use gateway_core::Outcome;

pub(crate) use adaptive::Adaptive;
pub(crate) use in_task::InTask;
pub(crate) use spawned::Spawned;

use crate::gateway::FcgiGateway;
use crate::input::FilterData;
use crate::transport::Sink;

/// A request's application run through the handler, boxed so that it can
/// be moved (to a task of its own) while it runs. One that finished in the
/// connection's task is handed back by [`Strategy::start`], and its
/// allocation takes the connection's next request ([`AppRun::restart`]).
pub(crate) type AppFuture = Pin<Box<dyn AppRun>>;

/// The future of a request's run, which can run another request in its
/// place once it has finished.
pub(crate) trait AppRun: Future<Output = Outcome> + Send + 'static {
    /// Runs the request of `gw` (with `filter`, a Filter request's data)
    /// in place of the run that finished here.
    fn restart(self: Pin<&mut Self>, gw: FcgiGateway, filter: Option<FilterData>);
}

/// How a connection's dispatcher runs its requests' applications.
///
/// Dropping a strategy cancels the requests it still runs.
pub(crate) trait Strategy: Send + 'static {
    /// A strategy for one connection; `sink` is its output buffer, which a
    /// request running outside the connection's task must wake the
    /// dispatcher for.
    fn new(sink: Arc<dyn Sink>) -> Self;

    /// Starts request `id`'s application. A strategy that runs it in the
    /// connection's task polls it at once, with `cx`: an application that
    /// answers without waiting (most answer a small request so) is done
    /// before the next record is looked at, and its outcome is returned
    /// here instead of by [`poll_finished`](Self::poll_finished). So on a
    /// multiplexed connection, a request still runs in the connection's
    /// task when the one before it has already finished. The finished
    /// future is handed back with the outcome, for the next request to
    /// reuse.
    fn start(
        &mut self,
        id: u16,
        app: AppFuture,
        cx: &mut Context<'_>,
    ) -> Option<(Outcome, AppFuture)>;

    /// Polls the requests (those run in the connection's task, with `cx`);
    /// the next one that finished, with its outcome. Pending when none
    /// runs.
    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<(u16, Outcome)>;

    /// Cancels request `id`'s application; it will not be reported
    /// finished.
    fn cancel(&mut self, id: u16);
}

/// Where the applications of a connection's requests run
/// ([`Server::dispatch`](crate::Server::dispatch)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Dispatch {
    /// In the connection's task while a request is the only one in flight
    /// on its connection, on tasks of their own while several are (a
    /// multiplexing web server sending a second request before the first
    /// has ended). The default: a connection that carries one request at a
    /// time pays for no task and no hand-over between threads, and the
    /// requests of a multiplexed connection still run independently (in
    /// parallel on a [work-stealing](crate::Server::work_stealing)
    /// runtime; interleaved on the connection's thread otherwise).
    #[default]
    Adaptive,
    /// Always in the connection's task: the requests of one connection
    /// share its task (and so one core), however many run at once.
    InTask,
    /// Always on a task of their own, one per request.
    Spawned,
}

impl Dispatch {
    /// Every strategy, for tests and benchmarks that cover them all.
    pub const ALL: [Dispatch; 3] = [Dispatch::Adaptive, Dispatch::InTask, Dispatch::Spawned];
}

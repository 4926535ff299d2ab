//! Graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Starts and tracks a graceful shutdown.
///
/// Cheap to clone. [`trigger`](Shutdown::trigger) makes the accept loop stop
/// accepting and every [`Watch`] report [`stopping`](Watch::stopping);
/// connections finish their in-flight request and close.
/// [`serve`](super::serve) then waits for them up to the
/// [deadline](Shutdown::deadline).
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    deadline: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown that has not started, with a 30-second deadline.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            deadline: Duration::from_secs(30),
        }
    }

    /// Sets how long in-flight requests get once shutdown starts.
    pub fn deadline(&mut self, d: Duration) -> &mut Self {
        self.deadline = d;
        self
    }

    /// The deadline.
    pub fn get_deadline(&self) -> Duration {
        self.deadline
    }

    /// Starts the shutdown.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A watch for one connection or task.
    pub fn watch(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
        }
    }

    /// Starts the shutdown when `signal` completes (e.g. [`signal()`]).
    pub fn trigger_on(&self, signal: impl Future<Output = ()> + Send + 'static) {
        let this = self.clone();
        tokio::spawn(async move {
            signal.await;
            tracing::info!("shutting down: finishing in-flight requests");
            this.trigger();
        });
    }
}

/// What a connection watches to learn that the server is shutting down.
#[derive(Debug, Clone)]
pub struct Watch {
    rx: watch::Receiver<bool>,
}

impl Watch {
    /// Whether the shutdown has started.
    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when the shutdown starts (at once if it has).
    pub async fn stopping(&mut self) {
        // An error means the Shutdown is gone: nobody can trigger it, so
        // never complete.
        if self.rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), the signals web servers and
/// service managers send to stop an application.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

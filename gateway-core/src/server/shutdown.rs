//! Graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Starts and tracks a graceful shutdown.
///
/// Cheap to clone. [`trigger`](Shutdown::trigger) makes the accept loop stop
/// accepting and every [`Watch`] report [`stopping`](Watch::stopping);
/// connections finish their in-flight request and close.
/// [`serve`](super::serve) then waits for them up to the
/// [deadline](Shutdown::deadline).
///
/// A connection accepted just before the shutdown started has had no time
/// to send its first request, though its client (a web server that picked
/// this process a moment ago) is sending it: such a connection is not idle
/// but about to be busy. Its [`Watch`] (from
/// [`connection_watch`](Shutdown::connection_watch)) reports the shutdown
/// only once the connection is
/// [`new_connection_grace`](Shutdown::new_connection_grace) old, so the
/// request that was on its way is served instead of being cut off.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    deadline: Duration,
    new_connection_grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown that has not started, with a 30-second deadline and a
    /// one-second [grace for new connections](Shutdown::new_connection_grace).
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            deadline: Duration::from_secs(30),
            new_connection_grace: Duration::from_secs(1),
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

    /// How young a connection may be and still not be told of the shutdown
    /// at once (default 1 s; zero tells every connection at once). The
    /// request its client was sending when the shutdown started is then
    /// served, as are any others in the rest of that time; past it the
    /// connection closes as soon as it is idle. Bounded, as every
    /// connection is, by the [deadline](Shutdown::deadline).
    pub fn new_connection_grace(&mut self, d: Duration) -> &mut Self {
        self.new_connection_grace = d;
        self
    }

    /// The grace for new connections.
    pub fn get_new_connection_grace(&self) -> Duration {
        self.new_connection_grace
    }

    /// Starts the shutdown.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A watch for one connection or task: it reports the shutdown as soon
    /// as it starts.
    pub fn watch(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
            not_before: None,
        }
    }

    /// A watch for a connection accepted just now: it reports the shutdown
    /// no earlier than the [grace for new
    /// connections](Shutdown::new_connection_grace) from now. The accept
    /// loop ([`serve`](super::serve)) gives each connection one. Needs a
    /// tokio runtime with the time driver.
    pub fn connection_watch(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
            not_before: Some(Instant::now() + self.new_connection_grace),
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
    /// For a new connection: not stopping before this.
    not_before: Option<Instant>,
}

impl Watch {
    /// Whether the shutdown has started (and, for a new connection's
    /// watch, its grace has passed).
    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow() && self.not_before.is_none_or(|t| Instant::now() >= t)
    }

    /// Whether `other` watches the same [`Shutdown`] as this watch (the
    /// grace of a new connection's watch aside): a connection given both
    /// need wait on only one of them.
    pub fn same_shutdown(&self, other: &Watch) -> bool {
        self.rx.same_channel(&other.rx)
    }

    /// Completes when the shutdown starts (at once if it has), or for a new
    /// connection's watch, once its grace has passed too.
    pub async fn stopping(&mut self) {
        // An error means the Shutdown is gone: nobody can trigger it, so
        // never complete.
        if self.rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
        if let Some(t) = self.not_before {
            tokio::time::sleep_until(t).await;
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

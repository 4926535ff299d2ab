//! How long an I/O operation has been waiting.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Times how long an operation stays pending, for a read or write timeout:
/// the clock starts at the first poll that finds it pending, and stops when
/// it completes. An operation that completes at once costs no clock read and
/// no timer; the timer is made the first time one has to wait.
///
/// ```
/// # use std::task::{Context, Waker};
/// use std::time::Duration;
/// use gateway_core::server::Stall;
///
/// let mut stall = Stall::new(Duration::from_secs(60));
/// let mut cx = Context::from_waker(Waker::noop());
/// // A read that completed: nothing to time.
/// assert!(!stall.expired(true, &mut cx));
/// ```
#[derive(Debug)]
pub struct Stall {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl Stall {
    /// A stall limit of `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: None,
            waiting: false,
        }
    }

    /// The limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Call after each poll of the operation, with whether it was ready.
    /// Returns true once it has been pending for the whole timeout (the
    /// caller fails it); until then the task is woken when the time is up.
    /// Must be called within a tokio runtime with the time driver.
    pub fn expired(&mut self, ready: bool, cx: &mut Context<'_>) -> bool {
        if ready {
            self.waiting = false;
            return false;
        }
        if !self.waiting {
            let deadline = Instant::now() + self.timeout;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.waiting = true;
        }
        let fired = self
            .sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
        if fired {
            self.waiting = false;
        }
        fired
    }
}

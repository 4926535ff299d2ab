//! The settings every socket server shares, whatever its protocol.

use std::future::Future;
use std::io;
use std::time::Duration;

use crate::{Handler, Limits, Metrics, PathView};

use super::{
    ConnectionCap, ListenAddr, Listener, MemoryRelease, Shutdown, run, run_per_thread, with_status,
};

/// What configures every socket server the same way, whatever its
/// protocol: the [`Handler`] (with its [`Limits`], [`PathView`] and
/// [`Metrics`]), the shutdown and its grace period, the worker threads of
/// the runtime a server's `run` builds, the address of a status page, and
/// what `run` does once a burst of connections has ended
/// ([`MemoryRelease`]).
///
/// The FastCGI, SCGI and HTTP servers and the `gateway` facade each hold
/// one and offer these setters under the same names (the
/// [`server_options_setters`](crate::server_options_setters) macro writes
/// them), and each takes a whole one with `options`: one configuration can
/// be handed from one server to another.
///
/// ```
/// use std::time::Duration;
/// use gateway_core::server::ServerOptions;
///
/// let mut options = ServerOptions::new();
/// options.max_connections(256).grace_period(Duration::from_secs(10));
/// assert_eq!(options.get_handler().limits().get_max_connections(), 256);
/// assert_eq!(options.shutdown_handle().get_deadline(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
pub struct ServerOptions {
    handler: Handler,
    shutdown: Shutdown,
    grace_period: Option<Duration>,
    worker_threads: Option<usize>,
    work_stealing: bool,
    status_addr: Option<ListenAddr>,
    release: MemoryRelease,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerOptions {
    /// The defaults: the default [`Handler`] (default [`Limits`]), a
    /// shutdown of its own with a 30-second grace period, a thread per CPU
    /// each with a single-threaded runtime, no status page, no memory
    /// release after a burst of connections (the threads settle their
    /// heaps, and a log line).
    pub fn new() -> Self {
        Self {
            handler: Handler::new(),
            shutdown: Shutdown::new(),
            grace_period: None,
            worker_threads: None,
            work_stealing: false,
            status_addr: None,
            release: MemoryRelease::default(),
        }
    }

    /// Replaces the handler whole, limits included.
    pub fn handler(&mut self, handler: Handler) -> &mut Self {
        self.handler = handler;
        self
    }

    /// The handler's limits, changed (its other settings stay).
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.handler = self.handler.to_builder().limits(limits).build();
        self
    }

    /// The handler's path view, changed (its other settings stay).
    pub fn path_view(&mut self, view: PathView) -> &mut Self {
        self.handler = self.handler.to_builder().path_view(view).build();
        self
    }

    /// The handler's [`Limits::max_connections`], changed.
    pub fn max_connections(&mut self, n: usize) -> &mut Self {
        let mut limits = self.handler.limits().clone();
        limits.max_connections(n);
        self.limits(limits)
    }

    /// The handler's [`Limits::reuse_port`], changed.
    pub fn reuse_port(&mut self, yes: bool) -> &mut Self {
        let mut limits = self.handler.limits().clone();
        limits.reuse_port(yes);
        self.limits(limits)
    }

    /// The handler's metrics, set (its other settings stay).
    pub fn metrics(&mut self, metrics: &Metrics) -> &mut Self {
        self.handler = self.handler.to_builder().metrics(metrics).build();
        self
    }

    /// Where the status page listens; the handler gets fresh metrics if it
    /// had none.
    pub fn status_addr(&mut self, addr: ListenAddr) -> &mut Self {
        if self.handler.metrics().is_none() {
            self.metrics(&Metrics::new());
        }
        self.status_addr = Some(addr);
        self
    }

    /// The shutdown that stops the server; a grace period set before or
    /// after applies to it.
    pub fn shutdown(&mut self, shutdown: Shutdown) -> &mut Self {
        self.shutdown = shutdown;
        if let Some(d) = self.grace_period {
            self.shutdown.deadline(d);
        }
        self
    }

    /// How long requests in flight get once the shutdown starts (the
    /// shutdown's deadline, whichever shutdown is set, before or after).
    pub fn grace_period(&mut self, period: Duration) -> &mut Self {
        self.grace_period = Some(period);
        self.shutdown.deadline(period);
        self
    }

    /// The threads `run` serves on; 0 (the default): one per CPU.
    pub fn worker_threads(&mut self, n: usize) -> &mut Self {
        self.worker_threads = (n > 0).then_some(n);
        self
    }

    /// Whether `run` serves on one multi-threaded runtime (work stealing)
    /// instead of a single-threaded runtime per thread.
    pub fn work_stealing(&mut self, yes: bool) -> &mut Self {
        self.work_stealing = yes;
        self
    }

    /// What `run` (and a server's `serve`) runs once a burst of
    /// connections has ended, after each serving thread has settled its
    /// heap (see [`MemoryRelease`]; default: nothing more, the figures
    /// logged).
    pub fn release_memory_after_bursts(&mut self, release: MemoryRelease) -> &mut Self {
        self.release = release;
        self
    }

    /// The same options, serving on `threads` threads when neither
    /// [`worker_threads`](Self::worker_threads) nor
    /// [`work_stealing`](Self::work_stealing) was set: how a server gives
    /// `run` a default of its own (a server behind a web server leaves it
    /// CPUs: [`half_the_cpus`](super::half_the_cpus)).
    #[must_use]
    pub fn or_worker_threads(&self, threads: usize) -> Self {
        let mut options = self.clone();
        if options.worker_threads.is_none() && !options.work_stealing {
            options.worker_threads = Some(threads);
        }
        options
    }

    /// The handler.
    pub fn get_handler(&self) -> &Handler {
        &self.handler
    }

    /// A handle on the shutdown: trigger it to stop the server.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The worker threads set, if any.
    pub fn get_worker_threads(&self) -> Option<usize> {
        self.worker_threads
    }

    /// Whether `run` serves on one multi-threaded runtime.
    pub fn get_work_stealing(&self) -> bool {
        self.work_stealing
    }

    /// The status page's address, if set.
    pub fn get_status_addr(&self) -> Option<&ListenAddr> {
        self.status_addr.as_ref()
    }

    /// What `run` does once a burst of connections has ended.
    pub fn get_release_memory_after_bursts(&self) -> &MemoryRelease {
        &self.release
    }

    /// A new cap of [`Limits::max_connections`] that runs
    /// [`release_memory_after_bursts`](Self::release_memory_after_bursts)
    /// once a burst of connections has ended: what `run` gives its accept
    /// loops, and what a server's `serve` makes for its own.
    pub fn connection_cap(&self) -> ConnectionCap {
        ConnectionCap::new(self.handler.limits().get_max_connections())
            .release_memory_after_bursts(self.release.clone())
    }

    /// The whole `main` of a server with these options: systemd's sockets
    /// adopted, `addr` opened, readiness told, signals handled, the status
    /// page served when an address is set ([`with_status`]), and `serve`
    /// serving the listening socket with a cap on connections at once.
    ///
    /// By default on a thread per CPU ([`worker_threads`] to choose), each
    /// with a single-threaded runtime, `serve` called once per thread with
    /// its copy of the socket ([`run_per_thread`]); with
    /// [`work_stealing`](Self::work_stealing), or with one thread, on one
    /// runtime ([`run`]). Either way `serve` gets one [`ConnectionCap`] of
    /// [`Limits::max_connections`] shared by all threads, so the cap holds
    /// for the whole server. `protocol` names the protocol in the log
    /// (`FastCGI`).
    ///
    /// [`worker_threads`]: Self::worker_threads
    ///
    /// # Errors
    ///
    /// A runtime or thread cannot start, `addr` (or the status address)
    /// cannot be opened, or serving failed.
    pub fn run<F, Fut>(&self, protocol: &str, addr: &ListenAddr, serve: F) -> io::Result<()>
    where
        F: Fn(Listener, ConnectionCap) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        let limits = self.handler.limits();
        let status = || {
            self.status_addr
                .as_ref()
                .zip(self.handler.metrics().cloned())
        };
        // One cap for every thread's accept loop, which also watches the
        // whole server's bursts of connections.
        let cap = self.connection_cap();
        if self.work_stealing || self.worker_threads == Some(1) {
            return run(
                protocol,
                addr,
                limits,
                self.worker_threads,
                &self.shutdown,
                |listener| with_status(serve(listener, cap), status(), limits, &self.shutdown),
            );
        }
        run_per_thread(
            protocol,
            addr,
            limits,
            self.worker_threads,
            &self.shutdown,
            move |listener, _threads| serve(listener, cap.clone()),
            |serving| with_status(serving, status(), limits, &self.shutdown),
        )
    }
}

/// Writes the setters of [`ServerOptions`](crate::server::ServerOptions)
/// on a server type that keeps its options in the field `$field`: one
/// text for every server's `handler`, `limits`, `path_view`,
/// `max_connections`, `reuse_port`, `metrics`, `status_addr`, `shutdown`,
/// `shutdown_handle`, `grace_period`, `worker_threads`, `work_stealing`,
/// `release_memory_after_bursts` and `options`.
/// `$counted` says what the server counts in the metrics besides what the
/// handler counts. Used inside an `impl` block.
#[doc(hidden)]
#[macro_export]
macro_rules! server_options_setters {
    ($field:ident, $counted:literal) => {
        $crate::server_options_setters!($field, $counted, threads: "one per CPU");
    };
    // `$threads`: the number of threads `run` serves on by default, in words.
    ($field:ident, $counted:literal, threads: $threads:literal) => {
        /// All the settings this server shares with the other servers at
        /// once, replacing those set before.
        pub fn options(&mut self, options: gateway_core::server::ServerOptions) -> &mut Self {
            self.$field = options;
            self
        }

        /// The handler: the error page, the base environ, the limits, the
        /// path view, the metrics. It replaces the handler whole, limits
        /// included: call [`limits`](Self::limits),
        /// [`path_view`](Self::path_view),
        /// [`max_connections`](Self::max_connections) and
        /// [`metrics`](Self::metrics) after it.
        pub fn handler(&mut self, handler: gateway_core::Handler) -> &mut Self {
            self.$field.handler(handler);
            self
        }

        /// The limits and timeouts (the handler's, which keeps its other
        /// settings; the type's documentation says which ones this server
        /// applies).
        pub fn limits(&mut self, limits: gateway_core::Limits) -> &mut Self {
            self.$field.limits(limits);
            self
        }

        /// Which path the application routes on (see
        /// [`PathView`](gateway_core::PathView)): the handler's, changed.
        pub fn path_view(&mut self, view: gateway_core::PathView) -> &mut Self {
            self.$field.path_view(view);
            self
        }

        /// The most connections served at once (default 1024): the
        /// handler's
        /// [`Limits::max_connections`](gateway_core::Limits::max_connections),
        /// changed. Past it a new connection is accepted and given the
        /// protocol's busy answer at once, so a client never waits in the
        /// listen backlog for a slot.
        pub fn max_connections(&mut self, n: usize) -> &mut Self {
            self.$field.max_connections(n);
            self
        }

        /// Binds a TCP address with `SO_REUSEPORT` (default: off), so that
        /// a new process can listen on the same port before this one
        /// stops: a rolling restart with no refused connection. The
        /// handler's [`Limits::reuse_port`](gateway_core::Limits::reuse_port),
        /// changed.
        pub fn reuse_port(&mut self, yes: bool) -> &mut Self {
            self.$field.reuse_port(yes);
            self
        }

        #[doc = concat!(
                    "Counts this server's connections, requests, bytes and failures in ",
                    "`metrics` (the handler's, which keeps its other settings): mount ",
                    "[`Metrics::service`](gateway_core::Metrics::service) in the application, ",
                    "or serve it on an address of its own with ",
                    "[`status_addr`](Self::status_addr). Besides what the handler counts, ",
                    "this server counts ", $counted, "."
                )]
        pub fn metrics(&mut self, metrics: &gateway_core::Metrics) -> &mut Self {
            self.$field.metrics(metrics);
            self
        }

        /// Serves the [metrics](Self::metrics) (fresh ones if none were
        /// set) over plain HTTP on `addr`, a listener apart from the
        /// application's, under `run`: `GET` any path for the JSON status
        /// page, a path ending in `metrics` (or `Accept:
        /// application/openmetrics-text`) for the OpenMetrics text. See
        /// [`serve_status`](gateway_core::server::serve_status); meant for
        /// a loopback or internal address.
        pub fn status_addr(&mut self, addr: gateway_core::server::ListenAddr) -> &mut Self {
            self.$field.status_addr(addr);
            self
        }

        /// The shutdown that stops this server: triggered (through any
        /// clone), the server stops accepting, lets the requests in flight
        /// finish up to the [grace period](Self::grace_period), closes idle
        /// connections, and `serve` and `run` return. Default: a shutdown
        /// of its own, triggered by SIGINT and SIGTERM under `run`.
        pub fn shutdown(&mut self, shutdown: gateway_core::server::Shutdown) -> &mut Self {
            self.$field.shutdown(shutdown);
            self
        }

        /// A handle on this server's shutdown:
        /// [`Shutdown::trigger`](gateway_core::server::Shutdown::trigger)
        /// stops it (from another task, a signal handler of your own, a
        /// test).
        pub fn shutdown_handle(&self) -> gateway_core::server::Shutdown {
            self.$field.shutdown_handle()
        }

        /// How long the requests in flight get once the shutdown starts
        /// (default 30 s); past it their connections are closed. It is the
        /// deadline of the [shutdown](Self::shutdown), whether that is set
        /// before or after.
        pub fn grace_period(&mut self, period: std::time::Duration) -> &mut Self {
            self.$field.grace_period(period);
            self
        }

        #[doc = concat!("The threads `run` serves on. Unset (or 0): ", $threads, ".")]
        /// Each has a single-threaded runtime of its own and serves the
        /// connections it accepts to their end, so a connection, its
        /// requests and the tasks their applications spawn stay on one
        /// thread: nothing is handed over between threads (the way php-fpm
        /// and uWSGI run a worker per core). A TCP address gets a socket
        /// per thread on its port (`SO_REUSEPORT`), among which the kernel
        /// spreads connections; the connection cap
        /// ([`Limits::max_connections`](gateway_core::Limits::max_connections))
        /// holds for all threads together. See
        /// [`work_stealing`](Self::work_stealing) for the other way. `serve`
        /// runs on the caller's runtime and ignores it.
        pub fn worker_threads(&mut self, n: usize) -> &mut Self {
            self.$field.worker_threads(n);
            self
        }

        /// Whether `run` serves on one multi-threaded tokio runtime whose
        /// [worker threads](Self::worker_threads) share all connections and
        /// tasks (work stealing) instead of a single-threaded runtime per
        /// thread. For an application whose requests keep a core busy for
        /// long, or that needs a multi-threaded runtime (such as
        /// `tokio::task::block_in_place`); it costs hand-overs between
        /// threads on every request. Default: off. With one thread it makes
        /// no difference.
        pub fn work_stealing(&mut self, yes: bool) -> &mut Self {
            self.$field.work_stealing(yes);
            self
        }

        /// What `run` and `serve` run once a burst of connections has ended
        /// (at least 512 open at once, then a quarter of that or fewer), to
        /// give the memory the allocator keeps back to the system: see
        /// [`MemoryRelease`](gateway_core::server::MemoryRelease). Each
        /// serving thread first settles its heap, so that the allocator
        /// can hand the freed memory back by itself; the release then runs
        /// on a blocking thread, at most once every 5 seconds, never on
        /// steady traffic. Default: no release beyond the threads'
        /// settling, a debug log line with the process's resident memory.
        pub fn release_memory_after_bursts(
            &mut self,
            release: gateway_core::server::MemoryRelease,
        ) -> &mut Self {
            self.$field.release_memory_after_bursts(release);
            self
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::half_the_cpus;

    /// A server's default threads apply only when the user chose none:
    /// neither a number nor the work-stealing runtime.
    #[test]
    fn a_default_of_threads_gives_way_to_the_users_choice() {
        let options = ServerOptions::new();
        assert_eq!(options.or_worker_threads(3).get_worker_threads(), Some(3));
        let mut chosen = ServerOptions::new();
        chosen.worker_threads(5);
        assert_eq!(chosen.or_worker_threads(3).get_worker_threads(), Some(5));
        let mut stealing = ServerOptions::new();
        stealing.work_stealing(true);
        assert_eq!(stealing.or_worker_threads(3).get_worker_threads(), None);
    }

    /// Half the CPUs, rounded down, and never no thread at all.
    #[test]
    fn half_the_cpus_leaves_the_web_server_the_other_half() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = half_the_cpus();
        assert!(threads >= 1);
        assert!(
            threads * 2 <= cpus.max(2),
            "{threads} threads for {cpus} CPUs"
        );
        assert!(threads * 2 + 1 >= cpus, "{threads} threads for {cpus} CPUs");
    }
}

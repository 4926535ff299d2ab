//! Giving memory back once a burst of connections has ended.
//!
//! When many connections close, the memory they held goes back to the
//! allocator, which may keep it resident. The accept loop notices when a
//! burst has ended (the connections open have fallen well below their
//! recent peak and stayed there for a moment); then every accept loop of
//! the server settles its own thread's heap (see [`settle_heap`]), so
//! that the allocator can hand the freed memory back by itself, and the
//! server's [`MemoryRelease`] runs once, off the runtime's threads.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// What a server does once a burst of connections has ended, to hand
/// memory the allocator keeps back to the system.
///
/// A burst has ended when at least [`MIN_BURST`](Self::MIN_BURST)
/// connections were open at once, the connections open have since fallen
/// to a quarter of that peak or fewer, and they have stopped closing for
/// [`QUIET`](Self::QUIET) (or [`MAX_WAIT`](Self::MAX_WAIT) has passed
/// since they fell that low). This happens at most once every
/// [`MIN_INTERVAL`](Self::MIN_INTERVAL), and never because of steady
/// traffic. Each time, the server logs (at debug level) the connections'
/// peak and the process's resident memory before and after.
///
/// Whatever the setting, each thread that accepts connections then
/// settles its heap, with ordinary allocations only: it empties the
/// allocator's per-thread cache of small freed blocks, keeping the
/// lowest-addressed ones, and frees one larger block. With glibc's malloc
/// (the default allocator on most Linux systems), that is what lets each
/// thread's arena give the freed memory back from its top by itself:
/// measured after 10,000 connections closed, the resident memory came
/// back from 20 to 37 MB to within 0.1 MB of the idle figure (about
/// 6 MB), for each server. Memory stays resident below any block still in
/// use high in an arena: per-thread state a library wrote during the
/// burst can be written afresh then with
/// [`ConnectionCap::on_burst_end`](super::ConnectionCap::on_burst_end)
/// (the HTTP server does so for the date of its responses).
///
/// The release set here runs after that, once, on a blocking thread
/// (never on a thread serving connections). The default runs none. With
/// glibc, the application can pass `malloc_trim(0)`, which since glibc 2.8
/// returns the whole free pages of every arena, wherever they are; with
/// the `libc` crate:
///
/// ```ignore
/// use gateway_core::server::MemoryRelease;
///
/// let release = MemoryRelease::new(|| {
///     // Returns free pages of every malloc arena to the system.
///     unsafe { libc::malloc_trim(0) };
/// });
/// ```
///
/// (Not compiled here: these crates make no `unsafe` call and do not
/// depend on `libc`.)
#[derive(Clone)]
pub struct MemoryRelease {
    action: Option<Arc<dyn Fn() + Send + Sync>>,
    /// [`MIN_BURST`](Self::MIN_BURST), but for tests.
    min_burst: usize,
}

impl Default for MemoryRelease {
    fn default() -> Self {
        Self::log_only()
    }
}

impl fmt::Debug for MemoryRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRelease")
            .field("action", &self.action.is_some())
            .finish()
    }
}

impl MemoryRelease {
    /// The fewest connections open at once that count as a burst.
    pub const MIN_BURST: usize = 512;
    /// How long the connections must have stopped closing before a burst
    /// counts as over.
    pub const QUIET: Duration = Duration::from_secs(1);
    /// The longest wait for them to stop closing, from when the count fell
    /// to a quarter of its peak.
    pub const MAX_WAIT: Duration = Duration::from_secs(10);
    /// The shortest time between two releases.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

    /// Runs `release` after each burst, once every thread has settled its
    /// heap (see the type's documentation).
    pub fn new<F>(release: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        Self {
            action: Some(Arc::new(release)),
            min_burst: Self::MIN_BURST,
        }
    }

    /// Runs no release after a burst (the default): the threads only
    /// settle their heaps, and the figures are logged.
    pub fn log_only() -> Self {
        Self {
            action: None,
            min_burst: Self::MIN_BURST,
        }
    }

    /// The same, counting bursts from `n` connections open at once
    /// instead of [`MIN_BURST`](Self::MIN_BURST): for tests, which cannot
    /// open hundreds of connections cheaply.
    #[doc(hidden)]
    #[must_use]
    pub fn min_burst(self, n: usize) -> Self {
        Self {
            min_burst: n,
            ..self
        }
    }

    /// Whether a release runs after a burst (not only the threads'
    /// settling and the log).
    pub fn releases(&self) -> bool {
        self.action.is_some()
    }

    /// Whether the figures of a burst are logged (debug level).
    fn logs(&self) -> bool {
        tracing::enabled!(tracing::Level::DEBUG)
    }

    /// Runs the release (if any) and logs the figures (`before`: the
    /// resident memory when the burst ended); blocking when there is a
    /// release.
    fn run(&self, peak: usize, open: usize, before: u64) {
        if let Some(action) = &self.action {
            action();
        }
        if self.logs() {
            tracing::debug!(
                peak,
                open,
                rss_before_kb = before,
                rss_after_kb = resident_kb(),
                released = self.releases(),
                "connection burst ended"
            );
        }
    }
}

/// The process's resident memory in kB, from `/proc/self/status` (0 where
/// there is none).
fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The small sizes an allocator keeps per-thread caches of: glibc's
/// thread cache has 64 classes, of chunks 32 to 1040 bytes in steps of 16,
/// the requests 24 to 1032 bytes.
const CACHED_SIZES: usize = 64;
/// Blocks taken of each size: more than the 7 a glibc thread cache holds
/// per class, so that the cache is emptied and the blocks that go back
/// into it can be chosen among several.
const CANDIDATES: usize = 32;
/// A block large enough that freeing it makes glibc merge its fast bins
/// and trim the top of the arena (64 KiB or more), small enough to come
/// from the arena rather than its own mapping (under 128 KiB).
const TRIM_TRIGGER: usize = 96 * 1024;
/// How many times the cached blocks are chosen again: each time, the
/// memory freed and merged the time before offers lower blocks.
const PASSES: usize = 3;

/// Lets the allocator hand back what this thread freed in a burst: run on
/// each serving thread once a burst has ended, with safe allocations only.
///
/// With glibc's malloc, each thread allocates from an arena of its own,
/// and an arena gives memory back on its own only from its top, when a
/// free leaves a large free chunk there. What stops it after a burst is a
/// few small blocks left above the freed memory. Most are not even in
/// use: the thread's cache keeps up to 7 freed blocks of each small size
/// for the next allocation, and after a burst it holds those of the
/// connections that closed first, spread through the memory the burst
/// took. This takes every cached block out (allocating each size more
/// times than the cache holds), fills the emptied cache with the thread's
/// reserve (see [`reserve_cache_blocks`]), frees the blocks taken out,
/// which go back to the arena and merge with the free memory around
/// them, and takes the reserve back out of the cache. (On a thread without
/// a reserve, the cache keeps the lowest-addressed of the blocks taken
/// out, chosen again over a few passes.) Around that, it allocates and
/// frees one larger block, which makes glibc merge the small freed blocks
/// it keeps unmerged (its fast bins) and trim the arena's top. Other
/// allocators get a few thousand short-lived allocations, once per
/// burst. First of all, the vectors and header map the thread keeps from
/// one request to the next (see [`Environ::span_list`](crate::Environ::span_list))
/// are let go: made during the burst, they may lie high in the heap.
pub(crate) fn settle_heap() {
    crate::environ::drop_kept_vectors();
    crate::request::drop_kept_headers();
    trim_trigger();
    RESERVE.with(|reserve| {
        let mut reserve = reserve.borrow_mut();
        let passes = if reserve.is_empty() { PASSES } else { 1 };
        // Larger than any cached size, so that freeing it leaves the
        // cache alone.
        let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(CANDIDATES.max(LIST));
        for _ in 0..passes {
            for class in 0..CACHED_SIZES {
                let size = cached_size(class);
                blocks.extend(
                    (0..CANDIDATES).map(|_| std::hint::black_box(Vec::with_capacity(size))),
                );
                if let Some(kept) = reserve.get_mut(class * KEEP..(class + 1) * KEEP) {
                    // The reserve goes into the emptied cache, the blocks
                    // taken out go back to the arena, and the reserve is
                    // taken back out of the cache.
                    for block in kept.iter_mut() {
                        drop(std::mem::take(block));
                    }
                    blocks.clear();
                    for block in kept.iter_mut() {
                        *block = std::hint::black_box(Vec::with_capacity(size));
                    }
                } else {
                    blocks.sort_unstable_by_key(|b| b.as_ptr().addr());
                    // Lowest first: those are what the cache keeps.
                    for block in blocks.drain(..) {
                        drop(std::hint::black_box(block));
                    }
                }
            }
            trim_trigger();
        }
    });
}

/// The request size of the cached size `class`.
fn cached_size(class: usize) -> usize {
    24 + 16 * class
}

/// Entries in the list of blocks taken out: its 1,536 bytes are past the
/// sizes the cache keeps.
const LIST: usize = 64;

/// How many blocks of each size glibc's thread cache holds (by default).
const KEEP: usize = 7;

thread_local! {
    /// [`KEEP`] blocks of each cached size, allocated when the thread
    /// started serving (so low in its heap) and held (see
    /// [`reserve_cache_blocks`]).
    static RESERVE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Allocates and holds, for [`settle_heap`] on this thread, as many blocks
/// of each cached size as the cache holds, while the thread's heap is
/// still small: when the heap is settled, these are what the emptied
/// cache is filled with (then taken back), so that the blocks taken out of
/// the cache can all go back to the arena. Without them, the cache keeps
/// the lowest of the blocks taken out, which may still be high. About
/// 240 kB per thread.
pub(crate) fn reserve_cache_blocks() {
    RESERVE.with(|reserve| {
        let mut reserve = reserve.borrow_mut();
        if reserve.is_empty() {
            *reserve = (0..CACHED_SIZES * KEEP)
                .map(|i| std::hint::black_box(Vec::with_capacity(cached_size(i / KEEP))))
                .collect();
        }
    });
}

/// Allocates and frees one [`TRIM_TRIGGER`] block.
fn trim_trigger() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(TRIM_TRIGGER)));
}

/// How many tasks a serving thread's runtime can have ready at once
/// without growing its run queue (see [`prepare_thread`]).
pub(crate) const RUN_QUEUE: usize = 512;

/// Run first on a thread serving connections on a single-threaded
/// runtime: grows the runtime's run queue to [`RUN_QUEUE`] tasks now,
/// while the thread's heap is small, then takes the thread's reserve of
/// cache blocks (see [`reserve_cache_blocks`]). The queue never shrinks;
/// grown later, in a burst of connections, it would be allocated among the
/// burst's memory and hold all of it below it in the heap once the burst
/// is over (an allocator hands back only the top of a heap). The runtime
/// takes at most [`RUN_QUEUE`]` / 4` I/O events at a time (see
/// [`runtime`](super::runtime)), so the queue rarely needs more.
///
/// The queue comes first: the tasks that grow it are freed at once, and
/// the reserve, taken next, is carved from the memory they leave (about
/// 130 kB less resident memory at idle than the other way round, where the
/// freed tasks would stay resident above the reserve, unused).
pub(crate) async fn prepare_thread() {
    let tasks: Vec<_> = (0..RUN_QUEUE).map(|_| tokio::spawn(async {})).collect();
    for task in tasks {
        let _ = task.await;
    }
    reserve_cache_blocks();
}

/// What the accept loop should do about a burst, from [`BurstWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do (no burst, or one still going on).
    Idle,
    /// Look again at this instant.
    At(Instant),
    /// Release now; the burst's peak.
    Release(usize),
}

/// The decision: when has a burst of connections ended? Fed with the count
/// of connections open each time it changes, it answers when to look again
/// and when to release. Pure: time is passed in.
#[derive(Debug)]
pub(crate) struct BurstWatch {
    /// The fewest connections open at once that count as a burst.
    min_burst: usize,
    /// The most connections open at once since the last release.
    peak: usize,
    /// While the count is low: since when, its lowest since then, and when
    /// the burst counts as over.
    low: Option<Low>,
    /// When the last release ran.
    last: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Low {
    since: Instant,
    mark: usize,
    over_at: Instant,
}

impl Default for BurstWatch {
    fn default() -> Self {
        Self::new(MemoryRelease::MIN_BURST)
    }
}

impl BurstWatch {
    pub(crate) fn new(min_burst: usize) -> Self {
        Self {
            min_burst,
            peak: 0,
            low: None,
            last: None,
        }
    }

    fn is_low(&self, open: usize) -> bool {
        self.peak >= self.min_burst && open <= self.peak / 4
    }

    /// The count of connections open changed to `open` at `now`.
    pub(crate) fn observe(&mut self, open: usize, now: Instant) -> Verdict {
        self.peak = self.peak.max(open);
        if !self.is_low(open) {
            self.low = None;
            return Verdict::Idle;
        }
        let low = match self.low {
            // Still closing (a new low): the burst is over once the
            // connections have stopped closing for a moment, or at the
            // latest `MAX_WAIT` after the count fell low. Other changes
            // (the traffic that goes on) leave the time alone.
            Some(l) if open < l.mark => Low {
                mark: open,
                over_at: (now + MemoryRelease::QUIET).min(l.since + MemoryRelease::MAX_WAIT),
                ..l
            },
            Some(l) => l,
            None => Low {
                since: now,
                mark: open,
                over_at: now + MemoryRelease::QUIET,
            },
        };
        self.low = Some(low);
        Verdict::At(low.over_at)
    }

    /// The time asked for came (`open` connections now): release, wait
    /// more, or nothing.
    pub(crate) fn check(&mut self, open: usize, now: Instant) -> Verdict {
        let Some(low) = self.low else {
            return Verdict::Idle;
        };
        if !self.is_low(open) {
            self.low = None;
            return Verdict::Idle;
        }
        let at = match self.last {
            Some(last) => low.over_at.max(last + MemoryRelease::MIN_INTERVAL),
            None => low.over_at,
        };
        if now < at {
            return Verdict::At(at);
        }
        let peak = self.peak;
        self.peak = open;
        self.low = None;
        self.last = Some(now);
        Verdict::Release(peak)
    }
}

/// The burst watch and release of one server, shared by its accept loops
/// (through their [`ConnectionCap`](super::ConnectionCap)).
#[derive(Debug)]
pub(crate) struct Bursts {
    /// The peak seen, and whether the watch is waiting for a burst to end,
    /// read without the lock: traffic that is not the end of a burst never
    /// takes it.
    peak: AtomicUsize,
    waiting: AtomicBool,
    /// The connections running, or ended but not freed yet, in every
    /// accept loop sharing this.
    live: AtomicUsize,
    watch: Mutex<BurstWatch>,
    release: MemoryRelease,
    /// The count of bursts that ended: every accept loop sharing this
    /// settles its thread's heap (see [`settle_heap`]) when it changes.
    ended: watch::Sender<u64>,
    /// The burst ended last, until every accept loop has settled its
    /// thread's heap: then the release runs and the figures are logged.
    pending: Mutex<Option<Pending>>,
    /// Run on each serving thread between two settlings of its heap (see
    /// [`ConnectionCap::on_burst_end`](super::ConnectionCap::on_burst_end)).
    pub(crate) on_end: OnceLock<fn()>,
    /// How many times an accept loop settled its thread's heap.
    #[cfg(test)]
    pub(crate) settled: AtomicUsize,
}

/// A burst whose release is under way.
#[derive(Debug)]
struct Pending {
    peak: usize,
    open: usize,
    /// The resident memory when it ended (0 when not logged).
    before_kb: u64,
    /// The accept loops that have settled their thread's heap since.
    settled: usize,
}

impl Bursts {
    pub(crate) fn new(release: MemoryRelease) -> Self {
        Self {
            peak: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            watch: Mutex::new(BurstWatch::new(release.min_burst)),
            release,
            ended: watch::channel(0).0,
            pending: Mutex::new(None),
            on_end: OnceLock::new(),
            #[cfg(test)]
            settled: AtomicUsize::new(0),
        }
    }

    /// What an accept loop waits on (`changed`) to settle its thread's
    /// heap once a burst has ended (then it calls
    /// [`settle`](Self::settle)).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.ended.subscribe()
    }

    /// Called by each accept loop, on its own thread, once a burst has
    /// ended: settles the thread's heap; the last of the loops to do so
    /// runs the release (on a blocking thread) and logs the figures.
    pub(crate) fn settle(self: &Arc<Self>) {
        settle_heap();
        if let Some(refresh) = self.on_end.get() {
            // What it allocates afresh comes from the blocks settled low,
            // and what it frees goes back through a second settling.
            refresh();
            settle_heap();
        }
        #[cfg(test)]
        self.settled.fetch_add(1, Ordering::SeqCst);
        let done = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            match pending.as_mut() {
                Some(p) => {
                    p.settled += 1;
                    if p.settled >= self.ended.receiver_count() {
                        pending.take()
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        let Some(p) = done else { return };
        if self.release.releases() {
            let this = Arc::clone(self);
            drop(tokio::task::spawn_blocking(move || {
                this.release.run(p.peak, p.open, p.before_kb);
            }));
        } else {
            self.release.run(p.peak, p.open, p.before_kb);
        }
    }

    /// A connection started: when the accept loop should call
    /// [`check`](Self::check), if at all.
    pub(crate) fn started(&self) -> Option<Instant> {
        let open = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.observe(open)
    }

    /// A connection's task ended and was freed: when the accept loop
    /// should call [`check`](Self::check), if at all.
    pub(crate) fn ended(&self) -> Option<Instant> {
        self.forget(1);
        self.observe(self.live.load(Ordering::Relaxed))
    }

    /// `n` connections' tasks went away without [`ended`](Self::ended)
    /// (aborted at shutdown).
    pub(crate) fn forget(&self, n: usize) {
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(n))
            });
    }

    /// The count of connections open changed to `open`: when the accept
    /// loop should call [`check`](Self::check), if at all.
    fn observe(&self, open: usize) -> Option<Instant> {
        let peak = self.peak.fetch_max(open, Ordering::Relaxed).max(open);
        let low = peak >= self.release.min_burst && open <= peak / 4;
        if !low && !self.waiting.load(Ordering::Relaxed) {
            return None;
        }
        let mut watch = self.lock(peak);
        let verdict = watch.observe(open, Instant::now());
        self.waiting.store(watch.low.is_some(), Ordering::Relaxed);
        match verdict {
            Verdict::At(at) => Some(at),
            _ => None,
        }
    }

    /// The time asked for came: runs the release on a blocking thread if
    /// the burst is over; when to look again otherwise.
    pub(crate) fn check(self: &Arc<Self>) -> Option<Instant> {
        let open = self.live.load(Ordering::Relaxed);
        let mut watch = self.lock(self.peak.load(Ordering::Relaxed));
        let verdict = watch.check(open, Instant::now());
        self.waiting.store(watch.low.is_some(), Ordering::Relaxed);
        match verdict {
            Verdict::Idle => None,
            Verdict::At(at) => Some(at),
            Verdict::Release(peak) => {
                self.peak.store(open, Ordering::Relaxed);
                drop(watch);
                let before_kb = if self.release.logs() {
                    resident_kb()
                } else {
                    0
                };
                *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(Pending {
                    peak,
                    open,
                    before_kb,
                    settled: 0,
                });
                // Every accept loop sharing this settles its thread's heap.
                self.ended.send_modify(|n| *n += 1);
                None
            }
        }
    }

    /// The watch, told the peak seen without the lock.
    fn lock(&self, peak: usize) -> std::sync::MutexGuard<'_, BurstWatch> {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        watch.peak = watch.peak.max(peak);
        watch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settling the heap lets go of what the thread keeps from one request
    /// to the next: its environ vectors and its header map.
    #[test]
    fn settling_the_heap_lets_go_of_the_kept_vectors_and_header_map() {
        std::thread::spawn(|| {
            let buf = bytes::Bytes::from_static(b"REQUEST_METHODGET");
            let mut spans = crate::Environ::span_list(8);
            spans.push([0, 14, 14, 17]);
            let mut env = crate::Environ::new();
            env.extend_replacing_spans(&buf, spans);
            drop(env);
            let mut map = http::HeaderMap::new();
            map.insert("x-a", http::HeaderValue::from_static("1"));
            crate::request::keep_spare_headers(map);
            assert!(crate::request::kept_headers());
            settle_heap();
            assert_eq!(crate::Environ::span_list(0).capacity(), 0);
            assert!(!crate::request::kept_headers());
        })
        .join()
        .unwrap();
    }

    /// Feeds the events one per `step` (`Some(n)`: the count changed to
    /// `n`; `None`: nothing happened), following every `At` the watch asks
    /// for, then a minute with nothing happening. Returns the releases:
    /// their peaks, and when they happened counted from the start.
    fn run(events: &[Option<usize>], step: Duration) -> Vec<(usize, Duration)> {
        let start = Instant::now();
        let mut w = BurstWatch::default();
        let mut look: Option<Instant> = None;
        let mut out = Vec::new();
        let mut open = 0;
        let mut checks = |w: &mut BurstWatch, look: &mut Option<Instant>, until: Instant, open| {
            while let Some(at) = *look {
                if at > until {
                    break;
                }
                *look = match w.check(open, at) {
                    Verdict::At(next) => Some(next),
                    Verdict::Release(peak) => {
                        out.push((peak, at - start));
                        None
                    }
                    Verdict::Idle => None,
                };
            }
        };
        let mut now = start;
        for e in events {
            let next = now + step;
            checks(&mut w, &mut look, next, open);
            now = next;
            if let Some(n) = *e {
                open = n;
                if let Verdict::At(at) = w.observe(open, now) {
                    look = Some(at);
                }
            }
        }
        checks(&mut w, &mut look, now + Duration::from_secs(60), open);
        out
    }

    /// Counts rising one by one to `n` then falling back to `to`.
    fn burst(n: usize, to: usize) -> Vec<Option<usize>> {
        (1..=n).chain((to..n).rev()).map(Some).collect()
    }

    fn quiet(steps: usize) -> Vec<Option<usize>> {
        vec![None; steps]
    }

    fn elapsed(events: &[Option<usize>], step: Duration) -> Duration {
        step * u32::try_from(events.len()).unwrap()
    }

    /// 10,000 connections opened then closed: one release, once they have
    /// all closed and a quiet second has passed.
    #[test]
    fn release_once_after_a_burst_ends() {
        let step = Duration::from_micros(100);
        let events = burst(10_000, 0);
        let end = elapsed(&events, step);
        assert_eq!(
            run(&events, step),
            vec![(10_000, end + MemoryRelease::QUIET)]
        );
    }

    /// Steady traffic (connections coming and going, however long) never
    /// releases: a few hundred at once, or thousands staying near their
    /// peak.
    #[test]
    fn no_release_on_steady_traffic() {
        let step = Duration::from_millis(1);
        let small: Vec<_> = (0..100_000).map(|i| Some(100 + (i * 7919) % 300)).collect();
        assert_eq!(run(&small, step), vec![]);
        let busy: Vec<_> = (0..100_000)
            .map(|i| Some(3000 + (i * 7919) % 1000))
            .collect();
        assert_eq!(run(&busy, step), vec![]);
        // Below the burst size, even a full rise and fall is traffic.
        let below: Vec<_> = (0..100)
            .flat_map(|_| burst(MemoryRelease::MIN_BURST - 1, 0))
            .collect();
        assert_eq!(run(&below, step), vec![]);
    }

    /// A burst that falls to a third of its peak has not ended; to a
    /// quarter it has.
    #[test]
    fn a_burst_ends_at_a_quarter_of_its_peak() {
        let step = Duration::from_millis(1);
        assert_eq!(run(&burst(4000, 1334), step), vec![]);
        assert_eq!(run(&burst(4000, 1000), step).len(), 1);
    }

    /// Connections still closing keep the release waiting; a new burst
    /// starting within the quiet second puts it off until that one ends.
    #[test]
    fn the_release_waits_for_the_connections_to_stop_closing() {
        let step = Duration::from_micros(100);
        // Falls to 1000 (a quarter of 4000), then one more closes every
        // 100 ms for 5 s: the release comes a quiet second after the last.
        let mut events = burst(4000, 1000);
        for n in (950..1000).rev() {
            events.extend(quiet(999));
            events.push(Some(n));
        }
        let end = elapsed(&events, step);
        assert_eq!(run(&events, step), vec![(4000, end + MemoryRelease::QUIET)]);
        // Falls low, then climbs back within the quiet second.
        let mut events = burst(4000, 900);
        events.extend((901..=3000).map(Some));
        events.extend((0..3000).rev().map(Some));
        let end = elapsed(&events, step);
        assert_eq!(run(&events, step), vec![(4000, end + MemoryRelease::QUIET)]);
    }

    /// Traffic going on after a burst does not put the release off; a
    /// slow close is waited for at most `MAX_WAIT`.
    #[test]
    fn traffic_after_a_burst_does_not_put_the_release_off() {
        let step = Duration::from_micros(100);
        let mut events = burst(4000, 0);
        let end = elapsed(&events, step);
        for i in 0..200 {
            events.extend(quiet(999));
            events.push(Some(i % 2));
        }
        assert_eq!(run(&events, step), vec![(4000, end + MemoryRelease::QUIET)]);
        // Falls to 1000, then one more closes every half second.
        let mut events = burst(4000, 1000);
        let low = elapsed(&events, step);
        for n in (0..1000).rev() {
            events.extend(quiet(4999));
            events.push(Some(n));
        }
        // (The count left then, about 980, can make a burst of its own.)
        assert_eq!(run(&events, step)[0], (4000, low + MemoryRelease::MAX_WAIT));
    }

    /// Two bursts ending close together: the second release waits until
    /// `MIN_INTERVAL` after the first; the second burst's peak is counted
    /// from what was left after the first release.
    #[test]
    fn releases_are_rate_limited() {
        let step = Duration::from_micros(100);
        let mut events = burst(2000, 0);
        let first = elapsed(&events, step) + MemoryRelease::QUIET;
        events.extend(quiet(15_000)); // 1.5 s
        events.extend(burst(1000, 0));
        assert_eq!(
            run(&events, step),
            vec![(2000, first), (1000, first + MemoryRelease::MIN_INTERVAL)]
        );
    }

    /// glibc's malloc: a thread frees 32 MB of small blocks, the highest
    /// first, so that its cache keeps blocks at the top of its heap; the
    /// memory stays resident until `settle_heap` runs on that thread,
    /// whether the thread reserved cache blocks when it started (as a
    /// serving thread does) or not. Each case runs alone in a process of
    /// its own (this test program, run again for one test): the figures
    /// are the process's resident memory, which other tests would move.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn settling_the_heap_hands_back_what_a_thread_freed() {
        for reserved in ["1", "0"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "server::release::tests::settle_scenario",
                    "--include-ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SETTLE_SCENARIO_RESERVED", reserved)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "reserved {reserved}: {text}");
            assert!(text.contains("1 passed"), "reserved {reserved}: {text}");
        }
    }

    /// The case `settling_the_heap_hands_back_what_a_thread_freed` runs.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    #[ignore = "run alone by settling_the_heap_hands_back_what_a_thread_freed"]
    fn settle_scenario() {
        const MB: u64 = 1024;
        let reserved = std::env::var("SETTLE_SCENARIO_RESERVED").is_ok_and(|v| v == "1");
        let (before, freed, settled) = std::thread::spawn(move || {
            if reserved {
                reserve_cache_blocks();
            }
            let before = resident_kb();
            let mut blocks: Vec<Vec<u8>> = (0..300_000)
                .map(|i| {
                    let mut b = Vec::with_capacity(104);
                    b.push(u8::try_from(i % 251).unwrap());
                    b.resize(104, 1);
                    b
                })
                .collect();
            blocks.sort_unstable_by_key(|b| std::cmp::Reverse(b.as_ptr().addr()));
            // Highest first: the thread's cache keeps those.
            for b in blocks.drain(..) {
                drop(b);
            }
            let freed = resident_kb();
            settle_heap();
            (before, freed, resident_kb())
        })
        .join()
        .unwrap();
        assert!(
            freed > before + 24 * MB,
            "the scenario did not keep the memory: {before} -> {freed} kB"
        );
        assert!(
            settled + 16 * MB < freed,
            "reserved {reserved}: {before} -> {freed} -> {settled} kB"
        );
    }
}

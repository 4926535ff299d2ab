//! Keeping a storm of identical failures out of the logs.
//!
//! A route that fails on every request (a panic, an error, an invalid
//! response) would otherwise write the same lines for every request, and a
//! client that finds one could fill a disk. Two things keep the output
//! bounded per distinct failure and interval:
//!
//! - [`Repeats`], the handler's failure summariser: the first failure of a
//!   kind is logged in full; identical ones within the interval are only
//!   counted; the first identical one after the interval is logged as one
//!   line with the count. Nothing runs in the background: the count is
//!   reported when the failure happens again.
//! - a process-wide panic hook ([`install_panic_filter`]) that passes a
//!   panic raised while the handler polls the application to the previous
//!   hook at most once per location, message and interval, and passes every
//!   other panic on unchanged. The handler marks its polls of the
//!   application with [`in_app`] (a thread-local set around each poll).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::panic::PanicHookInfo;
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

/// At most this many distinct failures are told apart per table; past that,
/// new ones share one slot.
pub(crate) const MAX_KEYS: usize = 256;

/// Longest text kept to name an entry in a count line written when it is
/// dropped from a full table.
const LABEL_MAX: usize = 256;

/// What to do with one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it in full.
    Full,
    /// Count it and log nothing.
    Quiet,
    /// Log one line instead: `count` failures (this one included) were not
    /// logged one by one over the last `over`.
    Summary {
        count: u64,
        over: Duration,
        /// Counted in the shared slot of a full table: the failures were
        /// not all identical.
        assorted: bool,
    },
}

/// The count an entry still held when it was dropped from a full table, to
/// be written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) count: u64,
    pub(crate) over: Duration,
    /// The failure's text; `None` for the shared slot.
    pub(crate) label: Option<Box<str>>,
}

#[derive(Debug)]
struct Entry {
    /// When the last line for this failure (full or count) was written.
    since: Instant,
    /// Failures counted since then and not logged.
    suppressed: u64,
    label: Box<str>,
}

impl Entry {
    fn new(now: Instant, label: Box<str>) -> Self {
        Self {
            since: now,
            suppressed: 0,
            label,
        }
    }

    /// The verdict for one more failure of this entry.
    fn hit(&mut self, now: Instant, interval: Duration, assorted: bool) -> Verdict {
        let over = now.saturating_duration_since(self.since);
        if over < interval {
            self.suppressed += 1;
            return Verdict::Quiet;
        }
        let count = std::mem::take(&mut self.suppressed);
        self.since = now;
        if count == 0 {
            // A quiet spell: this one is news again.
            Verdict::Full
        } else {
            Verdict::Summary {
                count: count + 1,
                over,
                assorted,
            }
        }
    }
}

/// A bounded table of recent failures, keyed by a hash.
#[derive(Debug, Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    /// Where failures go once `entries` is full.
    other: Option<Entry>,
    /// No entry expires before this; a full table is not searched before.
    next_prune: Option<Instant>,
}

impl Table {
    fn check(
        &mut self,
        key: u64,
        now: Instant,
        interval: Duration,
        label: impl FnOnce() -> Box<str>,
        dropped: &mut Vec<Dropped>,
    ) -> Verdict {
        if let Some(e) = self.entries.get_mut(&key) {
            return e.hit(now, interval, false);
        }
        if self.entries.len() >= MAX_KEYS {
            self.prune(now, interval, dropped);
        }
        if self.entries.len() < MAX_KEYS {
            self.entries.insert(key, Entry::new(now, label()));
            return Verdict::Full;
        }
        match &mut self.other {
            Some(e) => e.hit(now, interval, true),
            None => {
                self.other = Some(Entry::new(now, Box::from("")));
                Verdict::Full
            }
        }
    }

    /// Drops the entries whose interval is over, handing out the counts
    /// they still hold. Once there is room again the shared slot is not
    /// needed any more: its count is handed out too.
    fn prune(&mut self, now: Instant, interval: Duration, dropped: &mut Vec<Dropped>) {
        if self.next_prune.is_some_and(|t| now < t) {
            return;
        }
        let mut next: Option<Instant> = None;
        self.entries.retain(|_, e| {
            let over = now.saturating_duration_since(e.since);
            if over < interval {
                let expires = e.since + interval;
                next = Some(next.map_or(expires, |n| n.min(expires)));
                return true;
            }
            if e.suppressed > 0 {
                dropped.push(Dropped {
                    count: e.suppressed,
                    over,
                    label: Some(std::mem::take(&mut e.label)),
                });
            }
            false
        });
        self.next_prune = next;
        if self.entries.len() < MAX_KEYS
            && let Some(e) = self.other.take()
            && e.suppressed > 0
        {
            dropped.push(Dropped {
                count: e.suppressed,
                over: now.saturating_duration_since(e.since),
                label: None,
            });
        }
    }
}

/// A handler's failure summariser: decides, per failure, whether it is
/// logged in full, counted, or reported as a count line.
#[derive(Debug)]
pub(crate) struct Repeats {
    interval: Duration,
    /// What the handler marks its polls of the application with.
    mark: Option<Duration>,
    hasher: RandomState,
    table: Mutex<Table>,
}

impl Repeats {
    /// A summariser with `interval` (zero: every failure is logged); with
    /// `quiet_panics`, the panic hook filters the application's panics with
    /// the same interval.
    pub(crate) fn new(interval: Duration, quiet_panics: bool) -> Self {
        Self {
            interval,
            mark: (quiet_panics && !interval.is_zero()).then_some(interval),
            hasher: RandomState::new(),
            table: Mutex::new(Table::default()),
        }
    }

    /// What polls of the application are marked with (see [`in_app`]):
    /// the interval the panic hook filters their panics with, if it does.
    #[inline]
    pub(crate) fn panic_mark(&self) -> Option<Duration> {
        self.mark
    }

    /// The verdict for a failure described by `what` (failures are
    /// identical when `tag` and the text of `what` are), and the counts of
    /// entries dropped to make room, which the caller writes out.
    pub(crate) fn check(&self, tag: &str, what: &dyn fmt::Display) -> (Verdict, Vec<Dropped>) {
        self.check_at(tag, what, Instant::now())
    }

    fn check_at(
        &self,
        tag: &str,
        what: &dyn fmt::Display,
        now: Instant,
    ) -> (Verdict, Vec<Dropped>) {
        let mut dropped = Vec::new();
        if self.interval.is_zero() {
            return (Verdict::Full, dropped);
        }
        let mut h = self.hasher.build_hasher();
        tag.hash(&mut h);
        hash_display(&mut h, what);
        let key = h.finish();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let verdict = table.check(key, now, self.interval, || label(what), &mut dropped);
        (verdict, dropped)
    }
}

/// Feeds the text of `what` to `h` without building a string.
fn hash_display(h: &mut impl Hasher, what: &dyn fmt::Display) {
    struct Feed<'a, H>(&'a mut H);
    impl<H: Hasher> fmt::Write for Feed<'_, H> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let _ = fmt::write(&mut Feed(h), format_args!("{what}"));
}

/// The text of `what`, cut to [`LABEL_MAX`] bytes.
fn label(what: &dyn fmt::Display) -> Box<str> {
    let mut s = what.to_string();
    if s.len() > LABEL_MAX {
        let mut end = LABEL_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s.into_boxed_str()
}

/// A duration the way a count line states it: `10 s`, `2.5 s`, `40 ms`.
pub(crate) struct Span(pub(crate) Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d >= Duration::from_secs(10) {
            write!(f, "{} s", d.as_secs_f64().round())
        } else if d >= Duration::from_secs(1) {
            write!(f, "{:.1} s", d.as_secs_f64())
        } else if d >= Duration::from_millis(1) {
            write!(f, "{} ms", d.as_millis())
        } else {
            write!(f, "{} µs", d.as_micros())
        }
    }
}

/// "1 more identical failure", "12 more identical failures".
pub(crate) struct More {
    pub(crate) count: u64,
    pub(crate) assorted: bool,
}

impl fmt::Display for More {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.assorted {
            "failure"
        } else {
            "identical failure"
        };
        let s = if self.count == 1 { "" } else { "s" };
        write!(f, "{} more {what}{s}", self.count)
    }
}

thread_local! {
    /// While the handler polls an application on this thread: the repeat
    /// interval its panics are filtered with.
    static IN_APP: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Runs `f` with this thread marked as polling an application whose panics
/// are filtered with `mark` (`None`: not filtered).
#[inline]
pub(crate) fn in_app<R>(mark: Option<Duration>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Duration>);
    impl Drop for Restore {
        #[inline]
        fn drop(&mut self) {
            IN_APP.set(self.0);
        }
    }
    let _restore = Restore(IN_APP.replace(mark));
    f()
}

/// Decides which panics reach the previous hook.
#[derive(Debug, Default)]
pub(crate) struct PanicFilter {
    hasher: RandomState,
    table: Mutex<Table>,
}

impl PanicFilter {
    /// Whether the panic `info` describes goes on to the previous hook.
    pub(crate) fn forward(&self, info: &PanicHookInfo<'_>) -> bool {
        let Some(interval) = IN_APP.try_with(Cell::get).ok().flatten() else {
            return true;
        };
        let mut h = self.hasher.build_hasher();
        if let Some(loc) = info.location() {
            (loc.file(), loc.line(), loc.column()).hash(&mut h);
        }
        payload_text(info.payload()).hash(&mut h);
        self.admit(h.finish(), interval, Instant::now())
    }

    fn admit(&self, key: u64, interval: Duration, now: Instant) -> bool {
        if interval.is_zero() {
            return true;
        }
        let mut dropped = Vec::new();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Once per interval in full; the counts are in the failure log.
        table.check(key, now, interval, || Box::from(""), &mut dropped) != Verdict::Quiet
    }
}

/// The text a panic was raised with, when it was raised with text.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    match payload.downcast_ref::<&'static str>() {
        Some(s) => Some(s),
        None => payload.downcast_ref::<String>().map(String::as_str),
    }
}

/// Wraps the process's panic hook, once: panics raised while a handler
/// polls an application it marks reach the previous hook at most once per
/// location, message and interval; all others reach it unchanged.
pub(crate) fn install_panic_filter() {
    static ONCE: Once = Once::new();
    if std::thread::panicking() {
        // Replacing the hook while panicking is not allowed; a later build
        // installs it.
        return;
    }
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        let filter = PanicFilter::default();
        std::panic::set_hook(Box::new(move |info| {
            if filter.forward(info) {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(10);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn first_in_full_then_counted_then_one_line() {
        let r = Repeats::new(S, true);
        let t0 = Instant::now();
        assert_eq!(r.check_at("f", &"boom", t0).0, Verdict::Full);
        for i in 1..=99 {
            assert_eq!(r.check_at("f", &"boom", at(t0, i)).0, Verdict::Quiet);
        }
        let (v, dropped) = r.check_at("f", &"boom", at(t0, 10_500));
        assert!(dropped.is_empty());
        assert_eq!(
            v,
            Verdict::Summary {
                count: 100,
                over: Duration::from_millis(10_500),
                assorted: false
            }
        );
        // A new interval starts with the count line.
        assert_eq!(r.check_at("f", &"boom", at(t0, 11_000)).0, Verdict::Quiet);
        assert!(matches!(
            r.check_at("f", &"boom", at(t0, 20_600)).0,
            Verdict::Summary { count: 2, .. }
        ));
        // After a quiet spell the failure is news again.
        assert_eq!(r.check_at("f", &"boom", at(t0, 40_000)).0, Verdict::Full);
    }

    #[test]
    fn distinct_failures_are_kept_apart() {
        let r = Repeats::new(S, true);
        let t0 = Instant::now();
        assert_eq!(r.check_at("f", &"one", t0).0, Verdict::Full);
        assert_eq!(r.check_at("f", &"two", t0).0, Verdict::Full);
        assert_eq!(r.check_at("g", &"one", t0).0, Verdict::Full);
        assert_eq!(r.check_at("f", &"one", t0).0, Verdict::Quiet);
        assert_eq!(r.check_at("f", &"two", t0).0, Verdict::Quiet);
    }

    #[test]
    fn zero_interval_logs_everything() {
        let r = Repeats::new(Duration::ZERO, true);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(r.check_at("f", &"boom", t0).0, Verdict::Full);
        }
    }

    #[test]
    fn a_full_table_shares_one_slot_and_hands_out_dropped_counts() {
        let r = Repeats::new(S, true);
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert_eq!(r.check_at("f", &i, t0).0, Verdict::Full);
        }
        // Entry 0 repeats twice, so it holds a count.
        assert_eq!(r.check_at("f", &0, at(t0, 1)).0, Verdict::Quiet);
        assert_eq!(r.check_at("f", &0, at(t0, 2)).0, Verdict::Quiet);
        // Past the bound, new failures share a slot: the first in full...
        assert_eq!(r.check_at("f", &"new 1", at(t0, 3)).0, Verdict::Full);
        assert_eq!(r.check_at("f", &"new 2", at(t0, 4)).0, Verdict::Quiet);
        assert_eq!(r.check_at("f", &"new 3", at(t0, 5)).0, Verdict::Quiet);
        assert_eq!(r.table.lock().unwrap().entries.len(), MAX_KEYS);
        // ...until the old entries expire and make room; the one holding a
        // count hands it out, and so does the shared slot.
        let (v, dropped) = r.check_at("f", &"new 4", at(t0, 10_001));
        assert_eq!(v, Verdict::Full);
        assert_eq!(
            dropped,
            vec![
                Dropped {
                    count: 2,
                    over: Duration::from_millis(10_001),
                    label: Some(Box::from("0")),
                },
                Dropped {
                    count: 2,
                    over: Duration::from_millis(9_998),
                    label: None,
                }
            ]
        );
        assert_eq!(r.table.lock().unwrap().entries.len(), 1);
    }

    #[test]
    fn the_shared_slot_reports_assorted_counts() {
        let r = Repeats::new(S, true);
        let t0 = Instant::now();
        let refresh = |ms| {
            for i in 0..MAX_KEYS {
                assert_eq!(r.check_at("f", &i, at(t0, ms)).0, Verdict::Full);
            }
        };
        refresh(0);
        // Keep every entry fresh past the first intervals.
        refresh(10_000);
        assert_eq!(r.check_at("f", &"x", at(t0, 10_001)).0, Verdict::Full);
        assert_eq!(r.check_at("f", &"y", at(t0, 10_002)).0, Verdict::Quiet);
        refresh(20_000);
        assert_eq!(
            r.check_at("f", &"z", at(t0, 20_003)).0,
            Verdict::Summary {
                count: 2,
                over: Duration::from_millis(10_002),
                assorted: true
            }
        );
        assert_eq!(r.check_at("f", &"v", at(t0, 20_004)).0, Verdict::Quiet);
        // Once the table has room, the slot's count is handed out.
        let (v, dropped) = r.check_at("f", &"w", at(t0, 40_000));
        assert_eq!(v, Verdict::Full);
        assert_eq!(
            dropped,
            vec![Dropped {
                count: 1,
                over: Duration::from_millis(19_997),
                label: None,
            }]
        );
    }

    #[test]
    fn long_labels_are_cut() {
        let long = "é".repeat(LABEL_MAX);
        let l = label(&long);
        assert!(l.len() <= LABEL_MAX + 3);
        assert!(l.ends_with("..."));
    }

    #[test]
    fn spans_and_counts_read_well() {
        assert_eq!(Span(Duration::from_secs(10)).to_string(), "10 s");
        assert_eq!(Span(Duration::from_millis(12_600)).to_string(), "13 s");
        assert_eq!(Span(Duration::from_millis(2_500)).to_string(), "2.5 s");
        assert_eq!(Span(Duration::from_millis(40)).to_string(), "40 ms");
        assert_eq!(Span(Duration::from_micros(40)).to_string(), "40 µs");
        let one = More {
            count: 1,
            assorted: false,
        };
        assert_eq!(one.to_string(), "1 more identical failure");
        let many = More {
            count: 12,
            assorted: true,
        };
        assert_eq!(many.to_string(), "12 more failures");
    }

    #[test]
    fn panic_filter_admits_once_per_interval() {
        let f = PanicFilter::default();
        let t0 = Instant::now();
        assert!(f.admit(1, S, t0));
        assert!(!f.admit(1, S, at(t0, 1)));
        assert!(!f.admit(1, S, at(t0, 2)));
        assert!(f.admit(2, S, at(t0, 3)));
        assert!(f.admit(1, S, at(t0, 10_000)));
        assert!(!f.admit(1, S, at(t0, 10_001)));
        assert!(f.admit(1, Duration::ZERO, at(t0, 10_002)));
    }

    #[test]
    fn the_mark_is_set_around_polls_only_and_restored() {
        assert_eq!(IN_APP.get(), None);
        in_app(Some(S), || {
            assert_eq!(IN_APP.get(), Some(S));
            in_app(None, || assert_eq!(IN_APP.get(), None));
            assert_eq!(IN_APP.get(), Some(S));
        });
        assert_eq!(IN_APP.get(), None);
        let caught = std::panic::catch_unwind(|| in_app(Some(S), || panic!("unwinds")));
        assert!(caught.is_err());
        assert_eq!(IN_APP.get(), None, "restored after a panic too");
    }
}

//! The CGI meta-variables of one request, as raw bytes.

use std::cell::Cell;
use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{Arc, OnceLock};
use std::thread::LocalKey;

use bytes::Bytes;

/// The CGI meta-variables (RFC 3875 §4.1) of one request, as raw bytes, in the
/// order the gateway received them.
///
/// This is the `environ` of wsgiref: every backend fills one (CGI from the
/// process environment, FastCGI from PARAMS, SCGI from the netstring header,
/// HTTP from the request line and headers) and the core builds the
/// [`http::Request`] from it. Nothing the gateway received is lost: a value
/// that cannot become an `http` header is still here. The environ of each
/// request is put into the request's extensions, in its
/// [`RequestContext`](crate::RequestContext), so an application can read it
/// with `request.extensions().get::<RequestContext>()` and
/// [`environ()`](crate::RequestContext::environ).
///
/// Names are compared byte for byte (CGI names are case-sensitive). Setting a
/// name that is already present replaces its value in place, so the order of
/// first appearance is kept. Lookups are linear: an environ holds a few dozen
/// entries, where a scan beats hashing.
///
/// ```
/// use gateway_core::Environ;
///
/// let mut env = Environ::new();
/// env.insert("REQUEST_METHOD", "POST");
/// env.insert("CONTENT_LENGTH", "27");
/// assert_eq!(env.request_method(), Some(&b"POST"[..]));
/// assert_eq!(env.content_length(), Ok(Some(27)));
/// ```
#[derive(Clone, Default)]
pub struct Environ {
    /// The variables; while `deferred` is set, only the few the handler
    /// reads for every request (see [`Environ::deferred`]).
    vars: Vars,
    deferred: Option<Source>,
    /// Where the handler's per-request variables are in `vars`, kept up
    /// to date by every change (a new name is looked at once, when added).
    known: KnownAt,
}

/// Marks a start offset in [`Vars::list`]: the part is not in the shared
/// buffer but in [`Vars::own`], whose index its end is; the start's lowest
/// bit says which of the pair there (0: the first, 1: the second).
const OWN: u32 = 1 << 31;

/// The variables of an environ, in one of two forms. Set by name only,
/// they are the pairs of `own`, in order (`list` is empty). Taken from one
/// buffer they share (what a web server sent, taken as it is: no reference
/// count per variable), they are the entries of `list`, each four offsets:
/// its name's start and end, its value's start and end, in `buf`, or, for
/// a part set by name since, in `own`.
#[derive(Default)]
struct Vars {
    /// The buffer the offsets are in.
    buf: Bytes,
    /// `[name start, name end, value start, value end]` of each variable;
    /// a start with the [`OWN`] bit: the part is in `own`. Empty: the
    /// variables are `own`.
    list: Vec<[u32; 4]>,
    /// The variables, or (when `list` is not empty) the names and values
    /// set by name, as pairs (a value set over one of `buf` has an empty
    /// name beside it).
    own: Vec<(Bytes, Bytes)>,
}

impl Clone for Vars {
    #[inline]
    fn clone(&self) -> Self {
        if self.list.is_empty() && self.own.is_empty() {
            // The usual base environ: nothing to share.
            return Vars::default();
        }
        Vars {
            buf: self.buf.clone(),
            list: self.list.clone(),
            own: self.own.clone(),
        }
    }
}

static EMPTY: Bytes = Bytes::new();

thread_local! {
    /// The vectors of the last environ dropped on this thread, emptied, for
    /// the next one made here: a server's requests come one after another
    /// on a thread, and each request's environ then needs no allocation
    /// for its list of variables or for the few set by name.
    static SPARE_LIST: Cell<Vec<[u32; 4]>> = const { Cell::new(Vec::new()) };
    static SPARE_OWN: Cell<Vec<(Bytes, Bytes)>> = const { Cell::new(Vec::new()) };
    /// Whether this thread ever kept a vector. Read before the two above
    /// are touched where that may be their first use: a first use
    /// registers their destructor, an allocation, which must not happen
    /// while a thread settles its heap.
    static KEPT_ANY: Cell<bool> = const { Cell::new(false) };
}

/// The most variables a kept vector may have room for (8 KiB of spans, 4
/// KiB of pairs): an environ with more does not leave its memory to the
/// thread.
const SPARE_LIST_MAX: usize = 512;
const SPARE_OWN_MAX: usize = 64;

impl Drop for Vars {
    #[inline]
    fn drop(&mut self) {
        // Most environs that have no vectors of their own (a deferred
        // one's, a base environ's) pay two comparisons.
        if self.list.capacity() != 0 {
            keep(&mut self.list, SPARE_LIST_MAX, &SPARE_LIST);
        }
        if self.own.capacity() != 0 {
            keep(&mut self.own, SPARE_OWN_MAX, &SPARE_OWN);
        }
    }
}

/// Keeps `v`, emptied, in `spare` for the next environ made on this
/// thread, unless it has room for more than `max`.
fn keep<T: 'static>(v: &mut Vec<T>, max: usize, spare: &'static LocalKey<Cell<Vec<T>>>) {
    if v.capacity() <= max {
        v.clear();
        KEPT_ANY.set(true);
        // Not during the thread's exit, once the kept one is gone.
        let _ = spare.try_with(|spare| spare.set(std::mem::take(v)));
    }
}

/// The vector kept in `spare` (or a new one), with room for at least `n`.
fn take_kept<T: 'static>(spare: &'static LocalKey<Cell<Vec<T>>>, n: usize) -> Vec<T> {
    let mut v = spare.try_with(Cell::take).unwrap_or_default();
    v.reserve(n);
    v
}

/// Drops the vectors this thread keeps for its next environ (when a
/// burst of connections has ended: they may lie high in the heap).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn drop_kept_vectors() {
    if KEPT_ANY.get() {
        let _ = SPARE_LIST.try_with(Cell::take);
        let _ = SPARE_OWN.try_with(Cell::take);
    }
}

impl Vars {
    /// The buffer of a part in `own`.
    #[inline]
    fn own_part(&self, start: u32, end: u32) -> &Bytes {
        match self.own.get(end as usize) {
            Some((first, second)) => {
                if start & 1 == 0 {
                    first
                } else {
                    second
                }
            }
            None => &EMPTY,
        }
    }

    /// The bytes of a part (the offsets of a part in `buf` always lie
    /// within it: they are checked when added).
    #[inline]
    fn part(&self, start: u32, end: u32) -> &[u8] {
        if start & OWN == 0 {
            self.buf
                .get(start as usize..end as usize)
                .unwrap_or_default()
        } else {
            self.own_part(start, end)
        }
    }

    #[inline]
    fn name_of(&self, v: &[u32; 4]) -> &[u8] {
        self.part(v[0], v[1])
    }

    /// A part with the buffer it lies in.
    #[inline]
    fn part_ref(&self, start: u32, end: u32) -> Value<'_> {
        if start & OWN == 0 {
            Value {
                buf: &self.buf,
                start: start as usize,
                end: end as usize,
            }
        } else {
            let buf = self.own_part(start, end);
            Value {
                buf,
                start: 0,
                end: buf.len(),
            }
        }
    }

    /// A part as a buffer of its own, sharing the allocation.
    fn shared(&self, start: u32, end: u32) -> Bytes {
        self.part_ref(start, end).to_shared()
    }

    /// Whether the variables are the entries of `list`.
    #[inline]
    fn listed(&self) -> bool {
        !self.list.is_empty()
    }

    /// The name of variable `i`.
    #[inline]
    fn name(&self, i: usize) -> &[u8] {
        if self.listed() {
            self.list.get(i).map_or(&[], |v| self.name_of(v))
        } else {
            self.own.get(i).map_or(&[], |p| &p.0)
        }
    }

    /// The value of variable `i`.
    #[inline]
    fn value(&self, i: usize) -> Option<Value<'_>> {
        if self.listed() {
            self.list.get(i).map(|v| self.part_ref(v[2], v[3]))
        } else {
            self.own.get(i).map(|(_, b)| Value {
                buf: b,
                start: 0,
                end: b.len(),
            })
        }
    }

    /// Appends a variable of its own.
    #[inline]
    fn push_own(&mut self, name: Bytes, value: Bytes) {
        if !self.listed() {
            self.own.push((name, value));
            return;
        }
        let i = u32::try_from(self.own.len()).unwrap_or(u32::MAX);
        self.own.push((name, value));
        self.list.push([OWN, i, OWN | 1, i]);
    }

    /// Sets the value of variable `i`; the value it had.
    fn set_value(&mut self, i: usize, value: Bytes) -> Option<Bytes> {
        if !self.listed() {
            let (_, old) = self.own.get_mut(i)?;
            return Some(std::mem::replace(old, value));
        }
        let v = *self.list.get(i)?;
        if v[2] & OWN != 0
            && let Some((first, second)) = self.own.get_mut(v[3] as usize)
        {
            let side = if v[2] & 1 == 0 { first } else { second };
            return Some(std::mem::replace(side, value));
        }
        let old = self.shared(v[2], v[3]);
        let j = u32::try_from(self.own.len()).unwrap_or(u32::MAX);
        self.own.push((Bytes::new(), value));
        if let Some(var) = self.list.get_mut(i) {
            var[2] = OWN | 1;
            var[3] = j;
        }
        Some(old)
    }

    /// Removes variable `i`; its value.
    fn remove(&mut self, i: usize) -> Option<Bytes> {
        if !self.listed() {
            return (i < self.own.len()).then(|| self.own.remove(i).1);
        }
        if i >= self.list.len() {
            return None;
        }
        let v = self.list.remove(i);
        if self.list.is_empty() {
            // No variable left: back to the first form, empty.
            let value = self.shared(v[2], v[3]);
            self.own.clear();
            self.buf = Bytes::new();
            return Some(value);
        }
        let value = self.shared(v[2], v[3]);
        // Give back its own pairs, the higher index first (moving the last
        // one into the place of each).
        let mut owned = [(v[0], v[1]), (v[2], v[3])]
            .map(|(start, end)| (start & OWN != 0).then_some(end as usize));
        if owned[0] == owned[1] {
            owned[1] = None;
        }
        if owned[0] < owned[1] {
            owned.swap(0, 1);
        }
        for at in owned.into_iter().flatten() {
            let last = self.own.len().saturating_sub(1);
            if at > last {
                continue;
            }
            self.own.swap_remove(at);
            if at != last {
                for var in &mut self.list {
                    for (start, end) in [(0, 1), (2, 3)] {
                        if var[start] & OWN != 0 && var[end] as usize == last {
                            var[end] = at as u32;
                        }
                    }
                }
            }
        }
        Some(value)
    }

    /// The entries of whichever form the variables have, each read by
    /// one of the two functions.
    #[inline]
    fn each<'a, T: 'a>(
        &'a self,
        listed: impl Fn(&'a [u32; 4]) -> T + 'a,
        own: impl Fn(&'a (Bytes, Bytes)) -> T + 'a,
    ) -> impl Iterator<Item = T> + 'a {
        let (l, o) = if self.listed() {
            (Some(self.list.iter().map(listed)), None)
        } else {
            (None, Some(self.own.iter().map(own)))
        };
        l.into_iter().flatten().chain(o.into_iter().flatten())
    }

    fn names(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.each(|v| self.name_of(v), |p| &p.0[..])
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.len()).map(|i| {
            let value = self.value(i).map_or(&[][..], Value::as_bytes);
            (self.name(i), value)
        })
    }

    fn len(&self) -> usize {
        if self.listed() {
            self.list.len()
        } else {
            self.own.len()
        }
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        if self.listed() {
            self.list.iter().position(|v| self.name_of(v) == name)
        } else {
            self.own.iter().position(|p| p.0 == name)
        }
    }

    /// The pairs as buffers of their own, for another environ.
    fn to_owned_pairs(&self) -> impl Iterator<Item = (Bytes, Bytes)> + '_ {
        self.each(
            |v| (self.shared(v[0], v[1]), self.shared(v[2], v[3])),
            |p| p.clone(),
        )
    }
}

/// A value of an environ as the core reads it: its bytes, and the shared
/// buffer they lie in, to hand on without a copy.
#[derive(Clone, Copy)]
pub(crate) struct Value<'a> {
    buf: &'a Bytes,
    start: usize,
    end: usize,
}

impl<'a> Value<'a> {
    /// The bytes.
    #[inline]
    pub(crate) fn as_bytes(self) -> &'a [u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// The first `n` bytes (all of them when there are fewer).
    #[inline]
    pub(crate) fn prefix(self, n: usize) -> Value<'a> {
        Value {
            end: self.end.min(self.start.saturating_add(n)),
            ..self
        }
    }

    /// The bytes as a buffer of their own, sharing the allocation.
    #[inline]
    pub(crate) fn to_shared(self) -> Bytes {
        if self.start == 0 && self.end == self.buf.len() {
            self.buf.clone()
        } else if self.start < self.end && self.end <= self.buf.len() {
            self.buf.slice(self.start..self.end)
        } else {
            Bytes::new()
        }
    }
}

impl std::ops::Deref for Value<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

/// Where a deferred environ's variables come from: a function given to
/// [`Environ::deferred`], or a source shared with the backend
/// ([`Environ::deferred_from`]).
#[derive(Clone)]
enum Source {
    Made(Arc<dyn MakeVars>),
    Shared(Arc<dyn EnvironSource>),
}

impl Source {
    fn vars(&self) -> &Vars {
        match self {
            Source::Made(d) => d.vars(),
            Source::Shared(s) => s.environ().vars(),
        }
    }
}

/// What a deferred environ ([`Environ::deferred_from`]) is made from, for
/// a backend that keeps one per connection and fills it again for each
/// request once nothing holds it any more (`Arc::get_mut`), so that a
/// request whose environ is never read allocates nothing for it.
///
/// `environ` makes the variables the first time it is called and returns
/// the same ones every time after (a `OnceLock` does it).
///
/// ```
/// use std::sync::{Arc, OnceLock};
/// use gateway_core::{Environ, EnvironSource};
///
/// struct Head {
///     path: String,
///     made: OnceLock<Environ>,
/// }
///
/// impl EnvironSource for Head {
///     fn environ(&self) -> &Environ {
///         self.made.get_or_init(|| {
///             let mut env = Environ::new();
///             env.insert("REQUEST_METHOD", "GET");
///             env.insert("PATH_INFO", self.path.clone());
///             env
///         })
///     }
/// }
///
/// let head = Arc::new(Head { path: "/x".into(), made: OnceLock::new() });
/// let env = Environ::deferred_from(Environ::new(), head.clone());
/// assert_eq!(env.path_info(), b"/x");
/// drop(env);
/// // Nothing holds it now: the next request can fill it again.
/// let mut head = head;
/// assert!(Arc::get_mut(&mut head).is_some());
/// ```
pub trait EnvironSource: Send + Sync + UnwindSafe + RefUnwindSafe + 'static {
    /// The variables, made on the first call; the same ones on every call
    /// after.
    fn environ(&self) -> &Environ;
}

/// The variables of a deferred environ, made once, when first read; the
/// function that makes them shares their allocation.
struct Deferred<F> {
    /// Boxed: a request whose environ is never read moves less.
    made: OnceLock<Box<Vars>>,
    make: F,
}

/// A [`Deferred`] of any function.
trait MakeVars: Send + Sync + UnwindSafe + RefUnwindSafe {
    fn vars(&self) -> &Vars;
}

impl<F> MakeVars for Deferred<F>
where
    F: Fn() -> Environ + Send + Sync + UnwindSafe + RefUnwindSafe,
{
    fn vars(&self) -> &Vars {
        self.made.get_or_init(|| {
            let mut env = (self.make)();
            env.vars_mut();
            Box::new(env.vars)
        })
    }
}

impl PartialEq for Environ {
    fn eq(&self, other: &Self) -> bool {
        self.vars().iter().eq(other.vars().iter())
    }
}

impl Eq for Environ {}

/// Where the variables of `vars` the handler reads are, unless two of
/// them have the same name, found in one pass. Repeats are looked for
/// with a [`NameFilter`], and a comparison with the earlier names only
/// when the filter says a name may have been seen.
fn index_distinct(vars: &Vars) -> Option<KnownAt> {
    if vars.listed() {
        // Every part of a list just taken lies in `buf` (see
        // `extend_replacing_spans`), but any entry reads right.
        let (buf, list) = (&vars.buf[..], &vars.list[..]);
        index_distinct_of(list.len(), |i| match list.get(i) {
            Some(&[start, end, _, _]) if start & OWN == 0 => {
                buf.get(start as usize..end as usize).unwrap_or_default()
            }
            Some(v) => vars.name_of(v),
            None => &[],
        })
    } else {
        let own = &vars.own[..];
        index_distinct_of(own.len(), |i| own.get(i).map_or(&[][..], |p| &p.0[..]))
    }
}

/// Where the variables of `vars` (a list just taken, every name in `buf`)
/// the handler reads are, the first of each name: [`index_distinct`]
/// without looking for repeats.
fn index_listed(vars: &Vars) -> KnownAt {
    let (buf, list) = (&vars.buf[..], &vars.list[..]);
    let mut known = KnownAt::default();
    for (i, &[start, end, _, _]) in list.iter().enumerate() {
        let n = buf.get(start as usize..end as usize).unwrap_or_default();
        known.note_keyed(i, n, name_key(n));
    }
    known
}

/// [`index_distinct`] over `len` names, the name of each given by `name`.
#[inline(always)]
fn index_distinct_of<'a>(len: usize, name: impl Fn(usize) -> &'a [u8]) -> Option<KnownAt> {
    let mut seen = NameFilter::new();
    let mut known = KnownAt::default();
    for i in 0..len {
        let n = name(i);
        let key = name_key(n);
        if seen.insert_key(key) && repeats(i, n, &name) {
            return None;
        }
        known.note_keyed(i, n, key);
    }
    Some(known)
}

/// Whether `n` is the name of one of the first `i` variables (rarely
/// asked: only when the filter of [`index_distinct_of`] had its bit).
#[cold]
#[inline(never)]
fn repeats<'a>(i: usize, n: &[u8], name: &dyn Fn(usize) -> &'a [u8]) -> bool {
    (0..i).any(|j| name(j) == n)
}

/// A set of CGI variable names that answers "maybe seen" or "surely not
/// seen", for finding repeated names in one pass: a Bloom filter of one
/// hash over 2048 bits, kept on the stack.
///
/// A parser inserts each name as it meets it and compares the name with
/// the earlier ones only when [`insert`](NameFilter::insert) says it may
/// have been seen. The hash mixes a name's length and four of its bytes
/// (the first, the middle, the last and the one before it), so the names
/// web servers send differ in it: nginx's, Apache httpd's and lighttpd's
/// CGI variables together with the headers browsers and proxies send
/// (`HTTP_SEC_FETCH_MODE` and `HTTP_SEC_FETCH_SITE`, `REMOTE_ADDR` and
/// `REMOTE_USER`, ...) all take different bits, and such a request costs
/// no comparison at all.
///
/// ```
/// use gateway_core::NameFilter;
///
/// let mut seen = NameFilter::new();
/// assert!(!seen.insert(b"REMOTE_ADDR"));
/// assert!(!seen.insert(b"REMOTE_USER"));
/// assert!(seen.insert(b"REMOTE_ADDR")); // maybe seen: compare to be sure
/// ```
#[derive(Clone)]
pub struct NameFilter([u64; 32]);

impl NameFilter {
    /// An empty filter.
    #[inline]
    pub fn new() -> Self {
        NameFilter([0; 32])
    }

    /// Adds `name`; true if its bit was set already, so that `name` may
    /// have been added before (false: it surely was not).
    #[inline]
    pub fn insert(&mut self, name: &[u8]) -> bool {
        self.insert_key(name_key(name))
    }

    /// [`insert`](NameFilter::insert) with the name's [`name_key`].
    #[inline(always)]
    fn insert_key(&mut self, key: u64) -> bool {
        // 11 bits of the hash: a word of 32 and a bit of 64.
        let bit = (key_hash(key) >> 53) as usize;
        let mask = 1u64 << (bit & 63);
        match self.0.get_mut((bit >> 6) & 31) {
            Some(w) => {
                let was = *w & mask != 0;
                *w |= mask;
                was
            }
            None => true,
        }
    }
}

impl Default for NameFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for NameFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        f.debug_struct("NameFilter")
            .field("bits_set", &set)
            .finish()
    }
}

/// A name's length and its first, middle, last and next-to-last bytes,
/// packed: what [`NameFilter`] hashes. Its low 32 bits (the length and the
/// first, middle and last bytes) are what the environ's one-pass checks
/// dispatch on (the variables the handler reads all differ in them).
#[inline(always)]
pub(crate) const fn name_key(n: &[u8]) -> u64 {
    let len = n.len();
    if len == 0 {
        return 0;
    }
    let before_last = n[len.saturating_sub(2)];
    (before_last as u64) << 40
        | (len as u64) << 24
        | (n[0] as u64) << 16
        | (n[len / 2] as u64) << 8
        | n[len - 1] as u64
}

/// A [`name_key`] spread over all 64 bits (Fibonacci hashing): its top
/// bits pick a name's place in [`NameFilter`] and in the request
/// builder's cache of header names.
#[inline(always)]
pub(crate) const fn key_hash(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How many variables an environ makes room for when its first one is
/// added: about what web servers pass for a request.
const TYPICAL_LEN: usize = 32;

/// The variables of [`Known`], in the order of [`KnownAt::at`].
const KNOWN_NAMES: [&[u8]; 15] = [
    b"REQUEST_METHOD",
    b"SERVER_PROTOCOL",
    b"HTTPS",
    b"REQUEST_SCHEME",
    b"HTTP_HOST",
    b"SERVER_NAME",
    b"SERVER_PORT",
    b"SCRIPT_NAME",
    b"PATH_INFO",
    b"QUERY_STRING",
    b"REQUEST_URI",
    b"CONTENT_TYPE",
    b"CONTENT_LENGTH",
    b"HTTP_TRANSFER_ENCODING",
    b"SERVER_SOFTWARE",
];

const K0: u32 = name_key(KNOWN_NAMES[0]) as u32;
const K1: u32 = name_key(KNOWN_NAMES[1]) as u32;
const K2: u32 = name_key(KNOWN_NAMES[2]) as u32;
const K3: u32 = name_key(KNOWN_NAMES[3]) as u32;
const K4: u32 = name_key(KNOWN_NAMES[4]) as u32;
const K5: u32 = name_key(KNOWN_NAMES[5]) as u32;
const K6: u32 = name_key(KNOWN_NAMES[6]) as u32;
const K7: u32 = name_key(KNOWN_NAMES[7]) as u32;
const K8: u32 = name_key(KNOWN_NAMES[8]) as u32;
const K9: u32 = name_key(KNOWN_NAMES[9]) as u32;
const K10: u32 = name_key(KNOWN_NAMES[10]) as u32;
const K11: u32 = name_key(KNOWN_NAMES[11]) as u32;
const K12: u32 = name_key(KNOWN_NAMES[12]) as u32;
const K13: u32 = name_key(KNOWN_NAMES[13]) as u32;
const K14: u32 = name_key(KNOWN_NAMES[14]) as u32;

// The dispatch on the key needs the keys of the known names to differ.
const _: () = {
    let keys = [
        K0, K1, K2, K3, K4, K5, K6, K7, K8, K9, K10, K11, K12, K13, K14,
    ];
    let mut i = 0;
    while i < keys.len() {
        let mut j = i + 1;
        while j < keys.len() {
            assert!(keys[i] != keys[j], "two known names share a key");
            j += 1;
        }
        i += 1;
    }
};

/// The variables the core reads for every request, found in one pass over
/// the environ instead of one scan each: each is the first value of its
/// name, as [`Environ::get`] finds it, and the methods read them as the
/// environ's methods of the same name do.
#[derive(Clone, Copy)]
pub(crate) struct Known<'a> {
    vars: &'a Vars,
    /// Where the variables are in `vars` (by [`KNOWN_NAMES`] order), for
    /// the methods, which look only at what they are asked for.
    at: [u8; 15],
    pub(crate) script_name: Option<Value<'a>>,
    /// How many `HTTP_*` variables there are.
    pub(crate) http_fields: usize,
}

impl fmt::Debug for Known<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (i, name) in KNOWN_NAMES.iter().enumerate() {
            if let Some(v) = self.get(i) {
                m.entry(&String::from_utf8_lossy(name), &v);
            }
        }
        m.finish()
    }
}

fn nonempty(v: Option<Value<'_>>) -> Option<&[u8]> {
    v.map(|v| v.as_bytes()).filter(|v| !v.is_empty())
}

/// Where the variables of a [`Known`] are in the environ, by field, and
/// how many `HTTP_*` variables there are, kept up to date by the environ.
#[derive(Debug, Clone, Copy)]
struct KnownAt {
    at: [u8; 15],
    http_fields: u32,
    /// Bit `i`: variable `i` (of the first 32) is an `HTTP_*` one.
    http_at: u32,
}

/// Where known variable `f` is, when it is [`FAR`].
#[cold]
fn far(vars: &Vars, f: usize) -> Option<usize> {
    vars.position(KNOWN_NAMES.get(f)?)
}

/// In [`KnownAt::at`]: no such variable.
const NOWHERE: u8 = u8::MAX;
/// In [`KnownAt::at`]: the variable is at index `FAR` or later (found by a
/// scan when asked for; environs that long are rare).
const FAR: u8 = u8::MAX - 1;

impl Default for KnownAt {
    fn default() -> Self {
        KnownAt {
            at: [NOWHERE; 15],
            http_fields: 0,
            http_at: 0,
        }
    }
}

impl KnownAt {
    fn of(vars: &Vars) -> Self {
        let mut k = KnownAt::default();
        for (i, name) in vars.names().enumerate() {
            k.note(i, name);
        }
        k
    }

    /// Takes note of the variable `n` at index `i`, added after the
    /// others.
    #[inline]
    fn note(&mut self, i: usize, n: &[u8]) {
        self.note_keyed(i, n, name_key(n));
    }

    /// [`note`](KnownAt::note) with the name's [`name_key`] at hand: one
    /// dispatch on the key, then one comparison for a name that may be
    /// known.
    #[inline(always)]
    fn note_keyed(&mut self, i: usize, n: &[u8], key: u64) {
        // The key holds the first byte: most names are not looked at again.
        if (key >> 16) as u8 == b'H' && n.starts_with(b"HTTP_") {
            self.http_fields = self.http_fields.saturating_add(1);
            if i < 32 {
                self.http_at |= 1 << i;
            }
        }
        // The comparison with a literal compiles to a few loads.
        // On the low 32 bits (length, first, middle and last bytes): the
        // constants fit in the comparisons' immediates.
        let f = match key as u32 {
            K0 if n == b"REQUEST_METHOD" => 0,
            K1 if n == b"SERVER_PROTOCOL" => 1,
            K2 if n == b"HTTPS" => 2,
            K3 if n == b"REQUEST_SCHEME" => 3,
            K4 if n == b"HTTP_HOST" => 4,
            K5 if n == b"SERVER_NAME" => 5,
            K6 if n == b"SERVER_PORT" => 6,
            K7 if n == b"SCRIPT_NAME" => 7,
            K8 if n == b"PATH_INFO" => 8,
            K9 if n == b"QUERY_STRING" => 9,
            K10 if n == b"REQUEST_URI" => 10,
            K11 if n == b"CONTENT_TYPE" => 11,
            K12 if n == b"CONTENT_LENGTH" => 12,
            K13 if n == b"HTTP_TRANSFER_ENCODING" => 13,
            K14 if n == b"SERVER_SOFTWARE" => 14,
            _ => return,
        };
        if let Some(at) = self.at.get_mut(f)
            && *at == NOWHERE
        {
            *at = u8::try_from(i).map_or(FAR, |i| i.min(FAR));
        }
    }
}

impl<'a> Known<'a> {
    fn of(vars: &'a Vars) -> Self {
        Self::at(vars, &KnownAt::of(vars))
    }

    #[inline]
    fn at(vars: &'a Vars, k: &KnownAt) -> Self {
        let mut known = Known {
            vars,
            at: k.at,
            script_name: None,
            http_fields: k.http_fields as usize,
        };
        known.script_name = known.get(7);
        known
    }

    /// The value of known variable `f` (by [`KNOWN_NAMES`] order).
    #[inline]
    fn get(&self, f: usize) -> Option<Value<'a>> {
        let vars = self.vars;
        let i = match *self.at.get(f)? {
            NOWHERE => return None,
            FAR => far(vars, f)?,
            i => usize::from(i),
        };
        vars.value(i)
    }

    /// As [`Environ::request_method`].
    #[inline]
    pub(crate) fn request_method(&self) -> Option<&'a [u8]> {
        nonempty(self.get(0))
    }

    /// `SERVER_SOFTWARE`, as [`Environ::get`] finds it.
    #[inline]
    pub(crate) fn server_software(&self) -> Option<&'a [u8]> {
        self.get(14).map(|v| v.as_bytes())
    }

    /// As [`Environ::server_protocol`].
    #[inline]
    pub(crate) fn server_protocol(&self) -> Option<&'a [u8]> {
        nonempty(self.get(1))
    }

    /// As [`Environ::https`].
    #[inline]
    pub(crate) fn https(&self) -> bool {
        https(
            self.get(2).map(|v| v.as_bytes()),
            self.get(3).map(|v| v.as_bytes()),
        )
    }

    /// As [`Environ::server_name`].
    pub(crate) fn server_name(&self) -> Option<&'a [u8]> {
        nonempty(self.get(5))
    }

    /// As [`Environ::server_port`].
    pub(crate) fn server_port(&self) -> Option<u16> {
        u16::try_from(parse_decimal(nonempty(self.get(6))?)?).ok()
    }

    /// `HTTP_HOST`, with the buffer it lies in.
    #[inline]
    pub(crate) fn http_host(&self) -> Option<Value<'a>> {
        self.get(4)
    }

    /// `CONTENT_TYPE`, with the buffer it lies in.
    #[inline]
    pub(crate) fn content_type(&self) -> Option<Value<'a>> {
        self.get(11)
    }

    /// As [`Environ::script_name`].
    #[inline]
    pub(crate) fn script_name(&self) -> &'a [u8] {
        self.script_name.map_or(&[], |v| v.as_bytes())
    }

    /// As [`Environ::path_info`].
    pub(crate) fn path_info(&self) -> &'a [u8] {
        self.get(8).map_or(&[], |v| v.as_bytes())
    }

    /// As [`Environ::query_string`].
    pub(crate) fn query_string(&self) -> &'a [u8] {
        self.get(9).map_or(&[], |v| v.as_bytes())
    }

    /// As [`Environ::request_uri`].
    pub(crate) fn request_uri(&self) -> Option<&'a [u8]> {
        nonempty(self.get(10))
    }

    /// [`request_uri`](Known::request_uri) with the buffer it lies in.
    pub(crate) fn request_uri_value(&self) -> Option<Value<'a>> {
        self.get(10).filter(|v| !v.is_empty())
    }

    /// As [`Environ::body_length`].
    #[inline]
    pub(crate) fn body_length(&self) -> Result<BodyLength, InvalidContentLength> {
        BodyLength::from_values(nonempty(self.get(12)), nonempty(self.get(13)).is_some())
    }
}

/// wsgiref's `guess_scheme` over `HTTPS` and `REQUEST_SCHEME`.
fn https(https: Option<&[u8]>, scheme: Option<&[u8]>) -> bool {
    if let Some(v) = https
        && (v.eq_ignore_ascii_case(b"on") || v.eq_ignore_ascii_case(b"yes") || v == b"1")
    {
        return true;
    }
    matches!(scheme, Some(v) if v.eq_ignore_ascii_case(b"https"))
}

/// A `CONTENT_LENGTH` that is not a decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidContentLength;

impl fmt::Display for InvalidContentLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CONTENT_LENGTH is not a decimal number")
    }
}

impl std::error::Error for InvalidContentLength {}

impl Environ {
    /// An empty environ.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty environ with room for `n` variables.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            vars: Vars {
                buf: Bytes::new(),
                list: Vec::with_capacity(n),
                own: Vec::with_capacity(n),
            },
            deferred: None,
            known: KnownAt::default(),
        }
    }

    /// An environ whose variables are made by `make` the first time
    /// anything reads them (once, whatever the number of clones), for a
    /// backend whose environ is derived from a request it already holds in
    /// `http` form: a request whose application never reads its environ
    /// costs no environ.
    ///
    /// `known` holds, of the variables the handler reads for every
    /// request, those the full environ has, with the same values:
    /// `REQUEST_METHOD`, `SERVER_PROTOCOL`, `CONTENT_LENGTH`,
    /// `HTTP_TRANSFER_ENCODING`, `HTTPS`, `REQUEST_SCHEME` and
    /// `SCRIPT_NAME`. Any change to the environ makes it first. A backend
    /// that gives these through
    /// [`Gateway::request_facts`](crate::Gateway::request_facts) may pass
    /// an empty `known`.
    ///
    /// ```
    /// use gateway_core::Environ;
    ///
    /// let known: Environ = [("REQUEST_METHOD", "GET")].into_iter().collect();
    /// let env = Environ::deferred(known, || {
    ///     [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/x")].into_iter().collect()
    /// });
    /// assert_eq!(env.path_info(), b"/x");
    /// assert_eq!(env.len(), 2);
    /// ```
    pub fn deferred(
        known: Environ,
        make: impl Fn() -> Environ + Send + Sync + UnwindSafe + RefUnwindSafe + 'static,
    ) -> Self {
        let mut known = known;
        known.vars_mut();
        Self {
            vars: known.vars,
            known: known.known,
            deferred: Some(Source::Made(Arc::new(Deferred {
                made: OnceLock::new(),
                make,
            }))),
        }
    }

    /// A deferred environ, as [`deferred`](Environ::deferred) makes, whose
    /// variables come from `source` the first time something reads them.
    /// The environ holds `source` (a reference count, no allocation), so a
    /// backend can keep one source per connection and fill it again for the
    /// next request once nothing holds it (see [`EnvironSource`]).
    pub fn deferred_from(known: Environ, source: Arc<dyn EnvironSource>) -> Self {
        let mut known = known;
        known.vars_mut();
        Self {
            vars: known.vars,
            known: known.known,
            deferred: Some(Source::Shared(source)),
        }
    }

    /// Makes this environ deferred in place, as
    /// [`deferred_from`](Environ::deferred_from) would with this environ as
    /// `known`: its variables come from `source` the first time something
    /// reads them. Nothing is moved: a backend that was handed an empty
    /// environ to fill defers it where it is.
    ///
    /// ```
    /// use std::sync::{Arc, OnceLock};
    /// use gateway_core::{Environ, EnvironSource};
    ///
    /// #[derive(Default)]
    /// struct Fixed(OnceLock<Environ>);
    /// impl EnvironSource for Fixed {
    ///     fn environ(&self) -> &Environ {
    ///         self.0.get_or_init(|| {
    ///             [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/x")].into_iter().collect()
    ///         })
    ///     }
    /// }
    ///
    /// let mut env = Environ::new();
    /// env.defer_to(Arc::new(Fixed::default()));
    /// assert_eq!(env.path_info(), b"/x");
    /// ```
    pub fn defer_to(&mut self, source: Arc<dyn EnvironSource>) {
        self.vars_mut();
        self.deferred = Some(Source::Shared(source));
    }

    /// The variables, made first if deferred.
    fn vars(&self) -> &Vars {
        match &self.deferred {
            None => &self.vars,
            Some(d) => d.vars(),
        }
    }

    /// The variables to change, made first if deferred. A caller that
    /// adds, removes or moves a variable keeps `known` up to date.
    #[inline]
    fn vars_mut(&mut self) -> &mut Vars {
        if self.deferred.is_some() {
            self.make_deferred();
        }
        &mut self.vars
    }

    /// Makes a deferred environ's variables its own.
    #[cold]
    fn make_deferred(&mut self) {
        if let Some(d) = self.deferred.take() {
            self.vars = d.vars().clone();
            self.known = KnownAt::of(&self.vars);
        }
    }

    /// Appends a variable, taking note of it if the handler reads it.
    #[inline]
    fn push_var(&mut self, name: Bytes, value: Bytes) {
        let vars = self.vars_mut();
        if vars.own.capacity() == 0 {
            // A request's environ holds a few dozen variables: room for
            // them at once rather than growing four times on the way (or,
            // beside a list, for the few set by name).
            vars.own = take_kept(&SPARE_OWN, if vars.listed() { 1 } else { TYPICAL_LEN });
        }
        let i = vars.len();
        self.known.note(i, &name);
        self.vars.push_own(name, value);
    }

    /// Makes room for at least `n` more variables.
    pub fn reserve(&mut self, n: usize) {
        let vars = self.vars_mut();
        if vars.listed() {
            vars.list.reserve(n);
        } else {
            vars.own.reserve(n);
        }
    }

    /// The number of variables.
    pub fn len(&self) -> usize {
        self.vars().len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars().len() == 0
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        self.vars().position(name)
    }

    /// The raw value of `name`, if present (an empty value is returned as
    /// empty; see [`Environ::get_nonempty`] for RFC 3875's "empty is unset").
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let name = name.as_ref();
        let vars = self.vars();
        let i = vars.position(name)?;
        vars.value(i).map(Value::as_bytes)
    }

    /// The value of `name` unless it is absent or empty: RFC 3875 §4.1 says a
    /// meta-variable with an empty value is to be treated as unset.
    pub fn get_nonempty(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The value of `name` as UTF-8 text, if present and valid UTF-8.
    pub fn get_str(&self, name: impl AsRef<[u8]>) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether `name` is present (even with an empty value).
    pub fn contains(&self, name: impl AsRef<[u8]>) -> bool {
        self.position(name.as_ref()).is_some()
    }

    /// Sets `name` to `value`, replacing an earlier value in place. Returns
    /// the previous value.
    pub fn insert(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Option<Bytes> {
        let name = name.into();
        let value = value.into();
        match self.position(&name) {
            Some(i) => self.vars_mut().set_value(i, value),
            None => {
                self.push_var(name, value);
                None
            }
        }
    }

    /// Appends `name` without looking for an earlier value. Backends use this
    /// when they know the names are distinct (or want to keep a duplicate
    /// visible to [`Environ::iter`]); [`Environ::get`] returns the first.
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.push_var(name.into(), value.into());
    }

    /// Sets every pair as [`insert`](Environ::insert) would, one after the
    /// other (a later value replaces an earlier one of the same name, in
    /// place), without a scan of the environ per pair in the common case of
    /// distinct names.
    pub fn extend_replacing(&mut self, pairs: Vec<(Bytes, Bytes)>) {
        let vars = self.vars_mut();
        if vars.len() == 0 {
            // Taken as it is (the pairs' form is the environ's own).
            vars.own = pairs;
            vars.list.clear();
            self.index_replacing();
            return;
        }
        for (name, value) in pairs {
            self.insert(name, value);
        }
    }

    /// Sets every pair as [`extend_replacing`](Environ::extend_replacing)
    /// does, for pairs that lie in one shared buffer: each is given as the
    /// offsets in `buf` of its name and its value, `[name start, name end,
    /// value start, value end]`. The way to take a whole FastCGI PARAMS
    /// stream: an environ that holds no variable yet keeps `buf` and the
    /// offsets as they are (no reference count per variable, nothing
    /// copied, `spans` itself kept); otherwise each pair is set as a slice
    /// of `buf`. A name or value whose offsets do not lie within `buf` is
    /// taken as empty.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gateway_core::Environ;
    ///
    /// let buf = Bytes::from_static(b"REQUEST_METHODGETPATH_INFO/a");
    /// let mut env = Environ::new();
    /// env.extend_replacing_spans(&buf, vec![[0, 14, 14, 17], [17, 26, 26, 28]]);
    /// assert_eq!(env.request_method(), Some(&b"GET"[..]));
    /// assert_eq!(env.path_info(), b"/a");
    /// ```
    pub fn extend_replacing_spans(&mut self, buf: &Bytes, spans: Vec<[u32; 4]>) {
        self.extend_spans(buf, spans, false);
    }

    /// An empty vector with room for at least `n` spans, for a parser to
    /// fill and hand to
    /// [`extend_replacing_spans`](Environ::extend_replacing_spans) or
    /// [`extend_distinct_spans`](Environ::extend_distinct_spans): the
    /// vector of the last environ dropped on this thread, when there is
    /// one. A server's requests come one after another on a thread, so its
    /// request environs then allocate nothing for their lists.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gateway_core::Environ;
    ///
    /// let buf = Bytes::from_static(b"REQUEST_METHODGET");
    /// let mut spans = Environ::span_list(40);
    /// spans.push([0, 14, 14, 17]);
    /// let mut env = Environ::new();
    /// env.extend_replacing_spans(&buf, spans);
    /// assert_eq!(env.request_method(), Some(&b"GET"[..]));
    /// drop(env);
    /// // The next list is that environ's, emptied, with its room.
    /// let spans = Environ::span_list(1);
    /// assert!(spans.is_empty() && spans.capacity() >= 40);
    /// ```
    pub fn span_list(n: usize) -> Vec<[u32; 4]> {
        take_kept(&SPARE_LIST, n)
    }

    /// [`extend_replacing_spans`](Environ::extend_replacing_spans) for
    /// pairs whose names the caller knows to be distinct, as a parser that
    /// refuses or joins repeated names makes them (the SCGI server's): an
    /// environ that holds no variable yet takes them without looking for
    /// repeats. Should two names be the same after all, both pairs are
    /// kept, in order, and lookups find the first value (as after
    /// [`push`](Environ::push)); an environ that already holds variables
    /// sets each pair as `extend_replacing_spans` does.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gateway_core::Environ;
    ///
    /// let buf = Bytes::from_static(b"REQUEST_METHODGETPATH_INFO/a");
    /// let mut env = Environ::new();
    /// env.extend_distinct_spans(&buf, vec![[0, 14, 14, 17], [17, 26, 26, 28]]);
    /// assert_eq!(env.request_method(), Some(&b"GET"[..]));
    /// assert_eq!(env.path_info(), b"/a");
    /// ```
    pub fn extend_distinct_spans(&mut self, buf: &Bytes, spans: Vec<[u32; 4]>) {
        self.extend_spans(buf, spans, true);
    }

    /// [`extend_replacing_spans`](Environ::extend_replacing_spans), or
    /// [`extend_distinct_spans`](Environ::extend_distinct_spans) when
    /// `distinct`.
    #[inline(always)]
    fn extend_spans(&mut self, buf: &Bytes, mut spans: Vec<[u32; 4]>, distinct: bool) {
        let vars = self.vars_mut();
        let len = buf.len();
        if vars.len() == 0 && len < OWN as usize {
            // Offsets outside `buf` read as empty; only a start that would
            // read as an index of `own` is to be set aside.
            for v in &mut spans {
                if (v[0] | v[2]) & OWN != 0 {
                    *v = [0; 4];
                }
            }
            vars.buf = buf.clone();
            vars.list = spans;
            vars.own.clear();
            if distinct {
                self.known = index_listed(&self.vars);
            } else {
                self.index_replacing();
            }
            return;
        }
        let slice = |start: u32, end: u32| {
            let (start, end) = (start as usize, end as usize);
            if start < end && end <= len {
                buf.slice(start..end)
            } else {
                Bytes::new()
            }
        };
        for v in spans {
            self.insert(slice(v[0], v[1]), slice(v[2], v[3]));
        }
    }

    /// Takes note of the variables just put into this environ (which had
    /// none), setting a repeated name's later values in place of its
    /// first.
    fn index_replacing(&mut self) {
        if let Some(known) = index_distinct(&self.vars) {
            self.known = known;
            return;
        }
        // Repeats: set one after the other.
        self.known = KnownAt::default();
        if !self.vars.listed() {
            let all = std::mem::take(&mut self.vars.own);
            self.vars.own.reserve(all.len());
            for (name, value) in all {
                match self.vars.position(&name) {
                    Some(i) => {
                        self.vars.set_value(i, value);
                    }
                    None => {
                        let i = self.vars.own.len();
                        self.known.note(i, &name);
                        self.vars.own.push((name, value));
                    }
                }
            }
            return;
        }
        let all = std::mem::take(&mut self.vars.list);
        self.vars.list.reserve(all.len());
        for v in all {
            // The first entry goes in before any lookup: `list` is not
            // empty from then on, so the variables keep their form.
            let found = if self.vars.list.is_empty() {
                None
            } else {
                self.vars.position(self.vars.name_of(&v))
            };
            match found {
                Some(i) => {
                    if let Some(earlier) = self.vars.list.get_mut(i) {
                        earlier[2] = v[2];
                        earlier[3] = v[3];
                    }
                }
                None => {
                    let i = self.vars.list.len();
                    self.known.note(i, self.vars.name_of(&v));
                    self.vars.list.push(v);
                }
            }
        }
    }

    /// Sets `name` only if it is absent (Python's `setdefault`).
    pub fn set_default(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        if self.position(&name).is_none() {
            self.push_var(name, value.into());
        }
    }

    /// Removes `name` and returns its value.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) -> Option<Bytes> {
        let i = self.position(name.as_ref())?;
        let value = self.vars_mut().remove(i);
        self.known = KnownAt::of(&self.vars);
        value
    }

    /// Copies every variable of `other` into `self`, `other` winning.
    pub fn extend_from(&mut self, other: &Environ) {
        for (n, v) in other.vars().to_owned_pairs() {
            self.insert(n, v);
        }
    }

    /// The variables the core reads for every request, in one pass.
    #[inline]
    pub(crate) fn known(&self) -> Known<'_> {
        match &self.deferred {
            Some(d) => Known::of(d.vars()),
            None => Known::at(&self.vars, &self.known),
        }
    }

    /// What the handler reads for every request, without making a
    /// deferred environ: the same as [`known`](Environ::known) except that
    /// a deferred environ answers from the variables it was given as known
    /// (its `HTTP_*` count is theirs, not the request's).
    #[inline]
    pub(crate) fn known_now(&self) -> Known<'_> {
        // A deferred environ's `vars` are the known ones it was given.
        Known::at(&self.vars, &self.known)
    }

    /// The `HTTP_*` variables in order: each name, and its value with the
    /// buffer it lies in (and perhaps others after the 32nd: a caller
    /// checks the name).
    pub(crate) fn http_pairs(&self) -> impl Iterator<Item = (&[u8], Value<'_>)> + '_ {
        let vars = self.vars();
        let mut mask = match &self.deferred {
            Some(_) => KnownAt::of(vars).http_at,
            None => self.known.http_at,
        };
        let first = std::iter::from_fn(move || {
            if mask == 0 {
                return None;
            }
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            Some(i)
        });
        first
            .chain(32..vars.len())
            .filter_map(move |i| Some((vars.name(i), vars.value(i)?)))
    }

    /// The variables in order, as raw bytes.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.vars().iter()
    }

    /// `REQUEST_METHOD`.
    pub fn request_method(&self) -> Option<&[u8]> {
        self.get_nonempty("REQUEST_METHOD")
    }

    /// `SCRIPT_NAME` (the mount point of the application; may be empty).
    pub fn script_name(&self) -> &[u8] {
        self.get("SCRIPT_NAME").unwrap_or_default()
    }

    /// `PATH_INFO` (the path below the mount point; may be empty).
    pub fn path_info(&self) -> &[u8] {
        self.get("PATH_INFO").unwrap_or_default()
    }

    /// `QUERY_STRING` (a missing one is the empty string, RFC 3875 §4.1.7).
    pub fn query_string(&self) -> &[u8] {
        self.get("QUERY_STRING").unwrap_or_default()
    }

    /// `REQUEST_URI`, the raw request target some servers pass (not part of
    /// RFC 3875, but sent by Apache, nginx's stock params and lighttpd).
    pub fn request_uri(&self) -> Option<&[u8]> {
        self.get_nonempty("REQUEST_URI")
    }

    /// `CONTENT_TYPE`, unless absent or empty.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.get_nonempty("CONTENT_TYPE")
    }

    /// How long the request body is, by one rule for every backend:
    ///
    /// - `CONTENT_LENGTH` in decimal digits: [`BodyLength::Known`];
    /// - `CONTENT_LENGTH: -1` (what Caddy and Go's FastCGI client send for a
    ///   chunked upload): [`BodyLength::Unknown`];
    /// - absent or empty while the request says it has a body
    ///   (`HTTP_TRANSFER_ENCODING` is set, as Apache's `mod_cgid` passes a
    ///   chunked upload): [`BodyLength::Unknown`];
    /// - absent or empty otherwise: [`BodyLength::None`];
    /// - anything else (`abc`, `+5`, ` 5`, `-2`): an error (answered 400).
    ///
    /// An unknown length means the body is read to its end (the end of the
    /// FastCGI stream, end of file on stdin), bounded by
    /// [`Limits::max_body_len`](crate::Limits::max_body_len).
    pub fn body_length(&self) -> Result<BodyLength, InvalidContentLength> {
        BodyLength::from_values(
            self.get_nonempty("CONTENT_LENGTH"),
            self.get_nonempty("HTTP_TRANSFER_ENCODING").is_some(),
        )
    }

    /// `CONTENT_LENGTH` as a number: `Ok(None)` when absent or empty,
    /// an error when it is not a decimal number (`-1` included: see
    /// [`body_length`](Environ::body_length) for the rule that reads it).
    pub fn content_length(&self) -> Result<Option<u64>, InvalidContentLength> {
        match self.get_nonempty("CONTENT_LENGTH") {
            None => Ok(None),
            Some(v) => parse_decimal(v).map(Some).ok_or(InvalidContentLength),
        }
    }

    /// `SERVER_NAME`.
    pub fn server_name(&self) -> Option<&[u8]> {
        self.get_nonempty("SERVER_NAME")
    }

    /// `SERVER_PORT` as a number, if present and numeric.
    pub fn server_port(&self) -> Option<u16> {
        let v = self.get_nonempty("SERVER_PORT")?;
        u16::try_from(parse_decimal(v)?).ok()
    }

    /// `SERVER_PROTOCOL`, e.g. `HTTP/1.1`.
    pub fn server_protocol(&self) -> Option<&[u8]> {
        self.get_nonempty("SERVER_PROTOCOL")
    }

    /// `SERVER_SOFTWARE`.
    pub fn server_software(&self) -> Option<&[u8]> {
        self.get_nonempty("SERVER_SOFTWARE")
    }

    /// `REMOTE_ADDR`, the client's address as text.
    pub fn remote_addr(&self) -> Option<&[u8]> {
        self.get_nonempty("REMOTE_ADDR")
    }

    /// `REMOTE_PORT`, if present and numeric.
    pub fn remote_port(&self) -> Option<u16> {
        let v = self.get_nonempty("REMOTE_PORT")?;
        u16::try_from(parse_decimal(v)?).ok()
    }

    /// Whether the request came over TLS: `HTTPS` is `on`, `yes` or `1`
    /// (compared without regard to case; IIS sends `off` for plain HTTP), or
    /// `REQUEST_SCHEME` is `https`. This is wsgiref's `guess_scheme`,
    /// widened to the case variants and to `REQUEST_SCHEME`.
    pub fn https(&self) -> bool {
        https(self.get("HTTPS"), self.get("REQUEST_SCHEME"))
    }

    /// Sets the defaults wsgiref's `util.setup_testing_defaults` sets, for
    /// tests and for running an application by hand: `SERVER_NAME`
    /// `127.0.0.1`, `SERVER_PROTOCOL` `HTTP/1.0`, `HTTP_HOST` `127.0.0.1`,
    /// `REQUEST_METHOD` `GET`, `SCRIPT_NAME` and `PATH_INFO` (`""` and `/`
    /// unless either is set), `SERVER_PORT` `80` (or `443` with HTTPS).
    pub fn setup_testing_defaults(&mut self) {
        self.set_default("SERVER_NAME", "127.0.0.1");
        self.set_default("SERVER_PROTOCOL", "HTTP/1.0");
        self.set_default("HTTP_HOST", "127.0.0.1");
        self.set_default("REQUEST_METHOD", "GET");
        if !self.contains("SCRIPT_NAME") && !self.contains("PATH_INFO") {
            self.insert("SCRIPT_NAME", "");
            self.insert("PATH_INFO", "/");
        }
        let port = if self.https() { "443" } else { "80" };
        self.set_default("SERVER_PORT", port);
    }
}

/// Parses a non-empty run of ASCII digits into a `u64`, refusing signs,
/// spaces and overflow.
pub(crate) fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

impl fmt::Debug for Environ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (n, v) in self.vars().iter() {
            m.entry(&String::from_utf8_lossy(n), &String::from_utf8_lossy(v));
        }
        m.finish()
    }
}

impl<N: Into<Bytes>, V: Into<Bytes>> FromIterator<(N, V)> for Environ {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut env = Environ::new();
        for (n, v) in iter {
            env.insert(n, v);
        }
        env
    }
}

impl<N: Into<Bytes>, V: Into<Bytes>> Extend<(N, V)> for Environ {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, iter: I) {
        for (n, v) in iter {
            self.insert(n, v);
        }
    }
}

/// The length of a request body, as [`Environ::body_length`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// The request has no body.
    None,
    /// Exactly this many bytes.
    Known(u64),
    /// A body whose length nobody said: read it to its end.
    Unknown,
}

impl BodyLength {
    /// The rule of [`Environ::body_length`] over the raw values, for a
    /// backend that frames the body before it has an environ:
    /// `content_length` is `CONTENT_LENGTH` (absent or empty: `None`), and
    /// `transfer_coding` whether `HTTP_TRANSFER_ENCODING` is set.
    ///
    /// ```
    /// use gateway_core::BodyLength;
    ///
    /// assert_eq!(BodyLength::from_values(Some(b"12"), false), Ok(BodyLength::Known(12)));
    /// assert_eq!(BodyLength::from_values(Some(b"-1"), false), Ok(BodyLength::Unknown));
    /// assert_eq!(BodyLength::from_values(None, true), Ok(BodyLength::Unknown));
    /// assert!(BodyLength::from_values(Some(b" 5"), false).is_err());
    /// ```
    pub fn from_values(
        content_length: Option<&[u8]>,
        transfer_coding: bool,
    ) -> Result<BodyLength, InvalidContentLength> {
        match content_length.filter(|v| !v.is_empty()) {
            Some(b"-1") => Ok(BodyLength::Unknown),
            Some(v) => parse_decimal(v)
                .map(BodyLength::Known)
                .ok_or(InvalidContentLength),
            None if transfer_coding => Ok(BodyLength::Unknown),
            None => Ok(BodyLength::None),
        }
    }

    /// The exact length: `Some(0)` for no body, `None` when unknown.
    pub fn exact(self) -> Option<u64> {
        match self {
            BodyLength::None => Some(0),
            BodyLength::Known(n) => Some(n),
            BodyLength::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CGI variables of nginx (`fastcgi_params`), Apache httpd and
    /// lighttpd, with the header fields browsers and proxies send, each
    /// set alone: the filter tells every one apart, so a request made of
    /// them costs no comparison of names.
    #[test]
    fn name_filter_tells_web_servers_names_apart() {
        const HEADERS: [&str; 31] = [
            "HOST",
            "USER_AGENT",
            "ACCEPT",
            "ACCEPT_LANGUAGE",
            "ACCEPT_ENCODING",
            "CONNECTION",
            "COOKIE",
            "REFERER",
            "CACHE_CONTROL",
            "UPGRADE_INSECURE_REQUESTS",
            "SEC_FETCH_DEST",
            "SEC_FETCH_MODE",
            "SEC_FETCH_SITE",
            "SEC_FETCH_USER",
            "X_FORWARDED_FOR",
            "X_FORWARDED_PROTO",
            "X_FORWARDED_HOST",
            "X_REAL_IP",
            "DNT",
            "PRAGMA",
            "ORIGIN",
            "IF_NONE_MATCH",
            "IF_MODIFIED_SINCE",
            "AUTHORIZATION",
            "TE",
            "PRIORITY",
            "SEC_CH_UA",
            "SEC_CH_UA_MOBILE",
            "SEC_CH_UA_PLATFORM",
            "CONTENT_TYPE",
            "X_REQUESTED_WITH",
        ];
        let nginx = "QUERY_STRING REQUEST_METHOD CONTENT_TYPE CONTENT_LENGTH SCRIPT_NAME \
                     REQUEST_URI DOCUMENT_URI DOCUMENT_ROOT SERVER_PROTOCOL REQUEST_SCHEME HTTPS \
                     GATEWAY_INTERFACE SERVER_SOFTWARE REMOTE_ADDR REMOTE_PORT REMOTE_USER \
                     SERVER_ADDR SERVER_PORT SERVER_NAME REDIRECT_STATUS SCRIPT_FILENAME";
        let apache = "SERVER_SIGNATURE SERVER_SOFTWARE SERVER_NAME SERVER_ADDR SERVER_PORT \
                      REMOTE_ADDR DOCUMENT_ROOT REQUEST_SCHEME CONTEXT_PREFIX \
                      CONTEXT_DOCUMENT_ROOT SERVER_ADMIN SCRIPT_FILENAME REMOTE_PORT \
                      GATEWAY_INTERFACE SERVER_PROTOCOL REQUEST_METHOD QUERY_STRING REQUEST_URI \
                      SCRIPT_NAME PATH_INFO PATH_TRANSLATED UNIQUE_ID PATH REMOTE_USER AUTH_TYPE \
                      REMOTE_HOST REMOTE_IDENT CONTENT_TYPE CONTENT_LENGTH HTTPS SSL_PROTOCOL \
                      SSL_CIPHER REDIRECT_STATUS REDIRECT_URL REDIRECT_QUERY_STRING";
        let lighttpd = "SERVER_SOFTWARE SERVER_NAME GATEWAY_INTERFACE SERVER_PORT SERVER_ADDR \
                        REMOTE_PORT REMOTE_ADDR SCRIPT_NAME PATH_INFO SCRIPT_FILENAME \
                        DOCUMENT_ROOT REQUEST_URI REDIRECT_URI QUERY_STRING REQUEST_METHOD \
                        REDIRECT_STATUS SERVER_PROTOCOL REQUEST_SCHEME HTTPS CONTENT_LENGTH \
                        CONTENT_TYPE";
        for server in [nginx, apache, lighttpd] {
            let headers = HEADERS.iter().map(|h| format!("HTTP_{h}"));
            let names: Vec<String> = server
                .split_whitespace()
                .map(str::to_owned)
                .chain(headers)
                .collect();
            let mut seen = NameFilter::new();
            for (i, name) in names.iter().enumerate() {
                assert!(
                    !seen.insert(name.as_bytes()),
                    "{name} takes the bit of one of {:?}",
                    &names[..i]
                );
            }
            // Each one again: its bit is set.
            for name in &names {
                assert!(seen.insert(name.as_bytes()), "{name} was forgotten");
            }
        }
    }

    /// Distinct pairs taken as distinct make the environ that
    /// `extend_replacing_spans` makes; repeated ones (which the caller
    /// should not pass) are all kept, and every lookup finds the first.
    #[test]
    fn distinct_spans_are_taken_as_they_are() {
        let buf = Bytes::from_static(
            b"REQUEST_METHODGETHTTP_HOSTh:1CONTENT_LENGTH5SERVER_PROTOCOLHTTP/1.1HTTP_X_AB",
        );
        let spans = vec![
            [0, 14, 14, 17],
            [17, 26, 26, 29],
            [29, 43, 43, 44],
            [44, 59, 59, 67],
            [67, 75, 75, 76],
        ];
        let mut replacing = Environ::new();
        replacing.extend_replacing_spans(&buf, spans.clone());
        let mut distinct = Environ::new();
        distinct.extend_distinct_spans(&buf, spans);
        assert_eq!(distinct, replacing);
        for env in [&distinct, &replacing] {
            let known = env.known();
            assert_eq!(known.request_method(), Some(&b"GET"[..]));
            assert_eq!(known.server_protocol(), Some(&b"HTTP/1.1"[..]));
            assert_eq!(known.body_length(), Ok(BodyLength::Known(5)));
            assert_eq!(env.http_pairs().count(), 2);
        }

        let buf = Bytes::from_static(b"REQUEST_METHODGETPOST");
        let mut repeated = Environ::new();
        repeated.extend_distinct_spans(&buf, vec![[0, 14, 14, 17], [0, 14, 17, 21]]);
        assert_eq!(repeated.len(), 2);
        assert_eq!(repeated.get("REQUEST_METHOD"), Some(&b"GET"[..]));
        assert_eq!(repeated.known().request_method(), Some(&b"GET"[..]));
        assert_eq!(repeated.request_method(), Some(&b"GET"[..]));

        // Over variables already there: set one by one, the later winning.
        let mut over: Environ = [("REQUEST_METHOD", "HEAD")].into_iter().collect();
        over.extend_distinct_spans(&buf, vec![[0, 14, 17, 21]]);
        assert_eq!(over.get("REQUEST_METHOD"), Some(&b"POST"[..]));
        assert_eq!(over.len(), 1);
    }

    /// An environ of names the filter tells apart is indexed without a
    /// comparison; one with a repeat is still found to have it.
    #[test]
    fn names_that_differ_only_inside_are_not_repeats() {
        let env: Environ = [
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_USER", ""),
            ("HTTP_SEC_FETCH_MODE", "navigate"),
            ("HTTP_SEC_FETCH_SITE", "none"),
            ("REQUEST_METHOD", "GET"),
        ]
        .into_iter()
        .collect();
        assert!(index_distinct(&env.vars).is_some());
        assert_eq!(env.known().request_method(), Some(&b"GET"[..]));
        let mut repeated = Environ::new();
        repeated.push("REMOTE_USER", "a");
        repeated.push("REMOTE_ADDR", "b");
        repeated.push("REMOTE_USER", "c");
        assert!(index_distinct(&repeated.vars).is_none());
    }

    /// A deferred environ is made once, on the first read, for every
    /// clone; a change makes it first; the type stays Send, Sync and
    /// unwind-safe like a plain one.
    #[test]
    fn deferred_environ_is_made_once_on_first_read() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        fn traits<T: Send + Sync + UnwindSafe + RefUnwindSafe>() {}
        traits::<Environ>();

        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let known: Environ = [("REQUEST_METHOD", "POST")].into_iter().collect();
        let env = Environ::deferred(known, move || {
            counter.fetch_add(1, Ordering::Relaxed);
            [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/a")]
                .into_iter()
                .collect()
        });
        assert_eq!(env.known_now().request_method(), Some(&b"POST"[..]));
        assert_eq!(made.load(Ordering::Relaxed), 0, "read without making it");
        let copy = env.clone();
        assert_eq!(env.path_info(), b"/a");
        assert_eq!(copy.len(), 2);
        assert_eq!(made.load(Ordering::Relaxed), 1);
        let mut changed = copy.clone();
        changed.insert("QUERY_STRING", "x=1");
        assert_eq!(changed.len(), 3);
        assert_eq!(copy.len(), 2);
        assert_eq!(made.load(Ordering::Relaxed), 1);
        let plain: Environ = [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/a")]
            .into_iter()
            .collect();
        assert_eq!(env, plain);
    }

    /// The positions of the variables the handler reads stay those a
    /// fresh pass finds, whatever way the environ was changed.
    #[test]
    fn known_positions_follow_every_change() {
        fn check(env: &Environ, step: &str) {
            let fresh = KnownAt::of(env.vars());
            if env.deferred.is_none() {
                assert_eq!(env.known.at, fresh.at, "{step}");
                assert_eq!(env.known.http_fields, fresh.http_fields, "{step}");
                assert_eq!(env.known.http_at, fresh.http_at, "{step}");
            }
        }
        let names = [
            "REQUEST_METHOD",
            "HTTP_HOST",
            "HTTPS",
            "HTTP_X",
            "SCRIPT_NAME",
            "CONTENT_LENGTH",
            "OTHER",
            "HTTP_TRANSFER_ENCODING",
            "QUERY_STRING",
            "SERVER_SOFTWARE",
        ];
        let mut env = Environ::new();
        // A simple deterministic walk over the operations.
        let mut x: u32 = 12345;
        for step in 0..400 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let name = names[(x >> 8) as usize % names.len()];
            match (x >> 20) % 6 {
                0 => {
                    env.insert(name, "v");
                }
                1 => env.push(name, "w"),
                2 => {
                    env.remove(name);
                }
                3 => env.set_default(name, "d"),
                4 => {
                    let pairs: Vec<(Bytes, Bytes)> = names
                        .iter()
                        .skip((x >> 4) as usize % names.len())
                        .map(|n| (Bytes::from_static(n.as_bytes()), Bytes::from_static(b"e")))
                        .collect();
                    if (x >> 12) & 1 == 0 {
                        env = Environ::new();
                    }
                    env.extend_replacing(pairs);
                }
                _ => {
                    let known = env.clone();
                    env = Environ::deferred(known.clone(), move || known.clone());
                    check(&env, "deferred");
                    env.insert("HTTP_Y", "y");
                }
            }
            check(&env, &format!("step {step}"));
        }
        // Repeated names in one batch are set one after the other.
        let mut env = Environ::new();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        env.extend_replacing(vec![
            (b("HTTP_HOST"), b("a")),
            (b("REQUEST_METHOD"), b("GET")),
            (b("HTTP_HOST"), b("b")),
        ]);
        check(&env, "repeats");
        assert_eq!(env.len(), 2);
        assert_eq!(
            env.known_now().http_host().map(|v| v.as_bytes()),
            Some(&b"b"[..])
        );
    }

    /// A known variable far into a long environ is still found.
    #[test]
    fn known_variables_past_the_first_254() {
        let mut env = Environ::new();
        for i in 0..300 {
            env.push(format!("X_{i}"), "x");
        }
        env.push("REQUEST_METHOD", "PUT");
        env.push("REQUEST_METHOD", "GET");
        env.push("HTTP_HOST", "h");
        let known = env.known_now();
        assert_eq!(known.request_method(), Some(&b"PUT"[..]));
        assert_eq!(known.http_host().map(|v| v.as_bytes()), Some(&b"h"[..]));
        assert_eq!(known.http_fields, 1);
        let hosts: Vec<&[u8]> = env
            .http_pairs()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(b"HTTP_"))
            .collect();
        assert_eq!(hosts, [b"HTTP_HOST"]);
    }

    /// An environ dropped leaves its vectors to the next one made on the
    /// thread, empty: nothing of the first shows in the second, and a
    /// vector too large to keep is not kept.
    #[test]
    fn a_dropped_environs_vectors_serve_the_next_one_empty() {
        let buf = Bytes::from_static(b"REQUEST_METHODGETA1");
        let mut spans = Environ::span_list(100);
        spans.push([0, 14, 14, 17]);
        spans.push([17, 18, 18, 19]);
        let mut first = Environ::new();
        first.extend_replacing_spans(&buf, spans);
        first.push("FCGI_ROLE", "RESPONDER");
        let own_room = first.vars.own.capacity();
        drop(first);

        let spans = Environ::span_list(1);
        assert!(spans.is_empty());
        assert!(spans.capacity() >= 100, "{}", spans.capacity());
        let mut second = Environ::new();
        let buf = Bytes::from_static(b"PATH_INFO/x");
        let mut spans = spans;
        spans.push([0, 9, 9, 11]);
        second.extend_replacing_spans(&buf, spans);
        second.push("B", "2");
        assert_eq!(second.vars.own.capacity(), own_room);
        let pairs: Vec<(&[u8], &[u8])> = second.iter().collect();
        assert_eq!(pairs, [(&b"PATH_INFO"[..], &b"/x"[..]), (b"B", b"2")]);
        drop(second);

        let mut large = Environ::span_list(SPARE_LIST_MAX + 1);
        large.push([0, 9, 9, 11]);
        let mut env = Environ::new();
        env.extend_replacing_spans(&buf, large);
        drop(env);
        assert_eq!(Environ::span_list(0).capacity(), 0);
    }

    /// An environ dropped while its thread exits, after the kept vectors
    /// are gone, is dropped without a panic.
    #[test]
    fn an_environ_dropped_at_thread_exit_after_the_kept_vectors() {
        thread_local! {
            static HELD: std::cell::RefCell<Option<Environ>> =
                const { std::cell::RefCell::new(None) };
        }
        let environ = || {
            let buf = Bytes::from_static(b"REQUEST_METHODGET");
            let mut spans = Environ::span_list(4);
            spans.push([0, 14, 14, 17]);
            let mut env = Environ::new();
            env.extend_replacing_spans(&buf, spans);
            env.push("FCGI_ROLE", "RESPONDER");
            env
        };
        let exited = std::thread::spawn(move || {
            // Held first, so destroyed last: thread-locals go in the
            // reverse order of their first use.
            HELD.with(|h| *h.borrow_mut() = Some(environ()));
            drop(environ());
        })
        .join();
        assert!(exited.is_ok());
    }

    /// An environ a parser made from spans (FastCGI's) finds
    /// `SERVER_SOFTWARE` among its known variables, as `get` does.
    #[test]
    fn server_software_is_known_in_an_environ_made_from_spans() {
        let buf = Bytes::from_static(b"SERVER_SOFTWAREMicrosoft-IIS/10.0SERVER_SOFTWAREx");
        let mut env = Environ::new();
        env.extend_replacing_spans(&buf, vec![[0, 15, 15, 33]]);
        assert_eq!(
            env.known().server_software(),
            Some(&b"Microsoft-IIS/10.0"[..])
        );
        env.extend_replacing_spans(&buf, vec![[33, 48, 48, 49]]);
        assert_eq!(env.known().server_software(), env.get("SERVER_SOFTWARE"));
        assert_eq!(env.known().server_software(), Some(&b"x"[..]));
        env.remove("SERVER_SOFTWARE");
        assert_eq!(env.known().server_software(), None);
    }

    /// Every known name fills its own field, and a name that differs
    /// from it in a byte the key does not look at fills none.
    #[test]
    fn each_known_name_fills_its_field() {
        for (f, name) in KNOWN_NAMES.iter().enumerate() {
            let mut k = KnownAt::default();
            k.note(3, name);
            assert_eq!(k.at[f], 3, "{}", String::from_utf8_lossy(name));
            assert_eq!(k.at.iter().filter(|&&a| a != NOWHERE).count(), 1);
            let mut near = name.to_vec();
            near[1] = b'#';
            let mut k = KnownAt::default();
            k.note(0, &near);
            assert!(k.at.iter().all(|&a| a == NOWHERE), "{near:?}");
        }
    }

    /// Pairs taken as offsets in a shared buffer read as the same pairs
    /// set one by one: repeats replaced in place, offsets outside the
    /// buffer empty, and an environ that already has variables gets them
    /// by name.
    #[test]
    fn spans_read_as_pairs_set_one_by_one() {
        let buf = Bytes::from_static(b"HTTP_HOSTaREQUEST_METHODGETHTTP_HOSTbX");
        let spans = vec![
            [0, 9, 9, 10],
            [10, 24, 24, 27],
            [27, 36, 36, 37],
            [37, 38, 30, 99],
            [OWN | 1, 2, 0, 1],
        ];
        let mut by_name = Environ::new();
        by_name.insert("HTTP_HOST", "a");
        by_name.insert("REQUEST_METHOD", "GET");
        by_name.insert("HTTP_HOST", "b");
        by_name.insert("X", "");
        by_name.insert("", "");
        let mut env = Environ::new();
        env.extend_replacing_spans(&buf, spans.clone());
        assert_eq!(env, by_name);
        assert_eq!(env.known_now().request_method(), Some(&b"GET"[..]));
        assert_eq!(env.known_now().http_fields, 1);

        let mut base: Environ = [("REQUEST_METHOD", "POST"), ("A", "1")]
            .into_iter()
            .collect();
        base.extend_replacing_spans(&buf, spans);
        let names: Vec<&[u8]> = base.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [&b"REQUEST_METHOD"[..], b"A", b"HTTP_HOST", b"X", b""]
        );
        assert_eq!(base.request_method(), Some(&b"GET"[..]));
        assert_eq!(base.get("HTTP_HOST"), Some(&b"b"[..]));
    }

    /// Values set over shared ones, and removals, keep every other
    /// variable as it was.
    #[test]
    fn changes_over_shared_variables() {
        let buf = Bytes::from_static(b"AaBbCc");
        let mut env = Environ::new();
        env.extend_replacing_spans(&buf, vec![[0, 1, 1, 2], [2, 3, 3, 4], [4, 5, 5, 6]]);
        assert_eq!(env.insert("B", "x"), Some(Bytes::from_static(b"b")));
        env.push("D", "d");
        env.push("E", "e");
        assert_eq!(env.remove("B"), Some(Bytes::from_static(b"x")));
        assert_eq!(env.insert("D", "dd"), Some(Bytes::from_static(b"d")));
        assert_eq!(env.remove("A"), Some(Bytes::from_static(b"a")));
        let all: Vec<(&[u8], &[u8])> = env.iter().collect();
        assert_eq!(all, [(&b"C"[..], &b"c"[..]), (b"D", b"dd"), (b"E", b"e")]);
        assert_eq!(env.remove("D"), Some(Bytes::from_static(b"dd")));
        assert_eq!(env.get("E"), Some(&b"e"[..]));
        assert_eq!(
            env.vars().own.len(),
            1,
            "removed variables give back their buffers"
        );
        // With every variable removed, the environ takes new ones by name.
        env.remove("C");
        env.remove("E");
        assert!(env.is_empty());
        env.insert("F", "f");
        env.insert("F", "g");
        assert_eq!(env.iter().collect::<Vec<_>>(), [(&b"F"[..], &b"g"[..])]);
    }

    #[test]
    fn insert_replaces_in_place_and_keeps_order() {
        let mut e = Environ::new();
        e.insert("A", "1");
        e.insert("B", "2");
        assert_eq!(e.insert("A", "3"), Some(Bytes::from_static(b"1")));
        let names: Vec<_> = e.iter().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(names, vec![b"A".to_vec(), b"B".to_vec()]);
        assert_eq!(e.get("A"), Some(&b"3"[..]));
    }

    #[test]
    fn empty_values_count_as_unset_for_typed_accessors() {
        let e: Environ = [("CONTENT_LENGTH", ""), ("CONTENT_TYPE", "")]
            .into_iter()
            .collect();
        assert_eq!(e.content_length(), Ok(None));
        assert_eq!(e.content_type(), None);
        assert_eq!(e.get("CONTENT_TYPE"), Some(&b""[..]));
    }

    #[test]
    fn content_length_rejects_non_digits() {
        for bad in ["-1", "+1", " 1", "1 ", "0x10", "99999999999999999999999"] {
            let e: Environ = [("CONTENT_LENGTH", bad)].into_iter().collect();
            assert_eq!(e.content_length(), Err(InvalidContentLength), "{bad}");
        }
    }

    /// One rule for the body's length: digits, `-1` and a transfer coding
    /// without a length are read; anything else is malformed.
    #[test]
    fn body_length_rule() {
        let env =
            |pairs: &[(&'static str, &'static str)]| -> Environ { pairs.iter().copied().collect() };
        assert_eq!(env(&[]).body_length(), Ok(BodyLength::None));
        assert_eq!(
            env(&[("CONTENT_LENGTH", "")]).body_length(),
            Ok(BodyLength::None)
        );
        assert_eq!(
            env(&[("CONTENT_LENGTH", "12")]).body_length(),
            Ok(BodyLength::Known(12))
        );
        assert_eq!(
            env(&[("CONTENT_LENGTH", "-1")]).body_length(),
            Ok(BodyLength::Unknown)
        );
        assert_eq!(
            env(&[("HTTP_TRANSFER_ENCODING", "chunked")]).body_length(),
            Ok(BodyLength::Unknown)
        );
        assert_eq!(
            env(&[
                ("CONTENT_LENGTH", "5"),
                ("HTTP_TRANSFER_ENCODING", "chunked")
            ])
            .body_length(),
            Ok(BodyLength::Known(5))
        );
        for bad in ["abc", "+5", " 5", "5 ", "-2", "-1 ", "--1"] {
            assert_eq!(
                env(&[("CONTENT_LENGTH", bad)]).body_length(),
                Err(InvalidContentLength),
                "{bad}"
            );
        }
    }

    /// only on/yes/1 give https; "foo", "off" and absence give http.
    #[test]
    fn c22_https_values() {
        for (v, want) in [
            ("on", true),
            ("yes", true),
            ("1", true),
            ("ON", true),
            ("foo", false),
            ("off", false),
            ("0", false),
        ] {
            let e: Environ = [("HTTPS", v)].into_iter().collect();
            assert_eq!(e.https(), want, "HTTPS={v}");
        }
        assert!(!Environ::new().https());
        let e: Environ = [("REQUEST_SCHEME", "https")].into_iter().collect();
        assert!(e.https());
    }

    #[test]
    fn testing_defaults() {
        let mut e = Environ::new();
        e.setup_testing_defaults();
        assert_eq!(e.get("SERVER_NAME"), Some(&b"127.0.0.1"[..]));
        assert_eq!(e.get("PATH_INFO"), Some(&b"/"[..]));
        assert_eq!(e.server_port(), Some(80));
    }
}

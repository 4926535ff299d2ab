//! Building the `http::Request` from the environ: the same for every backend
//! .

use std::cell::Cell;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri, Version};

use crate::body::Body;
use crate::environ::{BodyLength, Environ, Known};
use crate::error::{Error, Kind};

/// Builds the request line and headers of an [`http::Request`] from an
/// environ (the body and extensions are the handler's job).
///
/// The rule, for every backend:
/// - **method** from `REQUEST_METHOD` (case kept; missing means `GET`);
/// - **version** from `SERVER_PROTOCOL` (`HTTP/0.9`, `1.0`, `1.1`, `2`,
///   `2.0`, `3`, `3.0`; `INCLUDED` and anything else mean HTTP/1.0);
/// - **headers** from `HTTP_*` (`HTTP_X_Y` → `x-y`) plus `CONTENT_TYPE` and
///   `CONTENT_LENGTH`, which win over `HTTP_CONTENT_*` (nginx sends both;
///   `HTTP_CONTENT_LENGTH` is never used, since `CONTENT_LENGTH` alone
///   frames the body).
///   `HTTP_PROXY` is dropped (httpoxy: the `Proxy` request header has no
///   legitimate use and must never look like a proxy setting). A name that
///   cannot be a header name is skipped (it stays in the environ); a value
///   that cannot be a header value is a 400;
/// - **scheme** `https` when [`Environ::https`] says so;
/// - **authority** from `HTTP_HOST`, else `SERVER_NAME` with `SERVER_PORT`
///   unless it is the scheme's default;
/// - **path** `SCRIPT_NAME` + `PATH_INFO` (both arrive decoded, RFC 3875
///   §4.1.5/4.1.13), percent-encoded again. When `REQUEST_URI` is present
///   and its path decodes to the same bytes (fully, or with `%2F` left
///   encoded, as Apache's `AllowEncodedSlashes NoDecode` and lighttpd do),
///   its raw path is used instead, which keeps `%2F` and the client's
///   spelling. When neither `SCRIPT_NAME` nor `PATH_INFO` is set (nginx's
///   stock SCGI params, the FastCGI authorizer role), the path comes from
///   `REQUEST_URI`, else it is `/`;
/// - **query** `QUERY_STRING` as it came, with only the bytes a URI cannot
///   hold (controls, space, `#`, non-ASCII) percent-encoded.
///
/// So the application routes on the full path the client asked for, mount
/// prefix included; see [`Handler::mount`](crate::HandlerBuilder::mount) to
/// strip a prefix.
pub fn build_request(env: &Environ, body: Body) -> Result<Request<Body>, Error> {
    let known = env.known();
    let method = match known.request_method() {
        None => Method::GET,
        Some(m) => Method::from_bytes(m).map_err(|_| bad("invalid REQUEST_METHOD"))?,
    };
    let version = version_of(known.server_protocol());
    let https = known.https();

    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.version_mut() = version;
    *req.uri_mut() = build_uri(&known, https)?;

    let content_type = known.content_type().filter(|v| !v.is_empty());
    let has_content_type = content_type.is_some();
    let body_length = known.body_length();
    // Room for what the loop below and the two fields after it may add,
    // no more: a map a little larger than it needs can double in size
    // and leave the allocator's fast path.
    let room = known.http_fields
        + usize::from(has_content_type)
        + usize::from(matches!(body_length, Ok(BodyLength::Known(_))));
    let headers = req.headers_mut();
    *headers = spare_headers(room);
    for (name, value) in env.http_pairs() {
        let Some(rest) = name.strip_prefix(b"HTTP_") else {
            continue;
        };
        if value.is_empty() && rest != b"HOST" {
            // nginx sends empty HTTP_ params it was told to blank out
            // (`fastcgi_param HTTP_PROXY ""`); an empty header carries nothing.
            continue;
        }
        if rest == b"PROXY" {
            tracing::debug!("dropping HTTP_PROXY (httpoxy)");
            continue;
        }
        // CONTENT_LENGTH alone frames the body, so HTTP_CONTENT_LENGTH
        // never becomes a header; CONTENT_TYPE wins over HTTP_CONTENT_TYPE.
        if rest == b"CONTENT_LENGTH" || (rest == b"CONTENT_TYPE" && has_content_type) {
            continue;
        }
        let Some(name) = header_name(rest) else {
            tracing::debug!(
                name = %String::from_utf8_lossy(name),
                "skipping a meta-variable that is not a header name"
            );
            continue;
        };
        // The environ's buffer is shared, not copied.
        let value = HeaderValue::from_maybe_shared(value.to_shared())
            .map_err(|_| bad("invalid header value in environ"))?;
        headers.append(name, value);
    }
    if let Some(ct) = content_type {
        let v = HeaderValue::from_maybe_shared(ct.to_shared())
            .map_err(|_| bad("invalid CONTENT_TYPE"))?;
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    match body_length {
        Ok(BodyLength::Known(n)) => {
            // Small lengths (0 above all: nginx sends `CONTENT_LENGTH` with
            // every SCGI request) without an allocation.
            headers.insert(
                http::header::CONTENT_LENGTH,
                crate::pipeline::length_value(n),
            );
        }
        Ok(BodyLength::None | BodyLength::Unknown) => {}
        Err(_) => return Err(bad("CONTENT_LENGTH is not a decimal number")),
    }
    Ok(req)
}

thread_local! {
    /// The header map of a response this thread wrote, emptied, for the
    /// next request it builds: a connection's requests and responses take
    /// turns, so a request's headers mostly go into the map the last
    /// response had (as hyper does with its requests), without allocating.
    static SPARE_HEADERS: Cell<Option<HeaderMap>> = const { Cell::new(None) };
    /// Whether this thread ever kept a map: see `environ`'s `KEPT_ANY`.
    static KEPT_MAP: Cell<bool> = const { Cell::new(false) };
}

/// The most header fields a kept map may have room for: a response with
/// more does not leave its memory to the thread.
const SPARE_MAX: usize = 48;

/// Keeps a response's header map, emptied, for the next request built on
/// this thread (see [`build_request`]), unless it is large.
pub(crate) fn keep_spare_headers(mut headers: HeaderMap) {
    if headers.capacity() == 0 || headers.capacity() > SPARE_MAX {
        return;
    }
    headers.clear();
    KEPT_MAP.set(true);
    // A map kept before (two responses in a row) is dropped; nothing is
    // kept during the thread's exit.
    let _ = SPARE_HEADERS.try_with(|spare| spare.set(Some(headers)));
}

/// Drops the header map this thread keeps for its next request (when a
/// burst of connections has ended: it may lie high in the heap).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn drop_kept_headers() {
    if KEPT_MAP.get() {
        let _ = SPARE_HEADERS.try_with(Cell::take);
    }
}

/// Whether this thread keeps a header map (for tests).
#[cfg(test)]
pub(crate) fn kept_headers() -> bool {
    SPARE_HEADERS.with(|spare| {
        let map = spare.take();
        let kept = map.is_some();
        spare.set(map);
        kept
    })
}

/// An empty header map with room for `room` fields: the kept one when it
/// has that room, else a new one (the kept one stays for a later request).
fn spare_headers(room: usize) -> HeaderMap {
    SPARE_HEADERS
        .try_with(|spare| match spare.take() {
            Some(map) if map.capacity() >= room => Some(map),
            kept => {
                spare.set(kept);
                None
            }
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| HeaderMap::with_capacity(room))
}

fn bad(why: &'static str) -> Error {
    Error::new(Kind::BadRequest(why))
}

/// `HTTP_X_FORWARDED_FOR` → `x-forwarded-for`, or `None` when the rest of
/// the name is not made of letters, digits, underscores and dashes.
fn header_name(rest: &[u8]) -> Option<HeaderName> {
    use http::header;
    // The fields nearly every request carries, without a parse: one
    // dispatch on the length, then a comparison with a literal (a few
    // loads).
    let common = match rest.len() {
        4 if rest == b"HOST" => Some(header::HOST),
        6 if rest == b"ACCEPT" => Some(header::ACCEPT),
        6 if rest == b"COOKIE" => Some(header::COOKIE),
        7 if rest == b"REFERER" => Some(header::REFERER),
        10 if rest == b"USER_AGENT" => Some(header::USER_AGENT),
        10 if rest == b"CONNECTION" => Some(header::CONNECTION),
        13 if rest == b"AUTHORIZATION" => Some(header::AUTHORIZATION),
        13 if rest == b"CACHE_CONTROL" => Some(header::CACHE_CONTROL),
        15 if rest == b"ACCEPT_ENCODING" => Some(header::ACCEPT_ENCODING),
        15 if rest == b"ACCEPT_LANGUAGE" => Some(header::ACCEPT_LANGUAGE),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    // (Made anew while the thread's cache is gone or in use: at thread
    // exit, or from a destructor.)
    NAMES
        .try_with(|names| match names.try_borrow_mut() {
            Ok(mut names) => names.get(rest),
            Err(_) => make_header_name(rest),
        })
        .unwrap_or_else(|_| make_header_name(rest))
}

/// What each byte of an `HTTP_*` variable's name becomes in the header
/// name: letters lowercased, `_` made `-`, digits and `-` kept; 0 for a
/// byte no header name made this way may hold.
static NAME_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'_' => b'-',
            b'A'..=b'Z' => c.to_ascii_lowercase(),
            b'a'..=b'z' | b'0'..=b'9' | b'-' => c,
            _ => 0,
        };
        b += 1;
    }
    t
};

/// The header name `rest` (an `HTTP_*` variable's name less `HTTP_`)
/// stands for, made anew.
fn make_header_name(rest: &[u8]) -> Option<HeaderName> {
    if rest.is_empty() || rest.len() > MAX_NAME {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    let out = buf.get_mut(..rest.len())?;
    // Every byte through the table, then one check: a loop without exits.
    let mut invalid = false;
    for (o, &b) in out.iter_mut().zip(rest) {
        let m = NAME_BYTES[usize::from(b)];
        invalid |= m == 0;
        *o = m;
    }
    if invalid {
        return None;
    }
    HeaderName::from_bytes(out).ok()
}

/// The longest `HTTP_*` variable name (less `HTTP_`) made a header name.
const MAX_NAME: usize = 256;

/// The longest name [`NameCache`] keeps.
const MAX_CACHED_NAME: usize = 48;

/// How many names [`NameCache`] keeps.
const CACHED_NAMES: usize = 32;

/// How many slots from its own [`NameCache`] looks a name up in.
const PROBES: usize = 4;

/// The header names made for the less common `HTTP_*` variables (those
/// not matched in [`header_name`]) by the last requests on this thread,
/// by the variable's name: a web server sends the same fields request
/// after request (`HTTP_SEC_FETCH_MODE`, `HTTP_X_FORWARDED_FOR`, ...), and
/// each such header name is otherwise parsed and allocated anew. A fixed
/// number of names of a bounded length, each in the slot its hash picks
/// or one of the few after it (when they are all taken, a newer name takes
/// its own slot over), so the memory is bounded whatever the requests.
struct NameCache {
    slots: [Option<(Box<[u8]>, HeaderName)>; CACHED_NAMES],
}

thread_local! {
    static NAMES: std::cell::RefCell<NameCache> = const {
        std::cell::RefCell::new(NameCache {
            slots: [const { None }; CACHED_NAMES],
        })
    };
}

impl NameCache {
    /// The header name of `rest`, from the cache or made (and kept).
    #[inline]
    fn get(&mut self, rest: &[u8]) -> Option<HeaderName> {
        if rest.is_empty() || rest.len() > MAX_CACHED_NAME {
            return make_header_name(rest);
        }
        let hash = crate::environ::key_hash(crate::environ::name_key(rest));
        let at = (hash >> 59) as usize;
        // The name's slot or one of the next few; a free one of them takes
        // a new name, else the name's own slot does.
        let mut free = None;
        for i in 0..PROBES {
            match self.slots.get((at + i) % CACHED_NAMES) {
                Some(Some((raw, name))) if **raw == *rest => return Some(name.clone()),
                Some(None) if free.is_none() => free = Some((at + i) % CACHED_NAMES),
                _ => {}
            }
        }
        let slot = self.slots.get_mut(free.unwrap_or(at % CACHED_NAMES))?;
        let name = make_header_name(rest)?;
        *slot = Some((rest.into(), name.clone()));
        Some(name)
    }
}

/// The HTTP version named by `SERVER_PROTOCOL`.
pub(crate) fn version_of(proto: Option<&[u8]>) -> Version {
    let Some(p) = proto else {
        return Version::HTTP_10;
    };
    // What nearly every request says, in one comparison.
    if p == b"HTTP/1.1" {
        return Version::HTTP_11;
    }
    if p.len() < 5 || !p[..5].eq_ignore_ascii_case(b"HTTP/") {
        return Version::HTTP_10;
    }
    match &p[5..] {
        b"0.9" => Version::HTTP_09,
        b"1.1" => Version::HTTP_11,
        b"2" | b"2.0" => Version::HTTP_2,
        b"3" | b"3.0" => Version::HTTP_3,
        _ => Version::HTTP_10,
    }
}

fn build_uri(env: &Known<'_>, https: bool) -> Result<Uri, Error> {
    let scheme = if https { Scheme::HTTPS } else { Scheme::HTTP };
    let authority = authority(env, https)?;
    let path_and_query = path_and_query(env)?;
    let mut parts = http::uri::Parts::default();
    // A URI with a scheme needs an authority; without one (no Host, no
    // SERVER_NAME) the request target is the path alone.
    if authority.is_some() {
        parts.scheme = Some(scheme);
        parts.authority = authority;
    }
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).map_err(|_| bad("cannot build the request URI"))
}

fn authority(env: &Known<'_>, https: bool) -> Result<Option<Authority>, Error> {
    if let Some(host) = env.http_host().filter(|h| !h.is_empty()) {
        return host_authority(&host)
            .map(Some)
            .ok_or_else(|| bad("invalid Host header"));
    }
    let Some(name) = env.server_name() else {
        return Ok(None);
    };
    let mut auth = BytesMut::with_capacity(name.len() + 6);
    auth.put_slice(name);
    if let Some(port) = env.server_port() {
        let default = if https { 443 } else { 80 };
        if port != default {
            auth.put_slice(format!(":{port}").as_bytes());
        }
    }
    // A SERVER_NAME that is not a valid host (IIS can send odd ones) just
    // leaves the URI without an authority.
    Ok(Authority::from_maybe_shared(auth.freeze()).ok())
}

thread_local! {
    /// The authority of the last valid `Host` this thread parsed: the
    /// requests a connection carries (and most of a thread's) name the
    /// same host, so it is parsed once, not for each request.
    static LAST_HOST: std::cell::RefCell<Option<Authority>> =
        const { std::cell::RefCell::new(None) };
}

/// The authority a `Host` value names, or `None` when it is not one.
fn host_authority(host: &[u8]) -> Option<Authority> {
    let cached = LAST_HOST.with(|last| {
        last.try_borrow()
            .ok()?
            .as_ref()
            .filter(|a| a.as_str().as_bytes() == host)
            .cloned()
    });
    if cached.is_some() {
        return cached;
    }
    // A copy of its own: the cache must not hold the request's buffer.
    let authority = Authority::from_maybe_shared(Bytes::copy_from_slice(host)).ok()?;
    LAST_HOST.with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(authority.clone());
        }
    });
    Some(authority)
}

fn path_and_query(env: &Known<'_>) -> Result<PathAndQuery, Error> {
    let sn = env.script_name();
    let pi = env.path_info();
    let query = env.query_string();
    let raw_uri_path = env
        .request_uri()
        .map(|u| u.split(|&b| b == b'?').next().unwrap_or_default())
        .filter(|p| p.starts_with(b"/"));

    if let Some(raw) = raw_uri_path
        && ((sn.is_empty() && pi.is_empty()) || agrees(raw, sn, pi))
        && let Some(shared) = shared_target(env, raw, query)
    {
        return Ok(shared);
    }

    let mut out = BytesMut::with_capacity(sn.len() + pi.len() + query.len() + 8);
    match raw_uri_path {
        Some(raw) if (sn.is_empty() && pi.is_empty()) || agrees(raw, sn, pi) => {
            // Keep the raw path, re-encoding only what a URI cannot hold.
            encode_into(&mut out, raw, &RAW_PATH);
        }
        _ => {
            encode_into(&mut out, sn, &PATH_SAFE);
            encode_into(&mut out, pi, &PATH_SAFE);
        }
    }
    if out.is_empty() || out[0] != b'/' {
        let mut with_slash = BytesMut::with_capacity(out.len() + 1);
        with_slash.put_u8(b'/');
        with_slash.put_slice(&out);
        out = with_slash;
    }
    if !query.is_empty() {
        out.put_u8(b'?');
        encode_into(&mut out, query, &QUERY);
    }
    PathAndQuery::from_maybe_shared(out.freeze()).map_err(|_| bad("invalid request path"))
}

/// The path and query as the rule above builds them, when that is
/// `REQUEST_URI` (or the start of it) as it is, which needs no copy: its
/// path `raw` is kept and needs no encoding, and the query is the rest of
/// it and needs none either.
fn shared_target(env: &Known<'_>, raw: &[u8], query: &[u8]) -> Option<PathAndQuery> {
    if !raw.iter().all(|&b| RAW_PATH[usize::from(b)]) {
        return None;
    }
    let uri = env.request_uri_value()?;
    let len = if query.is_empty() {
        raw.len()
    } else {
        let rest = uri.as_bytes().get(raw.len()..)?;
        if rest.len() != query.len() + 1
            || rest.first() != Some(&b'?')
            || !rest.ends_with(query)
            || !query.iter().all(|&b| QUERY[usize::from(b)])
        {
            return None;
        }
        uri.len()
    };
    PathAndQuery::from_maybe_shared(uri.prefix(len).to_shared()).ok()
}

/// Whether `raw` (a REQUEST_URI path) percent-decodes to `sn` + `pi`, either
/// fully or with `%2F` left as it is.
fn agrees(raw: &[u8], sn: &[u8], pi: &[u8]) -> bool {
    if !raw.contains(&b'%') {
        // Nothing to decode (the common case): compare in place.
        return raw.len() == sn.len() + pi.len() && raw.starts_with(sn) && raw.ends_with(pi);
    }
    let joined = [sn, pi].concat();
    decode(raw, true) == joined || decode(raw, false) == joined
}

/// Percent-decodes `s`; with `slashes` false, `%2F`/`%2f` stays encoded.
pub(crate) fn decode(s: &[u8], slashes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            let b = h << 4 | l;
            if slashes || b != b'/' {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// wsgiref quotes paths with `/;=,` safe besides letters, digits and
/// `_.-~`.
const fn is_path_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b';' | b'=' | b',' | b'_' | b'.' | b'-' | b'~')
}

/// Bytes kept as they are in a raw REQUEST_URI path: every visible ASCII
/// byte a URI path may hold, including `%` (already an escape).
const fn is_raw_path_byte(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'?' | b'#' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// Bytes kept as they are in a query string (the query is passed raw,
/// but a URI cannot hold controls, space, `#` or non-ASCII).
const fn is_query_byte(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'#' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// The bytes one of the functions above keeps, as a table (one load per
/// byte).
macro_rules! table {
    ($keep:ident) => {{
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = $keep(b as u8);
            b += 1;
        }
        t
    }};
}

static PATH_SAFE: [bool; 256] = table!(is_path_safe);
static RAW_PATH: [bool; 256] = table!(is_raw_path_byte);
static QUERY: [bool; 256] = table!(is_query_byte);

/// Appends `s` with every byte `keep` does not keep percent-encoded; the
/// runs of kept bytes are copied whole.
#[inline]
fn encode_into(out: &mut BytesMut, s: &[u8], keep: &[bool; 256]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(s.len());
    let mut rest = s;
    loop {
        let run = rest
            .iter()
            .position(|&b| !keep[usize::from(b)])
            .unwrap_or(rest.len());
        let (kept, tail) = rest.split_at(run);
        out.extend_from_slice(kept);
        let Some((&b, tail)) = tail.split_first() else {
            return;
        };
        out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        rest = tail;
    }
}

/// Percent-encodes a path the way the request builder does, for
/// code that rebuilds URLs from `SCRIPT_NAME`/`PATH_INFO`.
pub fn quote_path(s: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(s.len());
    encode_into(&mut out, s, &PATH_SAFE);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response's header map, kept, holds the next request's headers
    /// when it has room for them, emptied of the response's; a request
    /// with more fields gets a map of its own, and the kept one stays.
    #[test]
    fn a_kept_response_map_holds_the_next_requests_headers_only() {
        let mut response = HeaderMap::with_capacity(6);
        response.insert("x-response", HeaderValue::from_static("1"));
        response.append("set-cookie", HeaderValue::from_static("a=1"));
        let room = response.capacity();
        keep_spare_headers(response);
        let (_, env) = environ(&[
            ("REQUEST_METHOD", "POST"),
            ("HTTP_HOST", "example.com"),
            ("HTTP_ACCEPT", "*/*"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "3"),
        ]);
        let req = build_request(&env, Body::empty()).unwrap();
        let h = req.headers();
        assert_eq!(h.len(), 4, "{h:?}");
        assert_eq!(h["host"], "example.com");
        assert_eq!(h["accept"], "*/*");
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["content-length"], "3");
        assert!(!h.contains_key("x-response") && !h.contains_key("set-cookie"));
        // The kept map, not a new one (a new one for four fields has room
        // for six as well, but the kept one is gone from the thread now).
        assert_eq!(h.capacity(), room);
        assert!(SPARE_HEADERS.with(|s| s.take()).is_none());

        // Too small for the next request: it gets a map of its own, and
        // the kept one stays for later.
        let mut small = HeaderMap::new();
        small.insert("x-small", HeaderValue::from_static("1"));
        let small_room = small.capacity();
        keep_spare_headers(small);
        let many: Vec<(String, &'static str)> = (0..small_room + 2)
            .map(|i| (format!("HTTP_X_{i}"), "v"))
            .collect();
        let mut env = Environ::new();
        for (n, v) in &many {
            env.push(n.clone(), *v);
        }
        let req = build_request(&env, Body::empty()).unwrap();
        assert_eq!(req.headers().len(), small_room + 2);
        let kept = SPARE_HEADERS
            .with(|s| s.take())
            .expect("the small map stays");
        assert!(kept.is_empty());
        assert_eq!(kept.capacity(), small_room);

        // A large map is not kept.
        let mut large = HeaderMap::with_capacity(SPARE_MAX + 1);
        large.insert("x-large", HeaderValue::from_static("1"));
        keep_spare_headers(large);
        assert!(SPARE_HEADERS.with(|s| s.take()).is_none());
    }

    /// The header names of `HTTP_*` variables, made and from the thread's
    /// cache: the same names, whatever came before; a name no header may
    /// have is refused and not kept; the fields a browser sends on every
    /// navigation keep a slot each.
    #[test]
    fn header_names_from_the_cache_are_the_made_ones() {
        let browser: [&[u8]; 7] = [
            b"SEC_FETCH_DEST",
            b"SEC_FETCH_MODE",
            b"SEC_FETCH_SITE",
            b"SEC_FETCH_USER",
            b"UPGRADE_INSECURE_REQUESTS",
            b"PRIORITY",
            b"X_FORWARDED_FOR",
        ];
        let mut cache = NameCache {
            slots: [const { None }; CACHED_NAMES],
        };
        for round in 0..3 {
            for raw in browser {
                let want = String::from_utf8(raw.to_ascii_lowercase())
                    .unwrap()
                    .replace('_', "-");
                assert_eq!(cache.get(raw).map(|n| n.to_string()), Some(want.clone()));
                assert_eq!(
                    header_name(raw).map(|n| n.to_string()),
                    Some(want),
                    "round {round}"
                );
            }
        }
        let kept = cache.slots.iter().flatten().count();
        assert_eq!(
            kept,
            browser.len(),
            "two of the browser's fields share a slot"
        );

        for bad in [&b"X FORWARDED"[..], b"X_F\xc3\xa9", b"A:B", b""] {
            assert!(cache.get(bad).is_none(), "{bad:?}");
            assert!(header_name(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            cache.slots.iter().flatten().count(),
            kept,
            "a refused name was kept"
        );

        // Longer names than the cache keeps are made each time.
        let long = [b'A'; MAX_CACHED_NAME + 1];
        assert_eq!(cache.get(&long).map(|n| n.as_str().len()), Some(long.len()));
        assert_eq!(cache.slots.iter().flatten().count(), kept);
        assert!(header_name(&[b'A'; MAX_NAME + 1]).is_none());

        // A name lowercase or with dashes already comes out the same.
        assert_eq!(
            header_name(b"x-Custom_9").map(|n| n.to_string()).as_deref(),
            Some("x-custom-9")
        );
    }

    #[test]
    fn host_authorities_are_the_parsed_ones_whatever_came_before() {
        let hosts: [&[u8]; 7] = [
            b"example.com",
            b"example.com",
            b"Example.com:8080",
            b"bad host",
            b"example.com",
            b"[::1]:443",
            b"[::1]:443",
        ];
        for host in hosts {
            let fresh = Authority::try_from(host).ok();
            let got = host_authority(host);
            assert_eq!(got, fresh, "{}", String::from_utf8_lossy(host));
            if let Some(a) = got {
                assert_eq!(a.as_str().as_bytes(), host);
            }
        }
    }

    #[test]
    fn a_cached_authority_does_not_hold_the_request_buffer() {
        let (buf, env) = environ(&[("HTTP_HOST", "cache.example"), ("PATH_INFO", "/")]);
        let req = build_request(&env, Body::empty()).unwrap();
        assert_eq!(req.uri().host(), Some("cache.example"));
        drop((req, env));
        // Only this handle is left: the cache kept a copy of its own.
        assert!(buf.is_unique());
    }

    /// An environ whose variables lie in one buffer, as FastCGI's do.
    fn environ(pairs: &[(&str, &str)]) -> (Bytes, Environ) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for (n, v) in pairs {
            let at = buf.len() as u32;
            buf.extend_from_slice(n.as_bytes());
            let value_at = buf.len() as u32;
            buf.extend_from_slice(v.as_bytes());
            spans.push([at, value_at, value_at, buf.len() as u32]);
        }
        let buf = Bytes::from(buf);
        let mut env = Environ::new();
        env.extend_replacing_spans(&buf, spans);
        (buf, env)
    }

    fn target(uri: &str, script: &str, query: &str) -> (String, bool) {
        let (buf, env) = environ(&[
            ("REQUEST_URI", uri),
            ("SCRIPT_NAME", script),
            ("QUERY_STRING", query),
        ]);
        let req = build_request(&env, Body::empty()).unwrap();
        let pq = req.uri().path_and_query().unwrap().as_str();
        let range = buf.as_ptr_range();
        (pq.to_owned(), range.contains(&pq.as_ptr()))
    }

    /// A REQUEST_URI that is the target as built is taken without a copy;
    /// any other is built as before.
    #[test]
    fn target_shares_request_uri_when_it_is_the_same() {
        assert_eq!(target("/a?x=1", "/a", "x=1"), ("/a?x=1".into(), true));
        assert_eq!(target("/a", "/a", ""), ("/a".into(), true));
        assert_eq!(target("/a?", "/a", ""), ("/a".into(), true));
        assert_eq!(target("/a%2Fb?q", "/a/b", "q"), ("/a%2Fb?q".into(), true));
        // The query differs from the rest of REQUEST_URI.
        assert_eq!(target("/a?x=1", "/a", "y=2"), ("/a?y=2".into(), false));
        assert_eq!(target("/a?x=1&", "/a", "x=1"), ("/a?x=1".into(), false));
        // Bytes to encode, in the query or the path.
        assert_eq!(target("/a?x y", "/a", "x y"), ("/a?x%20y".into(), false));
        assert_eq!(target("/a\"?x", "/a\"", "x"), ("/a%22?x".into(), false));
        // REQUEST_URI disagrees with SCRIPT_NAME.
        assert_eq!(target("/b?x", "/a", "x"), ("/a?x".into(), false));
    }
}

//! The connection-level state machine: which requests are active, what the
//! management records ask, and the replies that need no application.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::body::{BeginRequestBody, ProtocolStatus, Role};
use super::encode::{encode_end_request, encode_unknown_type};
use super::error::ProtocolError;
use super::management::{encode_get_values_result, get_values_answer};
use super::params::{ParamsDecoder, decode_pairs};
use super::record::{FCGI_NULL_REQUEST_ID, MAX_CONTENT_LEN, Record, RecordType, decode};
use super::request::{Event, Request};

/// Limits and capabilities of a [`Connection`].
///
/// The first three are what `FCGI_GET_VALUES` reports, so they must match
/// what the server really does. The defaults are libfcgi's answers (one
/// connection, one request, no multiplexing) and caps on request parameters
/// of 1 MiB and 4096 pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub(crate) max_conns: u32,
    pub(crate) max_reqs: u32,
    pub(crate) mpxs_conns: bool,
    pub(crate) max_params_len: usize,
    pub(crate) max_params: usize,
    pub(crate) head_read_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) body_read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) max_requests_per_connection: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_conns: 1,
            max_reqs: 1,
            mpxs_conns: false,
            max_params_len: 1 << 20,
            max_params: 4096,
            head_read_timeout: None,
            idle_timeout: None,
            body_read_timeout: None,
            write_timeout: None,
            max_requests_per_connection: None,
        }
    }
}

impl Config {
    /// The default configuration.
    pub fn new() -> Config {
        Config::default()
    }

    /// `FCGI_MAX_CONNS`: how many connections the server accepts at once.
    /// Reported only; the server enforces it.
    pub fn max_conns(&mut self, n: u32) -> &mut Self {
        self.max_conns = n;
        self
    }

    /// `FCGI_MAX_REQS`: how many requests are served at once. A connection
    /// that multiplexes refuses a request beyond this many active ones on it
    /// with `FCGI_OVERLOADED`.
    pub fn max_reqs(&mut self, n: u32) -> &mut Self {
        self.max_reqs = n;
        self
    }

    /// `FCGI_MPXS_CONNS`: whether a connection may carry several requests at
    /// once. If not, a second `FCGI_BEGIN_REQUEST` while one is active is
    /// refused with `FCGI_CANT_MPX_CONN`.
    pub fn mpxs_conns(&mut self, yes: bool) -> &mut Self {
        self.mpxs_conns = yes;
        self
    }

    /// Most bytes of name-value pairs accepted for one request's
    /// `FCGI_PARAMS` stream; more is a protocol error.
    pub fn max_params_len(&mut self, bytes: usize) -> &mut Self {
        self.max_params_len = bytes;
        self
    }

    /// Most name-value pairs accepted for one request (or one
    /// `FCGI_GET_VALUES` record); more is a protocol error.
    pub fn max_params(&mut self, n: usize) -> &mut Self {
        self.max_params = n;
        self
    }

    /// How long a request head (`FCGI_BEGIN_REQUEST` and its whole
    /// `FCGI_PARAMS` stream) may take from its first byte; on a connection
    /// without requests, from the first byte of the next record (the
    /// opening, for a fresh connection). Past it the connection is closed
    /// ([`Close::Abort`]). Management records do not move it. Default: none.
    pub fn head_read_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.head_read_timeout = Some(timeout);
        self
    }

    /// How long a connection without requests waits for the next one (from
    /// the end of the last); past it the connection is closed
    /// ([`Close::Graceful`]). Default: none.
    pub fn idle_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How long a request whose input (`FCGI_STDIN`, or the Filter role's
    /// `FCGI_DATA`) has not ended may go without input arriving, while the
    /// caller reads (see [`Connection::pause_input`]). Past it the request's
    /// input is given up ([`Connection::next_input_timeout`]), and the
    /// connection, whose web server is in an unknown state, admits no more
    /// requests and closes once the active ones have ended. Default: none.
    pub fn body_read_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.body_read_timeout = Some(timeout);
        self
    }

    /// How long output may wait without the web server taking any of it
    /// (see [`Connection::write_blocked`]); past it the connection is
    /// closed ([`Close::Abort`]). Default: none.
    pub fn write_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Most requests admitted over the life of one connection; later ones
    /// are refused with `FCGI_OVERLOADED` and the connection closes once
    /// idle. Default: no cap.
    pub fn max_requests_per_connection(&mut self, n: Option<u64>) -> &mut Self {
        self.max_requests_per_connection = n;
        self
    }
}

/// How a [`Connection`] wants its transport closed
/// ([`Connection::poll_close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Close {
    /// Write what is queued, then close politely (end the output, let the
    /// web server's last input drain): no request is active and one ended
    /// without `FCGI_KEEP_CONN`, the connection was [stopped](Connection::stop),
    /// its request cap or a stall left it unusable, or it sat idle past
    /// the idle timeout.
    Graceful,
    /// Close at once: a request head did not arrive within the head read
    /// timeout, or the web server took no output within the write timeout.
    Abort,
    /// Write what is queued, then reset the transport: a response failed
    /// after its head ([`Connection::reset_after_input`]), and the request's
    /// input has ended or the wait for it ran out.
    Reset,
}

/// The FastCGI state machine of one transport connection, without I/O.
///
/// Feed it records ([`handle`](Self::handle)) or raw bytes
/// ([`next_event`](Self::next_event)) and it returns [`Event`]s for the
/// application side. Replies that need no application (`FCGI_GET_VALUES_RESULT`,
/// `FCGI_UNKNOWN_TYPE`, `FCGI_END_REQUEST` for a refused request) are queued
/// and handed out by [`take_output`](Self::take_output); the caller writes them
/// to the transport. The application's own output is encoded with a
/// [`ResponseEncoder`](super::ResponseEncoder), and the caller reports the end
/// of each request with [`finish`](Self::finish).
///
/// Any [`ProtocolError`] is fatal: close the connection.
///
/// ```
/// use bytes::BytesMut;
/// use gateway_fastcgi::proto::{self, Config, Connection, Event, Role};
///
/// // What a web server sends: BEGIN_REQUEST, PARAMS, end of PARAMS, end of STDIN.
/// let mut wire = BytesMut::new();
/// proto::encode_begin_request(&mut wire, 1, Role::Responder.into(), 0);
/// proto::encode_params(&mut wire, 1, [("REQUEST_METHOD", "GET")])?;
/// proto::encode_stream_end(&mut wire, proto::RecordType::Stdin, 1);
///
/// let mut conn = Connection::new(&Config::new());
/// let mut events = Vec::new();
/// while let Some(event) = conn.next_event(&mut wire)? {
///     events.push(event);
/// }
/// assert!(matches!(events[0], Event::Begin { id: 1, role: Role::Responder, keep_conn: false }));
/// let Event::Params { params, .. } = &events[1] else { panic!() };
/// assert_eq!(params.get(b"REQUEST_METHOD").map(|v| &v[..]), Some(&b"GET"[..]));
/// assert_eq!(events[2], Event::StdinEnd { id: 1 });
///
/// // The request ends without FCGI_KEEP_CONN: the connection should close.
/// assert!(conn.finish(1, std::time::Instant::now()));
/// # Ok::<(), proto::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    config: Config,
    requests: Requests,
    output: BytesMut,
    close_requested: bool,
    /// Refuse new requests and close once idle.
    stopping: bool,
    /// An input stream stalled: same, the web server's stream being in an
    /// unknown state.
    stalled: bool,
    /// Requests admitted so far.
    admitted: u64,
    /// When input last arrived.
    last_input: Option<Instant>,
    /// While no request is active: when the connection became idle (its
    /// opening, or the end of its last request).
    idle_since: Option<Instant>,
    /// While no request is active: when the first byte of the next request
    /// head arrived (the opening, for a fresh connection).
    head_since: Option<Instant>,
    /// A response failed after its head: reset once this request's input
    /// has ended, or at this time.
    resetting: Option<(u16, Instant)>,
    /// Set by a deadline that passed.
    expired: Option<Close>,
    /// While the caller does not read ([`pause_input`](Self::pause_input)).
    input_paused: bool,
    /// When reading last resumed.
    resumed: Option<Instant>,
    /// Since when output has waited without the transport taking any.
    write_blocked: Option<Instant>,
    /// Requests whose input the body read timeout gave up on, not yet
    /// handed out.
    input_timeouts: Vec<u16>,
}

impl Connection {
    /// A connection with no active request and no clock: its deadlines
    /// start with the first [`received`](Self::received). A transport that
    /// has just opened uses [`opened`](Self::opened).
    pub fn new(config: &Config) -> Connection {
        Connection {
            config: *config,
            requests: Requests::default(),
            output: BytesMut::new(),
            close_requested: false,
            stopping: false,
            stalled: false,
            admitted: 0,
            last_input: None,
            idle_since: None,
            head_since: None,
            resetting: None,
            expired: None,
            input_paused: false,
            resumed: None,
            write_blocked: None,
            input_timeouts: Vec::new(),
        }
    }

    /// A connection whose transport opened at `now`: the first request head
    /// is due within the head read timeout from then.
    pub fn opened(config: &Config, now: Instant) -> Connection {
        Connection::resumed(config, Idle::opened(now))
    }

    /// A connection without requests in the state `idle` kept of it (see
    /// [`idle`](Self::idle)).
    pub(crate) fn resumed(config: &Config, idle: Idle) -> Connection {
        let mut conn = Connection::new(config);
        conn.admitted = idle.admitted;
        conn.idle_since = idle.idle_since;
        conn.head_since = idle.head_since;
        conn
    }

    /// What a connection without requests, nothing to close for and no
    /// output queued needs to go on later ([`resumed`](Self::resumed)), so
    /// that its caller can drop everything else while it waits for input.
    /// `None` while it has requests, replies, a deadline other than the
    /// head read or idle one running, or is to close.
    pub(crate) fn idle(&self) -> Option<Idle> {
        let quiet = self.requests.is_empty()
            && self.output.is_empty()
            && self.expired.is_none()
            && self.resetting.is_none()
            && self.write_blocked.is_none()
            && self.input_timeouts.is_empty()
            && !self.input_paused
            && !self.should_close();
        quiet.then_some(Idle {
            admitted: self.admitted,
            idle_since: self.idle_since,
            head_since: self.head_since,
        })
    }

    /// Input arrived at `now` (call it after each read that got bytes):
    /// on a connection without requests, the first bytes after an idle
    /// spell start the clock of the next request head.
    pub fn received(&mut self, now: Instant) {
        self.last_input = Some(now);
        if self.requests.is_empty() && self.head_since.is_none() {
            self.head_since = Some(now);
        }
    }

    /// The caller stopped reading the transport (an input queue is full):
    /// the body read timeout does not run until
    /// [`resume_input`](Self::resume_input).
    pub fn pause_input(&mut self) {
        self.input_paused = true;
    }

    /// The caller reads the transport again, from `now`: the body read
    /// timeout counts from then at the earliest.
    pub fn resume_input(&mut self, now: Instant) {
        self.input_paused = false;
        self.resumed = Some(now);
    }

    /// A write of queued output would block at `now` (the web server is not
    /// reading): the write timeout runs from then, unless it runs already.
    pub fn write_blocked(&mut self, now: Instant) {
        self.write_blocked.get_or_insert(now);
    }

    /// The transport took output (some or all of it): the write timeout
    /// stops, until the next [`write_blocked`](Self::write_blocked).
    pub fn wrote(&mut self) {
        self.write_blocked = None;
    }

    /// Whether output waits for the web server (the write timeout runs).
    pub fn is_write_blocked(&self) -> bool {
        self.write_blocked.is_some()
    }

    /// A request whose input the body read timeout gave up on (see
    /// [`Config::body_read_timeout`]), once for each: its application's
    /// reads of `FCGI_STDIN` and `FCGI_DATA` should fail as timed out.
    /// Later input for it is ignored.
    pub fn next_input_timeout(&mut self) -> Option<u16> {
        self.input_timeouts.pop()
    }

    /// The earliest time at which [`handle_timeout`](Self::handle_timeout)
    /// has something to do, if any: the head read deadline of a request
    /// whose parameters are incomplete, of the next request on a connection
    /// without requests, the idle deadline, the body read deadline of
    /// requests whose input has not ended, the write deadline of output the
    /// web server does not take, or the end of the wait of
    /// [`reset_after_input`](Self::reset_after_input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.expired.is_some() {
            return None;
        }
        let write = self.write_deadline();
        let rest = match self.resetting {
            Some((_, until)) => Some(until),
            None => min(self.head_or_idle_deadline(), self.body_deadline()),
        };
        min(write, rest)
    }

    fn write_deadline(&self) -> Option<Instant> {
        self.write_blocked
            .zip(self.config.write_timeout)
            .map(|(t, d)| after(t, d))
    }

    fn head_or_idle_deadline(&self) -> Option<Instant> {
        if self.requests.is_empty() {
            return idle_deadline(&self.config, self.head_since, self.idle_since);
        }
        let head = self.config.head_read_timeout?;
        self.requests
            .values()
            .filter_map(Request::head_started)
            .min()
            .map(|t| after(t, head))
    }

    fn body_deadline(&self) -> Option<Instant> {
        let timeout = self.config.body_read_timeout?;
        if self.input_paused || !self.requests.values().any(Request::awaits_input) {
            return None;
        }
        // Input that completed a request's parameters arrived no earlier
        // than the last input.
        let since = self.last_input.max(self.resumed)?;
        Some(after(since, timeout))
    }

    /// Acts on the deadlines that passed by `now`; afterwards
    /// [`poll_close`](Self::poll_close) tells whether the connection is to
    /// close, and [`next_input_timeout`](Self::next_input_timeout) which
    /// requests' input was given up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.expired.is_some() {
            return;
        }
        if self.write_deadline().is_some_and(|t| now >= t) {
            tracing::debug!("FastCGI web server took no output in time");
            self.expired = Some(Close::Abort);
            return;
        }
        if let Some((_, until)) = self.resetting {
            if now >= until {
                self.expired = Some(Close::Reset);
            }
            return;
        }
        if self.body_deadline().is_some_and(|t| now >= t) {
            tracing::debug!("FastCGI request input stalled past the body read timeout");
            for (id, request) in &mut self.requests.0 {
                if request.awaits_input() {
                    request.give_up_input();
                    self.input_timeouts.push(*id);
                }
            }
            self.stalled = true;
        }
        if self.head_or_idle_deadline().is_none_or(|t| now < t) {
            return;
        }
        let waiting_for_head = !self.requests.is_empty() || self.head_since.is_some();
        self.expired = Some(if waiting_for_head {
            tracing::debug!("FastCGI request head not received in time");
            Close::Abort
        } else {
            tracing::debug!("FastCGI connection idle past its timeout");
            Close::Graceful
        });
    }

    /// Whether and how the transport is to be closed now; see [`Close`].
    pub fn poll_close(&self) -> Option<Close> {
        if let Some(close) = self.expired {
            return Some(close);
        }
        if let Some((id, _)) = self.resetting {
            let input_ended = self.requests.get(&id).is_none_or(Request::input_ended);
            return input_ended.then_some(Close::Reset);
        }
        self.should_close().then_some(Close::Graceful)
    }

    /// Stops admitting requests (each new one is refused with
    /// `FCGI_OVERLOADED`); the connection closes once the active ones
    /// have ended. For a server shutting down.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// An input stream of a request stalled (its reader gave up waiting):
    /// what the web server sends next cannot be trusted, so the connection
    /// admits no more requests and closes once the active ones have ended.
    pub fn stall(&mut self) {
        self.stalled = true;
    }

    /// Request `id`'s response failed after its head and is to be cut off
    /// by resetting the connection: [`poll_close`](Self::poll_close) says
    /// [`Close::Reset`] once the request's input has ended (a reset while
    /// the web server is still sending fails its send, and some answer the
    /// client with an error page instead of the partial response), or at
    /// `until` at the latest. No new request is admitted meanwhile.
    pub fn reset_after_input(&mut self, id: u16, until: Instant) {
        if self.resetting.is_none() {
            self.resetting = Some((id, until));
        }
    }

    /// Whether new requests are refused: the connection was stopped, has
    /// stalled, is to be reset, or has admitted its cap of requests.
    pub fn is_refusing(&self) -> bool {
        self.stopping
            || self.stalled
            || self.resetting.is_some()
            || self
                .config
                .max_requests_per_connection
                .is_some_and(|m| self.admitted >= m)
    }

    /// Decodes records off the front of `buf` and handles them until one
    /// produces an event, or `buf` holds no complete record (`Ok(None)`; at
    /// most [`MAX_RECORD_LEN`](super::MAX_RECORD_LEN) bytes are left then).
    ///
    /// # Errors
    ///
    /// As for [`decode`](super::decode) and [`handle`](Self::handle).
    pub fn next_event(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        while let Some(record) = decode(buf)? {
            if let Some(event) = self.handle(record)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// Handles one record from the web server.
    ///
    /// Returns `Ok(None)` for records that only add to state (part of a
    /// `FCGI_PARAMS` stream) or are ignored (records for an inactive request
    /// id; input for an aborted request).
    ///
    /// # Errors
    ///
    /// The record breaks the protocol: an application record type on request
    /// id 0; a record type a web server never sends; an `FCGI_BEGIN_REQUEST`
    /// body not 8 bytes long or for an active id; a stream record
    /// out of order or after its end marker; parameters over the
    /// caps or malformed.
    pub fn handle(&mut self, record: Record) -> Result<Option<Event>, ProtocolError> {
        let Record {
            record_type,
            request_id: id,
            content,
        } = record;
        if id == FCGI_NULL_REQUEST_ID {
            return self.management(record_type, content);
        }
        match record_type {
            RecordType::BeginRequest => self.begin(id, &content),
            RecordType::AbortRequest
            | RecordType::Params
            | RecordType::Stdin
            | RecordType::Data => match self.requests.get_mut(&id) {
                Some(request) => request.input(id, record_type, content),
                None => {
                    tracing::debug!(id, %record_type, "FastCGI record for an inactive request ignored");
                    Ok(None)
                }
            },
            other => Err(ProtocolError::unexpected_type(id, other)),
        }
    }

    fn management(
        &mut self,
        record_type: RecordType,
        content: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        match record_type {
            RecordType::GetValues => {
                let names: Vec<Bytes> =
                    decode_pairs(content, MAX_CONTENT_LEN, self.config.max_params)?
                        .into_iter()
                        .map(|(name, _)| name)
                        .collect();
                let answer = get_values_answer(&self.config, &names);
                encode_get_values_result(&mut self.output, answer)?;
                Ok(Some(Event::GetValues { names }))
            }
            t if t.is_application() => Err(ProtocolError::null_request_id(t)),
            t => {
                let record_type = u8::from(t);
                encode_unknown_type(&mut self.output, record_type);
                Ok(Some(Event::UnknownManagement { record_type }))
            }
        }
    }

    fn begin(&mut self, id: u16, content: &[u8]) -> Result<Option<Event>, ProtocolError> {
        let body = BeginRequestBody::parse(content)
            .ok_or_else(|| ProtocolError::begin_body_length(id, content.len()))?;
        if self.requests.contains_key(&id) {
            return Err(ProtocolError::duplicate_begin(id));
        }
        let keep_conn = body.keep_conn();
        let refusal = if !self.config.mpxs_conns && !self.requests.is_empty() {
            Some(ProtocolStatus::CantMpxConn)
        } else if self.is_refusing()
            || self.requests.len() >= usize::try_from(self.config.max_reqs).unwrap_or(usize::MAX)
        {
            Some(ProtocolStatus::Overloaded)
        } else {
            None
        };
        let role = match (refusal, Role::from_u16(body.role)) {
            (None, Some(role)) => role,
            (refusal, _) => {
                let status = refusal.unwrap_or(ProtocolStatus::UnknownRole);
                tracing::debug!(id, role = body.role, ?status, "FastCGI request refused");
                encode_end_request(&mut self.output, id, 0, status);
                if !keep_conn && self.requests.is_empty() {
                    self.close_requested = true;
                }
                if self.requests.is_empty() {
                    // The refused request's head is over.
                    self.head_since = None;
                    self.idle_since = self.last_input.or(self.idle_since);
                }
                return Ok(Some(Event::Rejected { id, status }));
            }
        };
        let params = ParamsDecoder::new(self.config.max_params_len, self.config.max_params);
        let head_started = self.head_since.take().or(self.last_input);
        self.admitted += 1;
        self.requests
            .insert(id, Request::new(role, keep_conn, params, head_started));
        Ok(Some(Event::Begin {
            id,
            role,
            keep_conn,
        }))
    }

    /// Takes the queued replies (possibly none), to be written to the
    /// transport in order, before anything the application writes later.
    pub fn take_output(&mut self) -> BytesMut {
        self.output.split()
    }

    /// Whether replies are queued.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Marks request `id` as ended at `now`, freeing the id for reuse, and
    /// returns [`should_close`](Self::should_close). With no request left,
    /// the connection is idle from `now` on.
    ///
    /// Call it no later than handing the request's `FCGI_END_REQUEST` to the
    /// transport: the web server may reuse the id as soon as it reads that
    /// record. Later input for the id is ignored. Unknown ids are
    /// ignored.
    pub fn finish(&mut self, id: u16, now: Instant) -> bool {
        if let Some(keep_conn) = self.requests.drop_request(id) {
            if !keep_conn {
                self.close_requested = true;
            }
            if self.requests.is_empty() {
                self.idle_since = Some(now);
                self.head_since = None;
            }
        }
        if self.resetting.is_some_and(|(r, _)| r == id) {
            self.expired.get_or_insert(Close::Reset);
        }
        self.should_close()
    }

    /// Refuses active request `id` (for example with
    /// [`Overloaded`](ProtocolStatus::Overloaded) when a limit across
    /// connections is reached): queues its `FCGI_END_REQUEST` with this status
    /// and application status 0, then [`finish`](Self::finish)es it.
    pub fn reject(&mut self, id: u16, status: ProtocolStatus, now: Instant) -> bool {
        if self.requests.contains_key(&id) {
            encode_end_request(&mut self.output, id, 0, status);
        }
        self.finish(id, now)
    }

    /// Whether the application should close the connection now: no request
    /// is active, and one without `FCGI_KEEP_CONN` has ended (or was
    /// refused), or the connection refuses new requests (see
    /// [`is_refusing`](Self::is_refusing)). The queued output should be
    /// written first.
    pub fn should_close(&self) -> bool {
        self.requests.is_empty() && (self.close_requested || self.is_refusing())
    }

    /// Whether request `id` is active (begun and not finished).
    pub fn is_active(&self, id: u16) -> bool {
        self.requests.contains_key(&id)
    }

    /// Number of active requests.
    pub fn active_requests(&self) -> usize {
        self.requests.len()
    }

    /// The role of active request `id`.
    pub fn role(&self, id: u16) -> Option<Role> {
        self.requests.get(&id).map(Request::role)
    }

    /// Whether active request `id` had `FCGI_KEEP_CONN` set.
    pub fn keep_conn(&self, id: u16) -> Option<bool> {
        self.requests.get(&id).map(Request::keep_conn)
    }

    /// Whether active request `id` was aborted by the web server.
    pub fn is_aborted(&self, id: u16) -> bool {
        self.requests.get(&id).is_some_and(Request::is_aborted)
    }
}

/// The head read deadline of a connection without requests that has
/// received the first byte of the next request head at `head_since`, or
/// else its idle deadline, idle since `idle_since`.
fn idle_deadline(
    config: &Config,
    head_since: Option<Instant>,
    idle_since: Option<Instant>,
) -> Option<Instant> {
    match (head_since, config.head_read_timeout) {
        (Some(t), Some(d)) => Some(after(t, d)),
        (Some(_), None) => None,
        (None, _) => idle_since
            .zip(config.idle_timeout)
            .map(|(t, d)| after(t, d)),
    }
}

/// What a [`Connection`] without requests keeps of its state while it waits
/// for input: the requests admitted so far (for the cap per connection) and
/// the clocks of its head read and idle deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Idle {
    admitted: u64,
    idle_since: Option<Instant>,
    head_since: Option<Instant>,
}

impl Idle {
    /// A transport opened at `now`: its first request head is due within
    /// the head read timeout from then.
    pub(crate) fn opened(now: Instant) -> Idle {
        Idle {
            admitted: 0,
            idle_since: Some(now),
            head_since: Some(now),
        }
    }

    /// Since when the connection has had no request (its opening, or the
    /// end of its last request).
    pub(crate) fn since(&self) -> Option<Instant> {
        self.idle_since
    }

    /// When a connection in this state is due to act without input: its
    /// head read deadline (a fresh connection) or its idle deadline.
    pub(crate) fn deadline(&self, config: &Config) -> Option<Instant> {
        idle_deadline(config, self.head_since, self.idle_since)
    }
}

/// The earlier of two optional times.
fn min(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `t + d`, or a year after `t` when that is not representable (a limit of
/// `Duration::MAX` for "none").
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(t)
}

/// The active requests by id: a short list (one entry on a connection that
/// carries one request at a time, a few on a multiplexed one), searched
/// from the front, which costs less than hashing for so few.
#[derive(Debug, Default)]
struct Requests(Vec<(u16, Request)>);

impl Requests {
    fn get(&self, id: &u16) -> Option<&Request> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, r)| r)
    }

    fn get_mut(&mut self, id: &u16) -> Option<&mut Request> {
        self.0.iter_mut().find(|(i, _)| i == id).map(|(_, r)| r)
    }

    fn contains_key(&self, id: &u16) -> bool {
        self.0.iter().any(|(i, _)| i == id)
    }

    /// Adds request `id` (not active: the caller checked).
    fn insert(&mut self, id: u16, request: Request) {
        self.0.push((id, request));
    }

    /// Drops request `id` where it lies (not moved out, as `remove`
    /// would); whether it kept the connection, if it was active.
    fn drop_request(&mut self, id: u16) -> Option<bool> {
        let at = self.0.iter().position(|(i, _)| *i == id)?;
        let keep_conn = self.0.get(at)?.1.keep_conn();
        let last = self.0.len() - 1;
        if at != last {
            self.0.swap(at, last);
        }
        self.0.truncate(last);
        Some(keep_conn)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn values(&self) -> impl Iterator<Item = &Request> {
        self.0.iter().map(|(_, r)| r)
    }
}

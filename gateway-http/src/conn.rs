//! One connection: hyper drives HTTP/1.1 or HTTP/2; every request runs the
//! core handler inside the futures hyper polls for it.
//!
//! An HTTP/1 connection that has been quiet for a moment between requests
//! is parked: hyper's connection (its read and write buffers, its state) is
//! taken apart without closing the socket, and the connection waits as the
//! small future a new connection waits as, until its next bytes come (then
//! a new hyper connection takes over, the bytes hyper had read replayed in
//! front), its idle timeout passes or the server stops.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::server::{Connection, Gated, Shutdown, Stream, Watch};
use gateway_core::{AppBody, Application, Body, BoxError, ErrorStream, Failure, Handler};
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::gateway::{Addrs, Captured, HttpGateway, SharedExchange};
use crate::h2streams::PREFACE;
use crate::stream::{SendClock, StreamExecutor, current_clock};
use crate::upgrade::{CutOnDrop, Tether, Tethered};

/// How long a connection that is closing, with no request in flight, may
/// take to finish the close (between one and two of these).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often an HTTP/1 connection is looked at to tell whether it can be
/// parked: it is, once it has been quiet (no request started or in flight,
/// no byte read, nothing left to write) from one look to the next, so
/// between one and two of these after its last activity (a connection that
/// was busy for a while is looked at less often, see `MAX_LOOK_GAP`). A
/// client that sends its next request at once never meets a parked
/// connection; one that pauses longer pays for a new hyper connection.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(25);

/// The longest gap between two looks at a busy HTTP/1 connection (see
/// `PARK_AFTER`).
const MAX_LOOK_GAP: Duration = Duration::from_millis(400);

/// Why a connection closes when the server stops.
const STOPPING: &str = "the server is stopping";

/// What every connection of a server shares.
pub(crate) struct Shared<S> {
    pub(crate) app: S,
    pub(crate) handler: Handler,
    pub(crate) http1: http1::Builder,
    /// `None` when HTTP/2 is off.
    pub(crate) http2: Option<http2::Builder<StreamExecutor>>,
    pub(crate) server_software: Option<Bytes>,
    pub(crate) errors: ErrorStream,
    /// The server's shutdown, watched besides the connection's own.
    pub(crate) shutdown: Shutdown,
    /// Connections parked so far (they went back to waiting for input).
    pub(crate) parked: AtomicU64,
    /// The most bytes of a response body handed to hyper at once (see
    /// `FLAT_MAX_FRAME`).
    pub(crate) max_frame: usize,
}

/// What a connection keeps from one hyper connection to the next, besides
/// its `Connection`.
struct Carry {
    /// The server's shutdown (see `Shutdown::connection_watch`).
    server_stopping: Watch,
    /// HTTP/1.x: requests the connection may still carry.
    budget: Option<Arc<AtomicU64>>,
    /// Parked: bytes hyper had read and not used (the start of the next
    /// request), to be replayed to the next hyper connection.
    leftover: Bytes,
    /// With `leftover`: when the request head they start is due.
    head_due: Option<Instant>,
    /// Parked: when the connection has been idle for the idle timeout.
    idle_until: Instant,
}

/// How a hyper connection starts.
enum Start {
    /// A connection just accepted, its first bytes due within this.
    Accepted(Duration),
    /// A parked HTTP/1 connection that has bytes again.
    Resumed,
}

/// Serves one accepted connection until it closes, or gracefully closes it
/// once the shutdown it came with, or the server's own, starts. An HTTP/1
/// connection quiet between requests is parked in between (see the module
/// documentation); it is still the same connection, counted once in the
/// metrics (`open` is its count of open connections).
///
/// The waits (for the first bytes, and while parked) are this future's own,
/// in the connection's task, on the `Connection` it was given; hyper's
/// connection and the handler's state live in a box made once there is
/// something to read, and freed when the connection is parked.
pub(crate) async fn serve_connection<S, B, G>(
    mut conn: Connection,
    shared: Arc<Shared<S>>,
    open: Option<G>,
) where
    S: Application<B>,
    B: AppBody,
{
    let _open = open;
    let limits = shared.handler.limits();
    conn.wait_for_input(limits.get_head_read_timeout()).await;
    // The first byte is due within the head read timeout of the accept.
    let mut start = Start::Accepted(conn.first_bytes_left(limits.get_head_read_timeout()));
    let mut carry = Carry {
        // A connection just accepted gets its first request served even if
        // the server started stopping meanwhile.
        server_stopping: shared.shutdown.connection_watch(),
        // HTTP/1.x: the response to the last request a connection may
        // carry says `Connection: close`, and hyper closes after it.
        budget: limits
            .get_max_requests_per_connection()
            .map(|n| Arc::new(AtomicU64::new(n))),
        leftover: Bytes::new(),
        head_due: None,
        idle_until: conn.accepted,
    };
    loop {
        let stream = conn.stream;
        let served = session(
            stream,
            start,
            (conn.peer_addr, conn.local_addr),
            &mut conn.shutdown,
            &mut carry,
            &shared,
        );
        let Some(stream) = Box::pin(served).await else {
            return;
        };
        conn.stream = stream;
        if !wait_parked(&mut conn, &mut carry, &shared).await {
            return;
        }
        // The bytes hyper had read are read again first (see `session`).
        start = Start::Resumed;
    }
}

/// Waits until a parked connection has bytes again (`true`: to be served
/// by a new hyper connection), or its idle timeout has passed, the request
/// head it started is overdue, or the server stops (`false`: the
/// connection is to be closed).
async fn wait_parked<S>(conn: &mut Connection, carry: &mut Carry, shared: &Shared<S>) -> bool {
    let partial = !carry.leftover.is_empty();
    let deadline = match carry.head_due {
        Some(due) if partial => due,
        _ => carry.idle_until,
    };
    let expired = || {
        if partial {
            // As the head read timeout of a running connection would have.
            tracing::debug!(
                "a request head was not received in time; closing the parked connection"
            );
            if let Some(m) = shared.handler.metrics() {
                m.failure(Failure::Timeout);
            }
        } else {
            tracing::debug!("closing the idle parked connection");
        }
        false
    };
    let stopping = || {
        tracing::debug!(why = STOPPING, "closing the parked connection");
        false
    };
    let (stream, shutdown, server_stopping) =
        (&conn.stream, &mut conn.shutdown, &mut carry.server_stopping);
    if shutdown.same_shutdown(server_stopping) {
        // The usual case (the server's own accept loop): one watch is
        // enough, and the wait is no larger than a new connection's.
        tokio::select! {
            biased;
            // Bytes, the end of the input or an error: hyper reads them.
            _ = stream.readable() => true,
            () = shutdown.stopping() => stopping(),
            () = tokio::time::sleep_until(deadline) => expired(),
        }
    } else {
        Box::pin(async {
            tokio::select! {
                biased;
                _ = stream.readable() => true,
                () = shutdown.stopping() => stopping(),
                () = server_stopping.stopping() => stopping(),
                () = tokio::time::sleep_until(deadline) => expired(),
            }
        })
        .await
    }
}

/// Reads a new connection's first bytes until they tell HTTP/2 with prior
/// knowledge (the whole preface) from HTTP/1 (anything else, or the end of
/// the input): the first byte within `first_byte`, the rest within
/// `head`. Returns whether it is HTTP/2, and the bytes read.
async fn read_version(
    stream: &mut Stream,
    first_byte: Duration,
    head: Duration,
) -> std::io::Result<(bool, Bytes)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    let mut due = Instant::now() + first_byte;
    loop {
        let read = tokio::time::timeout_at(due, stream.read(&mut buf[filled..])).await;
        let Ok(read) = read else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no request from the peer in time",
            ));
        };
        let n = read?;
        if filled == 0 && n > 0 {
            // The first byte came: the rest of the preface is due within
            // the head read timeout.
            due = Instant::now() + head;
        }
        filled += n;
        let seen = buf.get(..filled).unwrap_or_default();
        if n == 0 || seen != PREFACE.get(..filled).unwrap_or_default() {
            return Ok((false, Bytes::copy_from_slice(seen)));
        }
        if filled == PREFACE.len() {
            return Ok((true, Bytes::copy_from_slice(seen)));
        }
    }
}

/// Whether a connection on `stream` can be parked: its readiness can be
/// watched without reading (a socket, not an in-memory pipe).
fn watchable(stream: &Stream) -> bool {
    match stream {
        Stream::Tcp(_) | Stream::Unix(_) => true,
        Stream::Replay(r) => watchable(r.stream()),
        _ => false,
    }
}

/// hyper's connection: HTTP/1 (with upgrades) or HTTP/2.
enum Hyper<H1, H2> {
    H1(H1),
    H2(Pin<Box<H2>>),
}

impl<H1, H2> Future for Hyper<H1, H2>
where
    H1: Future<Output = hyper::Result<()>> + Unpin,
    H2: Future<Output = hyper::Result<()>>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        match self.get_mut() {
            Hyper::H1(c) => Pin::new(c).poll(cx),
            Hyper::H2(c) => c.as_mut().poll(cx),
        }
    }
}

/// Why a connection's control watch woke it.
enum Why {
    /// Close gracefully (the server stopping, the connection idle).
    Close(&'static str),
    /// HTTP/1: quiet; the instant it had been quiet since and the last
    /// time a request was seen running (or the start).
    Park(Instant, Instant),
    /// HTTP/1: the next request head is overdue (see `Activity::watch_h1`),
    /// or one begun before the connection was parked is.
    HeadOverdue,
}

/// Serves a connection with one hyper connection: until it closes (`None`),
/// or until it is parked (HTTP/1 only): then the stream comes back, and
/// `carry` says what hyper had read and when the connection went idle.
async fn session<S, B>(
    mut stream: Stream,
    start: Start,
    (peer_addr, local_addr): (Option<SocketAddr>, Option<SocketAddr>),
    shutdown: &mut Watch,
    carry: &mut Carry,
    shared: &Arc<Shared<S>>,
) -> Option<Stream>
where
    S: Application<B>,
    B: AppBody,
{
    let limits = shared.handler.limits();
    let server_stopping = &mut carry.server_stopping;
    let budget = carry.budget.clone();
    let started_at = Instant::now();
    // A new connection: HTTP/2 with prior knowledge, or HTTP/1. The wait
    // for the first byte is bounded here (or by the transport, below); the
    // rest of an HTTP/1 head by the connection's watch.
    let (h2, first_byte, head_due, replay) = match start {
        Start::Accepted(first_byte) if shared.http2.is_some() => {
            match read_version(&mut stream, first_byte, limits.get_head_read_timeout()).await {
                Ok((h2, seen)) => (h2, None, None, seen),
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended with an error");
                    count_error(shared.handler.metrics(), &e);
                    return None;
                }
            }
        }
        Start::Accepted(first_byte) => (false, Some(first_byte), None, Bytes::new()),
        // A head begun before the park keeps its deadline; the bytes hyper
        // had read are read again first.
        Start::Resumed => (
            false,
            None,
            carry.head_due.take(),
            std::mem::take(&mut carry.leftover),
        ),
    };
    let parkable = !h2 && watchable(&stream);
    let svc_shared = shared.clone();
    let addrs = Arc::new(Addrs::new(
        peer_addr,
        local_addr,
        shared.server_software.as_ref(),
        &shared.errors,
    ));
    let activity = Arc::new(Activity::default());
    let svc_activity = activity.clone();
    // The stream outlives hyper's connection when the application takes it
    // over (a WebSocket): see `upgrade`.
    // A client that takes nothing written to it for write_timeout is gone.
    let (stream, tether) = Tethered::new(stream, replay, limits.get_write_timeout(), first_byte);
    let _cut = CutOnDrop(tether.clone());
    let svc_tether = tether.clone();
    let svc_budget = budget.clone();
    let spare_exchange = Cell::new(None);
    let spare_handler = Cell::new(None);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let last = svc_budget.as_ref().is_some_and(|b| {
            let left = b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
            left.unwrap_or(0) <= 1
        });
        if req.version() < http::Version::HTTP_2
            && req
                .extensions()
                .get::<hyper::upgrade::OnUpgrade>()
                .is_some()
        {
            svc_tether.arm();
        }
        if req.version() == http::Version::HTTP_2 && req.method() == http::Method::CONNECT {
            // An HTTP/2 CONNECT (extended, as a WebSocket over HTTP/2 is,
            // or not): hyper hands the stream to the application when the
            // answer is 2xx, and it may outlive the request.
            svc_tether.tunnel();
        }
        let in_flight = InFlight::start(&svc_activity);
        let exchange = SharedExchange::reuse(&spare_exchange);
        let shared = svc_shared.clone();
        respond(
            req,
            &svc_shared,
            addrs.clone(),
            (last, in_flight, exchange),
            &spare_handler,
            move |gw| drive(shared, gw),
        )
    });
    let io = TokioIo::new(stream);
    let idle = limits.get_idle_timeout();
    let head_timeout = limits.get_head_read_timeout();
    // For the close, which may outlast the watches above: a stream handed
    // to the application keeps a closing connection open until it ends,
    // or until the grace period once the server stops.
    let (mut late_stop, mut late_server_stop) = (shutdown.clone(), shared.shutdown.watch());
    let grace = shared.shutdown.get_deadline();
    let mut c = match &shared.http2 {
        Some(h2b) if h2 => Hyper::H2(Box::pin(h2b.serve_connection(io, svc))),
        _ => Hyper::H1(shared.http1.serve_connection(io, svc).with_upgrades()),
    };
    let mut parked_at = None;
    let mut stopping = false;
    let result = {
        // The server stopping, the connection idle or quiet: polled only
        // when one of them woke the task, not on every wake-up hyper's I/O
        // causes.
        let control = Gated::new(async {
            tokio::select! {
                _ = shutdown.stopping() => Why::Close(STOPPING),
                _ = server_stopping.stopping() => Why::Close(STOPPING),
                () = activity.idle(idle, &tether) => Why::Close("the connection is idle"),
                why = activity.watch_h1(PARK_AFTER, &tether, started_at, head_timeout, parkable), if !h2 => why,
                () = activity.head_overdue(head_due), if head_due.is_some() => Why::HeadOverdue,
            }
        });
        tokio::pin!(control);
        tokio::select! {
            biased;
            r = &mut c => r,
            why = control.as_mut() => {
                let why = match why {
                    Why::Park(since, busy) => {
                        // hyper closes an idle HTTP/1 connection at once
                        // when asked to, without a byte more: the shutdown
                        // of the stream is skipped, and what hyper had
                        // read and not used comes back with the stream.
                        tether.parking(true);
                        if let Hyper::H1(h1) = &mut c {
                            Pin::new(h1).graceful_shutdown();
                        }
                        match poll_fn(|cx| Poll::Ready(Pin::new(&mut c).poll(cx))).await {
                            Poll::Ready(r) => {
                                parked_at = Some((since, busy));
                                Some(r)
                            }
                            // A request came after all: it is answered
                            // with `Connection: close`, and the connection
                            // closes after it.
                            Poll::Pending => {
                                tether.parking(false);
                                None
                            }
                        }
                    }
                    Why::HeadOverdue => {
                        tracing::debug!("a request head was not received in time; closing the connection");
                        if let Some(m) = shared.handler.metrics() {
                            m.failure(Failure::Timeout);
                        }
                        Some(Ok(()))
                    }
                    Why::Close(why) => {
                        tracing::debug!(why, "closing the connection");
                        stopping = why == STOPPING;
                        match &mut c {
                            Hyper::H1(h1) => Pin::new(h1).graceful_shutdown(),
                            Hyper::H2(h2) => h2.as_mut().graceful_shutdown(),
                        }
                        None
                    }
                };
                match why {
                    Some(r) => r,
                    None => {
                        // Finish the requests in flight, then close
                        // (HTTP/2: GOAWAY, a PING, and a last GOAWAY once
                        // the client acknowledged it). Requests in flight
                        // are bounded by their own timeouts and the
                        // shutdown's deadline; once none is left, the close
                        // itself gets CLOSE_GRACE, so a client that never
                        // acknowledges cannot hold the connection (and its
                        // slot) open.
                        tokio::select! {
                            biased;
                            r = &mut c => r,
                            () = activity.idle(CLOSE_GRACE, &tether) => {
                                tracing::debug!("the client did not finish the close in time; dropping the connection");
                                Ok(())
                            }
                            () = async {
                                if !stopping {
                                    tokio::select! {
                                        _ = late_stop.stopping() => {}
                                        _ = late_server_stop.stopping() => {}
                                    }
                                }
                                tokio::time::sleep(grace).await;
                            } => {
                                tracing::debug!("the grace period is over; dropping the connection");
                                Ok(())
                            }
                        }
                    }
                }
            }
        }
    };
    // hyper's connection is dropped here (and the stream, unless it was
    // upgraded or the connection is parked).
    let parts = match (parked_at, &result, c) {
        (Some(at), Ok(()), Hyper::H1(h1)) => h1.into_parts().map(|p| (at, p)),
        _ => None,
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, "connection ended with an error");
        count_error(shared.handler.metrics(), e);
    }
    if let Some(((since, busy), parts)) = parts {
        if tether.write_blocked() {
            // Never so: a quiet connection has nothing left to write.
            tracing::debug!("bytes left unwritten when parking; closing the connection");
            return None;
        }
        let stream = parts.io.into_inner().into_stream();
        // A copy: hyper's read buffer is a whole 8 KiB allocation.
        let leftover = if parts.read_buf.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&parts.read_buf)
        };
        // The start of a request head: it is due within the head read
        // timeout of when the connection started waiting for it (a head
        // begun before an earlier park keeps its deadline).
        let head_due = match head_due {
            _ if leftover.is_empty() => None,
            Some(due) if activity.started.load(Ordering::Relaxed) == 0 => Some(due),
            _ => Some(busy + limits.get_head_read_timeout()),
        };
        shared.parked.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(leftover = leftover.len(), "parking the connection");
        carry.leftover = leftover;
        carry.head_due = head_due;
        carry.idle_until = since + idle;
        return Some(stream);
    }
    if !tether.released() {
        // Upgraded: the application holds the stream. The connection keeps
        // its slot until the application drops it; once the server stops,
        // the application gets the grace period, then the socket is shut
        // down.
        tracing::debug!("the connection switched protocols; the application holds it");
        tokio::select! {
            () = tether.wait_released() => {}
            () = async {
                tokio::select! {
                    _ = shutdown.stopping() => {}
                    _ = server_stopping.stopping() => {}
                }
                tokio::time::sleep(grace).await;
            } => {
                tracing::debug!("the grace period is over; closing the upgraded connection");
                tether.cut();
            }
        }
    }
    None
}

/// What a connection's idle watch looks at: requests started, and requests
/// whose response is not over yet.
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    in_flight: AtomicU64,
}

impl Activity {
    /// Completes once a whole `period` passed with no request in flight and
    /// none started: the connection has been idle for between one and two
    /// periods. The head read timeout already closes an idle HTTP/1
    /// connection (see `watch_h1`); this closes idle HTTP/2 ones (GOAWAY), which hyper keeps
    /// open for ever, and bounds a close the client does not finish. A
    /// stream handed to the application (an HTTP/2 extended CONNECT) that
    /// may still be open counts as a request in flight.
    async fn idle(&self, period: Duration, tether: &Tether) {
        let mut seen = self.started.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(period).await;
            let now = self.started.load(Ordering::Relaxed);
            if now == seen && self.in_flight.load(Ordering::Relaxed) == 0 && !tether.tunnel_open() {
                return;
            }
            seen = now;
        }
    }
}

impl Activity {
    /// HTTP/1: the connection's watch, looked at every `period` or further
    /// apart (up to `MAX_LOOK_GAP`) while it stays busy, so a connection
    /// serving request after request is rarely woken for it.
    ///
    /// - `Why::Park` once a `parkable` connection has served a request and
    ///   been quiet from one look to the next: no request in flight or
    ///   started, no byte read, the last write not waiting. It carries when
    ///   the quiet began at the latest (the look before), and the last look
    ///   that saw a request running (or `start`, the hyper connection's
    ///   start): a request head begun since started after it.
    /// - `Why::HeadOverdue` once no request has run for the head read
    ///   timeout (`head_timeout`), from the hyper connection's start or
    ///   from the first look that found the last request over: the next
    ///   head is overdue, whether bytes of it came or not. hyper's own
    ///   header timer is not used: it costs a clock read, a timer and a
    ///   read more for every request. The deadline is kept to within one
    ///   look (never early).
    async fn watch_h1(
        &self,
        period: Duration,
        tether: &Tether,
        start: Instant,
        head_timeout: Duration,
        parkable: bool,
    ) -> Why {
        let mut busy = start;
        let (mut started, mut reads) = (0, 0);
        let mut quiet_since = None;
        // Since when no request has run: the wait for the next head.
        let mut waiting_since = Some(start);
        let mut gap = period;
        loop {
            tokio::time::sleep(gap).await;
            let now = Instant::now();
            let (s, r) = (self.started.load(Ordering::Relaxed), tether.reads());
            let idle = self.in_flight.load(Ordering::Relaxed) == 0;
            let ran = !idle || s != started;
            if ran {
                busy = now;
            }
            let write_blocked = tether.write_blocked();
            if ran || write_blocked {
                // A write that waits is bounded by the write timeout.
                waiting_since = None;
            } else {
                let since = *waiting_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= head_timeout {
                    return Why::HeadOverdue;
                }
            }
            // hyper lets go of a connection without a byte more only once
            // it has served a request on it and waits for the next: before
            // that, it may hold the start of a head, and asked to close it
            // would answer that request with `Connection: close`.
            let quiet = idle && s > 0 && !write_blocked;
            let same = (s, r) == (started, reads);
            if let Some(since) = quiet_since
                && quiet
                && same
                && parkable
            {
                return Why::Park(since, busy);
            }
            gap = if quiet && parkable {
                period
            } else {
                (gap * 2).min(MAX_LOOK_GAP)
            };
            quiet_since = quiet.then_some(now);
            (started, reads) = (s, r);
        }
    }

    /// Completes at `due` if no request has started by then (a resumed
    /// connection whose request head, begun before it was parked, is
    /// overdue); never otherwise.
    async fn head_overdue(&self, due: Option<Instant>) {
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
            if self.started.load(Ordering::Relaxed) == 0 {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// One request counted in flight until its response is over (dropped).
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.started.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The hyper service: runs the handler until it hands over the head, then
/// answers with the head and a body that runs the rest of the handler.
///
/// HTTP/1.x: the handler is polled once at once, when hyper hands over the
/// request, so an application that answers without waiting has dropped the
/// request before hyper next reads the connection, and hyper's read buffer,
/// which the request's header values share, is reused rather than
/// reallocated. hyper polls the returned future right after, which polls
/// the handler again with the task's waker when it is not done.
#[inline(always)]
fn respond<S, F, M>(
    req: Request<Incoming>,
    shared: &Shared<S>,
    addrs: Arc<Addrs>,
    (last, in_flight, exchange): (bool, InFlight, SharedExchange),
    spare: &Cell<Option<Pin<Box<Slot<F>>>>>,
    handler: M,
) -> impl Future<Output = Result<Response<ResponseBody>, BoxError>> + Send + 'static + use<S, F, M>
where
    F: Future<Output = Option<Arc<Captured>>> + Send + 'static,
    M: FnOnce(HttpGateway) -> F,
{
    let (parts, incoming) = req.into_parts();
    let version = parts.version;
    let close = last && parts.version < http::Version::HTTP_2;
    let limits = shared.handler.limits();
    let body = if incoming.is_end_stream() {
        // No body (a GET): nothing to time or limit.
        Body::empty()
    } else {
        Body::new(RequestBody::new(
            incoming,
            limits.get_body_read_timeout(),
            limits.get_max_body_len(),
        ))
    };
    let upgradable = parts.version == http::Version::HTTP_11;
    let length_by_body =
        parts.method != http::Method::HEAD && parts.method != http::Method::CONNECT;
    // The handler runs inside this future until the head is out, then inside
    // the response body, which hyper polls: no task per request, and a
    // client that goes away drops (cancels) the application with the body.
    // Its allocation (the handler's future is large) is the connection's
    // spare one when there is one, with the copy of the head the last
    // request left.
    let mut slot = spare.take().unwrap_or_else(|| {
        Box::pin(Slot {
            handler: None,
            captured: None,
        })
    });
    let gw = HttpGateway {
        upgradable,
        length_by_body,
        parts: Some(parts),
        body: Some(body),
        addrs,
        exchange: exchange.clone(),
        head_sent: false,
        close,
        host: None,
        seen: None,
        captured: slot.as_mut().project().captured.take(),
    };
    slot.as_mut().project().handler.set(Some(handler(gw)));
    let done = version < http::Version::HTTP_2
        && slot
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready();
    let driver: Option<Driver> = if done {
        // Finished at once (the common case): the allocation is kept for
        // the connection's next request.
        slot.as_mut().project().handler.set(None);
        spare.set(Some(slot));
        None
    } else {
        Some(slot)
    };
    answer(driver, exchange, version, in_flight, shared.max_frame)
}

pin_project_lite::pin_project! {
    /// A request's handler in an allocation of its own, which a connection
    /// reuses for its next request once the handler is done, with the copy
    /// of the head the handler gave back.
    struct Slot<F> {
        #[pin]
        handler: Option<F>,
        captured: Option<Arc<Captured>>,
    }
}

impl<F: Future<Output = Option<Arc<Captured>>>> Future for Slot<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        match this.handler.as_pin_mut() {
            Some(handler) => match handler.poll(cx) {
                Poll::Ready(captured) => {
                    *this.captured = captured;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
            None => Poll::Ready(()),
        }
    }
}

/// The rest of `respond`: waits for the head, then hands it to hyper with
/// the response body.
///
/// An `async` block rather than an `async fn`: the block's future holds
/// its arguments once, where an `async fn` would copy them to locals.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` holds its arguments twice"
)]
fn answer(
    driver: Option<Driver>,
    exchange: SharedExchange,
    version: http::Version,
    in_flight: InFlight,
    max_frame: usize,
) -> impl Future<Output = Result<Response<ResponseBody>, BoxError>> + Send + 'static {
    async move {
        // HTTP/2: the response body tells its stream's watch when hyper holds a
        // chunk it cannot send yet.
        let clock = if version == http::Version::HTTP_2 {
            current_clock()
        } else {
            None
        };
        // `None`: the handler finished when first polled.
        let mut driver = driver;
        let finished = match &mut driver {
            None => true,
            Some(driver) => {
                poll_fn(|cx| {
                    let finished = driver.as_mut().poll(cx).is_ready();
                    if finished || exchange.lock().head.is_some() {
                        Poll::Ready(finished)
                    } else {
                        Poll::Pending
                    }
                })
                .await
            }
        };
        let mut x = exchange.lock();
        let Some(head) = x.head.take() else {
            // Nothing could be sent (not even the error page): close.
            return Err("the request ended without a response".into());
        };
        // The core decides the framing: only a response it gave a
        // Content-Length is offered to hyper with an exact size; a length kept
        // out of the head is that size.
        let length = x.length.take();
        let sized = length.is_some() || head.headers.contains_key(http::header::CONTENT_LENGTH);
        let body = if finished {
            // The handler is done (the common case): at most one chunk, the
            // coalesced body, is waiting; hand hyper a body of known size.
            ResponseBody {
                whole: x.chunk.take(),
                error: x.abort.take(),
                error_ready: false,
                running: None,
                sized,
                length,
                clock,
                max_frame,
                _in_flight: in_flight,
            }
        } else {
            drop(x);
            ResponseBody {
                whole: None,
                error: None,
                error_ready: false,
                running: driver.map(|d| (d, exchange)),
                sized: false,
                length,
                clock,
                max_frame,
                _in_flight: in_flight,
            }
        };
        if let Some(clock) = &body.clock
            && !body.is_end_stream()
        {
            // hyper holds the body from here on; it may send the head and wait
            // for room before it asks for the first chunk.
            clock.handed_over();
        }
        Ok(Response::from_parts(head, body))
    }
}

/// Runs the handler for one request; a response that failed after its head
/// is marked for the body to abort. Gives back the copy of the head the
/// environ was made from, to be filled again, when nothing holds it any
/// more (see `Captured`).
///
/// An `async` block rather than an `async fn`: the block's future holds the
/// gateway once, where an `async fn` would hold its argument and a copy.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` holds its argument twice"
)]
fn drive<S, B>(
    shared: Arc<Shared<S>>,
    mut gw: HttpGateway,
) -> impl Future<Output = Option<Arc<Captured>>> + Send
where
    S: Application<B>,
    B: AppBody,
{
    async move {
        let outcome = shared.handler.run(&mut gw, shared.app.clone()).await;
        if gw.head_sent && (outcome.is_aborted() || outcome.is_failed()) {
            gw.abort("response aborted");
        }
        gw.release()
    }
}

/// The most bytes of a response body handed to hyper at once when hyper
/// copies the body into its write buffer (see `Server::vectored_writes`):
/// the buffer then grows to at most its size limit and one frame, however
/// large the application's chunks (see `frame`).
pub(crate) const FLAT_MAX_FRAME: usize = 16 * 1024;

/// The rest of a request's handler, driven by the response body.
type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The response body hyper writes: chunks from the handler as it produces
/// them (or the last one when it finished before the head went out); an
/// abort ends it with an error.
///
/// hyper drops what it has buffered when a body fails, so an error is held
/// back for one poll: the body says "not ready" first, hyper flushes what it
/// has to the socket, and the next poll fails. The client gets every byte the
/// application produced, then a close without a clean end.
pub(crate) struct ResponseBody {
    whole: Option<Bytes>,
    error: Option<&'static str>,
    error_ready: bool,
    running: Option<(Driver, SharedExchange)>,
    sized: bool,
    /// The response's length, when hyper writes its `Content-Length` from
    /// the body's size (the head has none): the exact size, whatever the
    /// body's state.
    length: Option<u64>,
    /// HTTP/2: the stream's send clock (see `stream`).
    clock: Option<Arc<SendClock>>,
    /// The most bytes handed to hyper in one frame (see `frame`).
    max_frame: usize,
    _in_flight: InFlight,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(clock) = &this.clock {
            clock.polled();
        }
        let poll = this.next_frame(cx);
        if let (Some(clock), Poll::Ready(Some(Ok(_)))) = (&this.clock, &poll) {
            clock.handed_over();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.running.is_none() && self.whole.is_none() && self.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(n) = self.length {
            return SizeHint::with_exact(n);
        }
        match (&self.running, &self.whole, &self.error) {
            (None, Some(d), None) if self.sized => SizeHint::with_exact(d.len() as u64),
            (None, None, None) if self.sized => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl ResponseBody {
    /// The next frame: the whole body, a chunk from the running handler, or
    /// the held-back error.
    fn next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self;
        if let Some(data) = this.whole.take() {
            return Poll::Ready(Some(Ok(frame(data, this.max_frame, &mut this.whole))));
        }
        if let Some((driver, exchange)) = &mut this.running {
            if let Some(data) = exchange.lock().chunk.take() {
                return Poll::Ready(Some(Ok(frame(data, this.max_frame, &mut this.whole))));
            }
            let finished = driver.as_mut().poll(cx).is_ready();
            let mut x = exchange.lock();
            let chunk = x.chunk.take();
            if finished {
                // Never poll the finished handler again; what it left (a
                // last chunk, an abort) is answered from here on.
                this.error = x.abort.take();
                drop(x);
                this.running = None;
            } else if chunk.is_none() {
                return Poll::Pending;
            }
            if let Some(data) = chunk {
                // A write that found the slot taken waits for this body to
                // poll the handler again: hyper will, after this chunk.
                return Poll::Ready(Some(Ok(frame(data, this.max_frame, &mut this.whole))));
            }
        }
        match this.error {
            Some(why) if this.error_ready => {
                this.error = None;
                Poll::Ready(Some(Err(why.into())))
            }
            Some(_) => {
                this.error_ready = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }
}

/// A frame of at most `max` bytes of `data`; the rest goes to `rest`, the
/// next frame (no copy: the slices share `data`).
fn frame(mut data: Bytes, max: usize, rest: &mut Option<Bytes>) -> Frame<Bytes> {
    if data.len() > max {
        *rest = Some(data.split_off(max));
    }
    Frame::data(data)
}

/// Counts a connection that ended with an error in the metrics: a request
/// hyper could not parse, a head not received in time, a head too large.
fn count_error(metrics: Option<&gateway_core::Metrics>, e: &(dyn std::error::Error + 'static)) {
    use gateway_core::Failure;
    let Some(metrics) = metrics else { return };
    let kind = match e.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse_too_large() => Failure::Limit,
        Some(e) if e.is_parse() || e.is_parse_status() => Failure::Protocol,
        Some(e) if e.is_timeout() => Failure::Timeout,
        _ if is_timeout(e) => Failure::Timeout,
        _ => return,
    };
    metrics.failure(kind);
}

/// Whether an error or one of its causes is an I/O timeout.
fn is_timeout(mut e: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        match e.source() {
            Some(next) => e = next,
            None => return false,
        }
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    fn body(whole: Option<Bytes>) -> ResponseBody {
        ResponseBody {
            whole,
            error: None,
            error_ready: false,
            running: None,
            sized: true,
            length: None,
            clock: None,
            max_frame: FLAT_MAX_FRAME,
            _in_flight: InFlight::start(&Arc::new(Activity::default())),
        }
    }

    /// Polls `b` to its end; the sizes of its data frames and their bytes.
    fn drain(mut b: ResponseBody) -> (Vec<usize>, Vec<u8>) {
        let mut cx = Context::from_waker(Waker::noop());
        let (mut sizes, mut all) = (Vec::new(), Vec::new());
        loop {
            match Pin::new(&mut b).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => {
                    let data = f.into_data().unwrap_or_default();
                    sizes.push(data.len());
                    all.extend_from_slice(&data);
                }
                Poll::Ready(None) => return (sizes, all),
                other => panic!("unexpected poll: {:?}", other.map(|f| f.is_some())),
            }
        }
    }

    #[test]
    fn a_large_body_reaches_hyper_in_frames_of_at_most_max_frame() {
        let data: Vec<u8> = (0..40 * 1024 + 7).map(|i| (i % 251) as u8).collect();
        let b = body(Some(Bytes::from(data.clone())));
        // The size hyper frames the response with is the whole body's.
        assert_eq!(b.size_hint().exact(), Some(data.len() as u64));
        let (sizes, all) = drain(b);
        assert_eq!(sizes, [FLAT_MAX_FRAME, FLAT_MAX_FRAME, 8 * 1024 + 7]);
        assert_eq!(all, data);
    }

    #[test]
    fn a_small_body_is_one_frame() {
        let (sizes, all) = drain(body(Some(Bytes::from_static(b"Hello, world!\n"))));
        assert_eq!(sizes, [14]);
        assert_eq!(all, b"Hello, world!\n");
    }
}

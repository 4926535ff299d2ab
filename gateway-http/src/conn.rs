//! One connection: hyper drives HTTP/1.1 or HTTP/2; every request runs the
//! core handler inside the futures hyper polls for it.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::server::{Connection, Shutdown, Timed};
use gateway_core::{AppBody, Application, Body, BoxError, ErrorStream, Handler};
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;

use crate::body::RequestBody;
use crate::gateway::{Addrs, HttpGateway, SharedExchange};
use crate::stream::{SendClock, StreamExecutor, current_clock};
use crate::upgrade::{CutOnDrop, Tether, Tethered};

/// How long a connection that is closing, with no request in flight, may
/// take to finish the close (between one and two of these).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why a connection closes when the server stops.
const STOPPING: &str = "the server is stopping";

/// What every connection of a server shares.
pub(crate) struct Shared<S> {
    pub(crate) app: S,
    pub(crate) handler: Handler,
    pub(crate) builder: auto::Builder<StreamExecutor>,
    pub(crate) server_software: Option<Bytes>,
    pub(crate) errors: ErrorStream,
    /// The server's shutdown, watched besides the connection's own.
    pub(crate) shutdown: Shutdown,
}

/// Serves one accepted connection until it closes, or gracefully closes it
/// once the shutdown it came with, or the server's own, starts.
pub(crate) async fn serve_connection<S, B>(conn: Connection, shared: Arc<Shared<S>>)
where
    S: Application<B>,
    B: AppBody,
{
    let limits = shared.handler.limits();
    // The first byte is due within the head read timeout of the accept.
    let first_byte = conn.first_bytes_left(limits.get_head_read_timeout());
    let Connection {
        stream,
        peer_addr,
        local_addr,
        mut shutdown,
        ..
    } = conn;
    let svc_shared = shared.clone();
    let addrs = Arc::new(Addrs::new(
        peer_addr,
        local_addr,
        shared.server_software.as_ref(),
    ));
    // HTTP/1.x: the response to the last request a connection may carry
    // says `Connection: close`, and hyper closes after it.
    let budget = limits
        .get_max_requests_per_connection()
        .map(|n| Arc::new(AtomicU64::new(n)));
    let activity = Arc::new(Activity::default());
    let svc_activity = activity.clone();
    // The stream outlives hyper's connection when the application takes it
    // over (a WebSocket): see `upgrade`.
    let (stream, tether) = Tethered::new(stream);
    let _cut = CutOnDrop(tether.clone());
    let svc_tether = tether.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let last = budget.as_ref().is_some_and(|b| {
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
        respond(req, svc_shared.clone(), addrs.clone(), last, in_flight)
    });
    // A client that takes nothing written to it for write_timeout is gone.
    // hyper's own header read timeout only starts once it has seen enough
    // bytes to tell HTTP/1 from HTTP/2, so the wait for the first byte is
    // bounded here.
    let io = TokioIo::new(Timed::writes(stream, limits.get_write_timeout()).first_byte(first_byte));
    let idle = limits.get_idle_timeout();
    // A connection just accepted gets its first request served even if the
    // server started stopping meanwhile (see `Shutdown::connection_watch`).
    let mut server_stopping = shared.shutdown.connection_watch();
    // For the close, which may outlast the watches above: a stream handed
    // to the application keeps a closing connection open until it ends,
    // or until the grace period once the server stops.
    let (mut late_stop, mut late_server_stop) = (shutdown.clone(), shared.shutdown.watch());
    let grace = shared.shutdown.get_deadline();
    let result = {
        let c = shared.builder.serve_connection_with_upgrades(io, svc);
        tokio::pin!(c);
        // The server stopping, or the connection idle: polled only when one
        // of them woke the task, not on every wake-up hyper's I/O causes.
        let control = Gated::new(async {
            tokio::select! {
                _ = shutdown.stopping() => STOPPING,
                _ = server_stopping.stopping() => STOPPING,
                () = activity.idle(idle, &tether) => "the connection is idle",
            }
        });
        tokio::pin!(control);
        tokio::select! {
            biased;
            r = c.as_mut() => r,
            why = control.as_mut() => {
                // Finish the requests in flight, then close (HTTP/2: GOAWAY,
                // a PING, and a last GOAWAY once the client acknowledged
                // it). Requests in flight are bounded by their own timeouts
                // and the shutdown's deadline; once none is left, the close
                // itself gets CLOSE_GRACE, so a client that never
                // acknowledges cannot hold the connection (and its slot)
                // open.
                tracing::debug!(why, "closing the connection");
                c.as_mut().graceful_shutdown();
                let stopping = why == STOPPING;
                tokio::select! {
                    biased;
                    r = c.as_mut() => r,
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
        // hyper's connection (and the stream, unless it was upgraded) is
        // dropped here.
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
        count_error(shared.handler.metrics(), &*e);
    }
    if !tether.released() {
        // Upgraded: the application holds the stream. The connection keeps
        // its slot until the application drops it; once the server stops,
        // the application gets the grace period, then the socket is shut
        // down.
        tracing::debug!("the connection switched protocols; the application holds it");
        let grace = shared.shutdown.get_deadline();
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
}

/// A future polled only after its own waker fired (and once at first), so a
/// task that is woken often for other reasons does not poll it each time.
struct Gated<F> {
    inner: Pin<Box<F>>,
    gate: Arc<Gate>,
    waker: Waker,
}

/// Whether a gated future was woken, and the task to wake.
struct Gate {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

impl<F: Future> Gated<F> {
    fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            fired: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            inner: Box::pin(inner),
            waker: Waker::from(gate.clone()),
            gate,
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        {
            let mut task = this.gate.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !this.gate.fired.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
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
    /// periods. hyper's header read timeout already closes an idle HTTP/1
    /// connection; this closes idle HTTP/2 ones (GOAWAY), which hyper keeps
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
fn respond<S, B>(
    req: Request<Incoming>,
    shared: Arc<Shared<S>>,
    addrs: Arc<Addrs>,
    last: bool,
    in_flight: InFlight,
) -> impl Future<Output = Result<Response<ResponseBody>, BoxError>> + Send + 'static
where
    S: Application<B>,
    B: AppBody,
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
    let exchange = SharedExchange::default();
    let upgradable = parts.version == http::Version::HTTP_11;
    let gw = HttpGateway {
        upgradable,
        parts: Some(parts),
        body: Some(body),
        addrs,
        exchange: exchange.clone(),
        head_sent: false,
        close,
        host: None,
        server_software: shared.server_software.clone(),
        errors: shared.errors.clone(),
    };
    // The handler runs inside this future until the head is out, then inside
    // the response body, which hyper polls: no task per request, and a
    // client that goes away drops (cancels) the application with the body.
    let mut driver: Driver = Box::pin(drive(shared, gw));
    let done = version < http::Version::HTTP_2
        && driver
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready();
    answer(driver, exchange, done, version, in_flight)
}

/// The rest of `respond`: waits for the head, then hands it to hyper with
/// the response body.
async fn answer(
    mut driver: Driver,
    exchange: SharedExchange,
    done: bool,
    version: http::Version,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, BoxError> {
    // HTTP/2: the response body tells its stream's watch when hyper holds a
    // chunk it cannot send yet.
    let clock = if version == http::Version::HTTP_2 {
        current_clock()
    } else {
        None
    };
    let finished = done
        || poll_fn(|cx| {
            let finished = driver.as_mut().poll(cx).is_ready();
            if finished || exchange.lock().head.is_some() {
                Poll::Ready(finished)
            } else {
                Poll::Pending
            }
        })
        .await;
    let mut x = exchange.lock();
    let Some(head) = x.head.take() else {
        // Nothing could be sent (not even the error page): close.
        return Err("the request ended without a response".into());
    };
    // The core decides the framing: only a response it gave a
    // Content-Length is offered to hyper with an exact size.
    let sized = head.headers.contains_key(http::header::CONTENT_LENGTH);
    let body = if finished {
        // The handler is done (the common case): at most one chunk, the
        // coalesced body, is waiting; hand hyper a body of known size.
        ResponseBody {
            whole: x.chunk.take(),
            error: x.abort.take(),
            error_ready: false,
            running: None,
            sized,
            clock,
            _in_flight: in_flight,
        }
    } else {
        drop(x);
        ResponseBody {
            whole: None,
            error: None,
            error_ready: false,
            running: Some((driver, exchange)),
            sized: false,
            clock,
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

/// Runs the handler for one request; a response that failed after its head
/// is marked for the body to abort.
async fn drive<S, B>(shared: Arc<Shared<S>>, mut gw: HttpGateway)
where
    S: Application<B>,
    B: AppBody,
{
    let outcome = shared.handler.run(&mut gw, shared.app.clone()).await;
    if gw.head_sent && (outcome.is_aborted() || outcome.is_failed()) {
        gw.abort("response aborted");
    }
}

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
    /// HTTP/2: the stream's send clock (see `stream`).
    clock: Option<Arc<SendClock>>,
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
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some((driver, exchange)) = &mut this.running {
            if let Some(data) = exchange.lock().chunk.take() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
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
                return Poll::Ready(Some(Ok(Frame::data(data))));
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

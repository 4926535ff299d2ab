//! The connection dispatcher: one loop that reads the connection, feeds the
//! protocol state machine ([`proto::Connection`], which also admits
//! requests and keeps the connection's deadlines), starts each request's
//! application through a [`Strategy`], hands the request its input, ends it
//! when its application finishes, and alone writes the connection's output
//! buffer.
//!
//! While applications run, the loop still reads the connection: `FCGI_STDIN`
//! and `FCGI_DATA` go to the requests' bounded queues (reading stops while
//! a queue is full), `FCGI_ABORT_REQUEST` cancels the application and ends
//! the request, management records are answered, and the web server
//! closing the connection cancels everything.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use gateway_core::metrics::ConnectionGuard;
use gateway_core::server::{
    LINGER_TIME, Watch, linger_close_io, nothing_waiting_io, stall_timeout,
};
use gateway_core::{AppBody, Application, Body, ErrorStream, Handler, Outcome};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::gateway::{FcgiGateway, Out};
use crate::input::{self, FilterData, InputBody, InputSender};
use crate::proto::{
    Close, Config, Connection, Event, Idle, Params, ProtocolError, ProtocolStatus, ResponseEncoder,
    Role,
};
use crate::strategy::{Adaptive, AppFuture, AppRun, Dispatch, InTask, Spawned, Strategy};
use crate::transport::{Sink, Transport, poll_read_unbuffered};
use gateway_core::server::Gated;

/// Everything the connections of one server share.
pub(crate) struct Shared<S> {
    pub(crate) app: S,
    pub(crate) handler: Handler,
    pub(crate) config: Config,
    /// Where every request's error stream goes; `None`: its `FCGI_STDERR`
    /// records.
    pub(crate) errors: Option<ErrorStream>,
    /// Requests allowed at once across connections; past that, new requests
    /// are answered `FCGI_OVERLOADED`.
    pub(crate) capacity: Arc<Semaphore>,
    /// Signal a response that failed after its head by resetting the
    /// connection instead of `FCGI_END_REQUEST` with appStatus 1.
    pub(crate) reset_on_abort: bool,
    /// Where the requests' applications run.
    pub(crate) dispatch: Dispatch,
}

/// Serves one connection, opened at `opened` (its first request head is due
/// within the head read timeout from then), until it closes. `reset` ends
/// the transport with a reset where it can (TCP: zero linger), for
/// responses that failed after their head.
///
/// While the connection has nothing in flight (before its first request,
/// and between requests once every one has ended, its output is written and
/// no input is left over), it holds no more than its transport and the
/// little of its protocol state that outlives requests ([`Idle`]): the
/// dispatcher (buffers, protocol state, the strategy) is made, boxed, when
/// input arrives (or a deadline or the shutdown wants it), and dropped
/// again when it is idle.
///
/// `io` `None`: the connection is not to be served (its future completes at
/// once). `open` is held as long as the connection is (the metrics'
/// count of open connections).
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve<T, S, B>(
    shared: Arc<Shared<S>>,
    io: Option<T>,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    opened: Instant,
    watch: Option<Watch>,
    reset: fn(&T),
    open: Option<ConnectionGuard>,
) -> impl Future<Output = ()> + Send + 'static
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Application<B>,
    B: AppBody,
{
    // Built here rather than in the future, whose arguments take room of
    // their own for as long as it lives (a connection's future is all it
    // holds while it waits, so every byte counts).
    let parked = io.map(|io| Parked {
        io,
        buf: BytesMut::new(),
        idle: Idle::opened(opened.into_std()),
        input_open: true,
    });
    serve_parked(shared, parked, peer_addr, local_addr, watch, reset, open)
}

async fn serve_parked<T, S, B>(
    shared: Arc<Shared<S>>,
    mut parked: Option<Parked<T>>,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    mut watch: Option<Watch>,
    reset: fn(&T),
    _open: Option<ConnectionGuard>,
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Application<B>,
    B: AppBody,
{
    loop {
        let Some(waiting) = parked.as_mut() else {
            return;
        };
        if !wait_for_input(waiting, &shared.config, &mut watch).await {
            return;
        }
        let Some(parked_now) = parked.take() else {
            return;
        };
        let next = match shared.dispatch {
            Dispatch::Adaptive => {
                Box::pin(
                    Dispatcher::<T, S, Adaptive>::resume(
                        &shared, parked_now, peer_addr, local_addr,
                    )
                    .run(&mut watch, reset),
                )
                .await
            }
            Dispatch::InTask => {
                Box::pin(
                    Dispatcher::<T, S, InTask>::resume(&shared, parked_now, peer_addr, local_addr)
                        .run(&mut watch, reset),
                )
                .await
            }
            Dispatch::Spawned => {
                Box::pin(
                    Dispatcher::<T, S, Spawned>::resume(&shared, parked_now, peer_addr, local_addr)
                        .run(&mut watch, reset),
                )
                .await
            }
        };
        parked = next;
    }
}

/// A connection with nothing in flight, its dispatcher dropped.
struct Parked<T> {
    io: T,
    /// Input read while parked (no allocation until some arrives).
    buf: BytesMut,
    /// What the protocol state keeps between requests.
    idle: Idle,
    /// Whether the web server may still send input (as the dispatcher's
    /// field of that name).
    input_open: bool,
}

/// Waits until a parked connection has input (read into its buffer),
/// `deadline` (its head read or idle deadline) has come, or the server is
/// stopping. False when the web server closed the connection or the read
/// failed: nothing more is to be done with it.
async fn wait_for_input<T: AsyncRead + Unpin>(
    parked: &mut Parked<T>,
    config: &Config,
    watch: &mut Option<Watch>,
) -> bool {
    let deadline = parked.idle.deadline(config).map(Instant::from_std);
    let Parked { io, buf, .. } = parked;
    tokio::select! {
        biased;
        r = std::future::poll_fn(|cx| poll_read_unbuffered(io, cx, buf)) => match r {
            Ok(0) => {
                tracing::debug!("FastCGI web server closed the connection");
                false
            }
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(%error, "FastCGI read failed");
                false
            }
        },
        () = stopping_of(watch) => true,
        () = sleep_until(deadline) => true,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long a connection with nothing in flight keeps its dispatcher
/// before it parks (see [`serve`]). Making the dispatcher anew costs about
/// a sixth of a small request's instructions, so a connection that the web
/// server reuses at once keeps it; one that waits longer gives its memory
/// back.
const PARK_AFTER: Duration = Duration::from_millis(100);

/// The earlier of two optional times.
fn min_time(
    a: Option<std::time::Instant>,
    b: Option<std::time::Instant>,
) -> Option<std::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How the dispatcher's loop ended.
enum End {
    /// The connection is to close so.
    Close(Close),
    /// It has nothing in flight: it waits for input without its dispatcher.
    Park(Idle),
}

/// The dispatcher's side of one active request.
struct Slot {
    id: u16,
    role: Role,
    /// Whether its application runs (its parameters arrived).
    running: bool,
    stdin: Option<InputSender>,
    data: Option<InputSender>,
    out: Out,
    _permit: OwnedSemaphorePermit,
}

struct Dispatcher<T, S, St> {
    shared: Arc<Shared<S>>,
    transport: Arc<Transport<T>>,
    sink: Arc<dyn Sink>,
    proto: Connection,
    buf: BytesMut,
    slots: Vec<Slot>,
    strategy: St,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    /// Whether the web server may still send input (then a close drains it,
    /// so that it does not become a reset).
    input_open: bool,
    /// The `Out` of the last request that ended, for the next one to reuse.
    spare: Option<Out>,
    /// The future of the last request that finished in the connection's
    /// task, whose allocation (a few KiB) the next request runs in.
    spare_run: Option<AppFuture>,
    /// When the input being handled was read, until it has been: the time
    /// a request that finishes at once ends at, without the clock read
    /// again.
    read_at: Option<std::time::Instant>,
}

impl<T, S, B, St> Dispatcher<T, S, St>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    // The Response projection ties B to S (an impl's parameters must be
    // constrained).
    S: Application<B> + Service<Request<Body>, Response = Response<B>>,
    B: AppBody,
    St: Strategy,
{
    /// The dispatcher of a parked connection, with the input that woke it.
    fn resume(
        shared: &Arc<Shared<S>>,
        parked: Parked<T>,
        peer_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
    ) -> Self {
        let Parked {
            io,
            buf,
            idle,
            input_open,
        } = parked;
        let transport = Arc::new(Transport::new(io));
        let sink: Arc<dyn Sink> = transport.clone();
        let mut proto = Connection::resumed(&shared.config, idle);
        let received = !buf.is_empty();
        let mut read_at = None;
        if received {
            let at = now();
            read_at = Some(at);
            proto.received(at);
        } else {
            // Woken by a deadline (or the shutdown, which `run` sees).
            proto.handle_timeout(now());
        }
        Dispatcher {
            proto,
            shared: shared.clone(),
            strategy: St::new(sink.clone()),
            transport,
            sink,
            buf,
            slots: Vec::new(),
            peer_addr,
            local_addr,
            input_open: input_open || received,
            spare: None,
            spare_run: None,
            read_at,
        }
    }

    /// Serves the connection until it closes (`None`) or has nothing in
    /// flight (its transport and idle state, to wait for input without the
    /// dispatcher).
    async fn run(mut self, watch: &mut Option<Watch>, reset: fn(&T)) -> Option<Parked<T>> {
        let write_timeout = self.shared.handler.limits().get_write_timeout();
        let mut stopping = watch.as_ref().is_some_and(Watch::is_stopping);
        if stopping {
            self.proto.stop();
        }
        // Both watches below are polled again only once they woke the
        // task (or were changed): otherwise each turn of the loop would
        // take their locks again.
        let mut stopped = pin!(Gated::new(stopping_of(watch)));
        // One timer for the connection's deadlines. It is moved only when a
        // deadline comes earlier than the time it is set for: one that
        // goes later (the usual case from one request to the next, each
        // pushing the head and idle deadlines on) lets it fire early, and
        // the protocol layer, finding nothing due, gives the next time to
        // set. So a kept-alive connection moves its timer about once per
        // deadline period rather than a few times per request.
        let mut timer = pin!(Gated::new(tokio::time::sleep_until(Instant::now())));
        let mut timer_at: Option<std::time::Instant> = None;
        // A connection parks when the timer fires: set for PARK_AFTER past
        // the end of a request (`park_armed`: it is set for that time or
        // earlier), it fires about once per PARK_AFTER on a busy
        // connection, which then looks again; so a busy connection neither
        // reads the clock nor moves the timer after each request.
        let mut timer_fired = false;
        let mut park_armed = false;
        // An input queue over its bound: no reading until it drains.
        let mut full: Option<InputSender> = None;

        let end = loop {
            while let Some(id) = self.proto.next_input_timeout() {
                self.input_timed_out(id);
            }
            if full.is_none() {
                match std::future::poll_fn(|cx| Poll::Ready(self.process(cx))).await {
                    Ok(queue) => {
                        if queue.is_some() {
                            self.proto.pause_input();
                        }
                        full = queue;
                    }
                    Err(reason) => {
                        tracing::debug!(%reason, "FastCGI protocol error, closing the connection");
                        gateway_core::metrics::note(
                            self.shared.handler.metrics(),
                            gateway_core::Failure::Protocol,
                        );
                        break End::Close(Close::Abort);
                    }
                }
            }
            // Later ends read the clock.
            self.read_at = None;
            if let Some(close) = self.proto.poll_close() {
                if close == Close::Abort {
                    // The protocol layer aborts only for a deadline: a head
                    // not received, or output not taken, in time.
                    gateway_core::metrics::note(
                        self.shared.handler.metrics(),
                        gateway_core::Failure::Timeout,
                    );
                }
                break End::Close(close);
            }
            let mut wake_at = self.proto.poll_timeout();
            if self.slots.is_empty() && self.buf.is_empty() && !park_armed {
                // Every request has ended: with its output written and no
                // input left over, the connection waits for the next one
                // without the dispatcher once it has been idle for
                // PARK_AFTER. A busy connection, whose next request comes
                // sooner, keeps its dispatcher and read buffer rather than
                // make them anew for each request; one that cannot park
                // (input may still come for a request that has ended) gives
                // back its read buffer at least.
                let fired = std::mem::take(&mut timer_fired);
                let idle = if full.is_none() && !self.input_open {
                    self.proto.idle()
                } else {
                    None
                };
                match idle {
                    Some(idle) => {
                        let park_at = idle.since().map_or_else(now, |t| t + PARK_AFTER);
                        if !fired || now() < park_at {
                            park_armed = true;
                            wake_at = min_time(wake_at, Some(park_at));
                        } else if self.sink.buffered() == 0 {
                            break End::Park(idle);
                        }
                        // Otherwise output is still being written: the
                        // next look, once it is, parks.
                    }
                    None if self.buf.capacity() != 0 => {
                        if fired {
                            self.buf = BytesMut::new();
                        } else {
                            park_armed = true;
                            wake_at = min_time(wake_at, Some(now() + PARK_AFTER));
                        }
                    }
                    None => {}
                }
            }
            if let Some(at) = wake_at
                && timer_at.is_none_or(|set| at < set)
            {
                timer_at = Some(at);
                timer.as_mut().inner().reset(Instant::from_std(at));
            }
            tokio::select! {
                biased;
                (id, outcome) = std::future::poll_fn(|cx| self.strategy.poll_finished(cx)) => {
                    self.finished(id, &outcome);
                }
                // Polled after the applications, so output they appended
                // before they blocked goes out in this same turn.
                r = write_buffered(&self.transport, self.proto.is_write_blocked()) => match r {
                    Ok(Wrote::All) => self.proto.wrote(),
                    Ok(Wrote::Some) => {
                        self.proto.wrote();
                        self.proto.write_blocked(now());
                    }
                    Ok(Wrote::Blocked) => self.proto.write_blocked(now()),
                    Err(error) => {
                        tracing::debug!(%error, "FastCGI write failed");
                        break End::Close(Close::Abort);
                    }
                },
                () = drained(full.as_ref()), if full.is_some() => {
                    full = None;
                    self.proto.resume_input(now());
                }
                r = read(&self.transport, &mut self.buf), if full.is_none() => match r {
                    Ok(0) => {
                        tracing::debug!("FastCGI web server closed the connection");
                        break End::Close(Close::Abort);
                    }
                    Err(error) => {
                        tracing::debug!(%error, "FastCGI read failed");
                        break End::Close(Close::Abort);
                    }
                    Ok(_) => {
                        self.input_open = true;
                        let at = now();
                        self.read_at = Some(at);
                        self.proto.received(at);
                    }
                },
                () = &mut stopped, if !stopping => {
                    stopping = true;
                    self.proto.stop();
                }
                () = &mut timer, if timer_at.is_some() => {
                    timer_at = None;
                    timer_fired = true;
                    park_armed = false;
                    self.proto.handle_timeout(now());
                }
            }
        };

        // Cancel whatever still runs before the input queues are dropped,
        // so that an application still running does not see its body cut
        // short first; nothing more is written for those requests.
        let Dispatcher {
            transport,
            strategy,
            slots,
            buf,
            input_open,
            ..
        } = self;
        drop(strategy);
        drop(slots);
        let close = match end {
            End::Park(idle) => {
                // Parked without a read buffer (`buf` is empty).
                return transport.take().map(|io| Parked {
                    io,
                    buf: BytesMut::new(),
                    idle,
                    input_open: false,
                });
            }
            End::Close(close) => close,
        };
        match close {
            Close::Abort => drop(transport.take()),
            Close::Graceful => {
                let written = write_out(&transport, write_timeout).await.is_ok();
                let mut io = transport.take()?;
                // With all of the input read and nothing more arriving, a
                // plain close cannot turn into a reset.
                if written && (input_open || !buf.is_empty() || !nothing_waiting_io(&mut io).await)
                {
                    linger_close_io(io, write_timeout).await;
                }
            }
            Close::Reset => {
                // The request's input has ended, or the wait for it ran out
                // (see `Connection::reset_after_input`).
                let _ = write_out(&transport, write_timeout).await;
                if let Some(io) = transport.take() {
                    reset(&io);
                }
            }
        }
        None
    }

    /// Moves the protocol layer's replies to the output buffer.
    fn replies(&mut self) {
        if self.proto.has_output() {
            let replies = self.proto.take_output();
            self.transport.push(&replies);
        }
    }

    /// Handles the records read so far; returns the input queue that went
    /// over its bound, if one did (then reading waits until it drains).
    /// `cx` is the connection task's, for the applications run in it.
    fn process(&mut self, cx: &mut Context<'_>) -> Result<Option<InputSender>, ProtocolError> {
        loop {
            let event = self.proto.next_event(&mut self.buf);
            self.replies();
            let Some(event) = event? else {
                return Ok(None);
            };
            if let Some(full) = self.event(event, cx)? {
                return Ok(Some(full));
            }
        }
    }

    fn slot(&mut self, id: u16) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    fn take_slot(&mut self, id: u16) -> Option<Slot> {
        let i = self.slots.iter().position(|s| s.id == id)?;
        Some(self.slots.swap_remove(i))
    }

    /// Handles one event.
    fn event(
        &mut self,
        event: Event,
        cx: &mut Context<'_>,
    ) -> Result<Option<InputSender>, ProtocolError> {
        match event {
            Event::Begin { id, role, .. } => {
                // The protocol layer admitted it; the cap across
                // connections is the last word.
                match self.shared.capacity.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let out = match self.spare.take() {
                            Some(spare) => Out::reuse(spare, id),
                            None => Out::new(self.sink.clone(), id),
                        };
                        self.slots.push(Slot {
                            id,
                            role,
                            running: false,
                            stdin: None,
                            data: None,
                            out,
                            _permit: permit,
                        });
                    }
                    Err(_) => {
                        tracing::debug!(id, "FastCGI request refused: overloaded");
                        gateway_core::metrics::note(
                            self.shared.handler.metrics(),
                            gateway_core::Failure::Limit,
                        );
                        self.proto.reject(id, ProtocolStatus::Overloaded, now());
                        self.replies();
                    }
                }
            }
            Event::Params { id, params } if self.slot(id).is_some_and(|s| !s.running) => {
                // A request without a body usually ends its FCGI_STDIN in
                // the same read: then its body needs no queue.
                let next = self.proto.next_event(&mut self.buf);
                self.replies();
                match next? {
                    Some(Event::StdinEnd { id: i }) if i == id => self.start(id, params, true, cx),
                    other => {
                        self.start(id, params, false, cx);
                        if let Some(event) = other {
                            return self.event(event, cx);
                        }
                    }
                }
            }
            Event::Stdin { id, data } => {
                let q = self.slot(id).and_then(|s| s.stdin.as_ref());
                return Ok(push(q, data));
            }
            Event::Data { id, data } => {
                let q = self.slot(id).and_then(|s| s.data.as_ref());
                return Ok(push(q, data));
            }
            Event::StdinEnd { id } => {
                if let Some(q) = self.slot(id).and_then(|s| s.stdin.take()) {
                    q.finish();
                }
            }
            Event::DataEnd { id } => {
                if let Some(q) = self.slot(id).and_then(|s| s.data.take()) {
                    q.finish();
                }
            }
            Event::Abort { id } => {
                tracing::debug!(id, "FastCGI request aborted by the web server");
                if let Some(slot) = self.take_slot(id) {
                    if slot.running {
                        self.strategy.cancel(id);
                    }
                    slot.out.end(1);
                }
                self.proto.finish(id, now());
            }
            Event::Rejected { id, status } => {
                tracing::debug!(id, ?status, "FastCGI request refused");
            }
            _ => {}
        }
        Ok(None)
    }

    /// Starts request `id`'s application; `stdin_ended`: its FCGI_STDIN has
    /// already ended, empty. An application run in the connection's task
    /// (with `cx`) may be done at once: then the request ends here.
    fn start(&mut self, id: u16, params: Params, stdin_ended: bool, cx: &mut Context<'_>) {
        let errors = self.shared.errors.clone();
        let (peer_addr, local_addr) = (self.peer_addr, self.local_addr);
        let Some(slot) = self.slot(id) else { return };
        let (content_length, role_given) = params.length_and_role();
        let length = input::declared_length(content_length);
        let stdin = if stdin_ended {
            InputBody::ended(length)
        } else {
            let (tx, rx) = input::channel(length);
            slot.stdin = Some(tx);
            rx
        };
        let filter = (slot.role == Role::Filter).then(|| {
            let length = input::declared_length(params.get(b"FCGI_DATA_LENGTH"));
            let (tx, rx) = input::channel(length);
            slot.data = Some(tx);
            FilterData::new(rx)
        });
        slot.running = true;
        let gw = FcgiGateway {
            id,
            role: slot.role,
            params: Some(params),
            role_given,
            stdin: Some(stdin),
            output: slot.out.clone(),
            encoder: ResponseEncoder::new(id),
            errors,
            peer_addr,
            local_addr,
            open: false,
        };
        let app = match self.spare_run.take() {
            Some(mut app) => {
                app.as_mut().restart(gw, filter);
                app
            }
            None => {
                let shared = self.shared.clone();
                let make = run_request::<S, B>;
                // Allocated before the future is made, so that the future
                // (a few KiB) is built in its box rather than on the stack
                // and copied.
                let app = Box::write(
                    Box::new_uninit(),
                    Run {
                        run: Some(make(shared.clone(), gw, filter)),
                        shared,
                        make,
                    },
                );
                Box::into_pin(app)
            }
        };
        if let Some((outcome, app)) = self.strategy.start(id, app, cx) {
            self.spare_run = Some(app);
            self.finished(id, &outcome);
        }
    }

    /// The web server sent none of request `id`'s input within the body
    /// read timeout: its body fails as timed out (the connection already
    /// takes no new request).
    fn input_timed_out(&mut self, id: u16) {
        tracing::debug!(
            id,
            "FastCGI input stalled, closing the connection once idle"
        );
        if let Some(slot) = self.slot(id) {
            for q in [slot.stdin.take(), slot.data.take()].into_iter().flatten() {
                q.time_out();
            }
        }
    }

    /// Request `id`'s application finished.
    fn finished(&mut self, id: u16, outcome: &Outcome) {
        let Some(slot) = self.take_slot(id) else {
            return;
        };
        let input_open = slot.stdin.is_some() || slot.data.is_some();
        if outcome.is_aborted() && self.shared.reset_on_abort {
            // A response that failed after its head went out is cut off,
            // with the connection reset and no end of the response (what a
            // crashed application does), which web servers pass on to the
            // client as a truncated response.
            tracing::debug!("FastCGI response failed after its head, resetting the connection");
            slot.out.cut();
            self.proto
                .reset_after_input(id, (Instant::now() + LINGER_TIME).into_std());
            return;
        }
        slot.out.end(u32::from(!outcome.is_complete()));
        self.proto.finish(id, self.read_at.unwrap_or_else(now));
        self.input_open = input_open;
        self.spare = Some(slot.out);
    }
}

/// The clock the protocol layer runs on (tokio's, which tests can pause).
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn stopping_of(watch: &mut Option<Watch>) {
    match watch {
        Some(w) => w.stopping().await,
        None => std::future::pending().await,
    }
}

/// The run of request `gw`: the application through the handler.
async fn run_request<S, B>(
    shared: Arc<Shared<S>>,
    mut gw: FcgiGateway,
    filter: Option<FilterData>,
) -> Outcome
where
    S: Application<B>,
    B: AppBody,
{
    run_app(&shared, &mut gw, filter).await
    // The request's input queue is dropped with `gw`, before the request
    // ends.
}

pin_project_lite::pin_project! {
    /// A request's run (`make`'s future), which runs the connection's next
    /// request in its place once it has finished.
    struct Run<S, M, F> {
        shared: Arc<Shared<S>>,
        make: M,
        #[pin]
        run: Option<F>,
    }
}

impl<S, M, F> Future for Run<S, M, F>
where
    F: Future<Output = Outcome>,
{
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut this = self.project();
        let Some(run) = this.run.as_mut().as_pin_mut() else {
            // Finished: a strategy polls a run no more after that.
            return Poll::Pending;
        };
        let outcome = std::task::ready!(run.poll(cx));
        this.run.set(None);
        Poll::Ready(outcome)
    }
}

impl<S, M, F> AppRun for Run<S, M, F>
where
    S: Send + Sync + 'static,
    M: Fn(Arc<Shared<S>>, FcgiGateway, Option<FilterData>) -> F + Send + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    #[inline]
    fn restart(self: Pin<&mut Self>, gw: FcgiGateway, filter: Option<FilterData>) {
        let mut this = self.project();
        let next = (this.make)(this.shared.clone(), gw, filter);
        this.run.set(Some(next));
    }
}

/// Runs the application for one request through the handler; a Filter
/// request's data stream goes into the request's extensions.
async fn run_app<S, B>(
    shared: &Shared<S>,
    gw: &mut FcgiGateway,
    filter: Option<FilterData>,
) -> Outcome
where
    S: Application<B>,
    B: AppBody,
{
    let app = shared
        .app
        .clone()
        .map_request(move |mut req: Request<Body>| {
            if let Some(data) = &filter {
                req.extensions_mut().insert(data.clone());
            }
            req
        });
    shared.handler.run(gw, app).await
}

/// Writes the output buffer out, failing once the web server has taken
/// nothing for `timeout`.
async fn write_out<T>(transport: &Transport<T>, timeout: Duration) -> std::io::Result<()>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    stall_timeout(
        timeout,
        std::future::poll_fn(|cx| transport.poll_write_out(cx)),
    )
    .await
}

/// How far a write of the output buffer got.
enum Wrote {
    /// All of it.
    All,
    /// Some, and the rest waits for the web server.
    Some,
    /// None: it waits for the web server.
    Blocked,
}

/// Writes the buffer out once it holds something. Returns when it is all
/// written, or when the write waits for the web server and the protocol
/// layer's write clock is to be started (`blocked`: it runs already) or
/// restarted (the web server took some).
async fn write_buffered<T>(transport: &Transport<T>, blocked: bool) -> std::io::Result<Wrote>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    // Until output is buffered, each poll only looks (under the same lock
    // as the write).
    std::future::poll_fn(|cx| match transport.poll_write_progress(cx, true) {
        None => Poll::Pending,
        Some((Poll::Ready(r), _)) => Poll::Ready(r.map(|()| Wrote::All)),
        Some((Poll::Pending, true)) => Poll::Ready(Ok(Wrote::Some)),
        Some((Poll::Pending, false)) if !blocked => Poll::Ready(Ok(Wrote::Blocked)),
        Some((Poll::Pending, false)) => Poll::Pending,
    })
    .await
}

async fn read<T>(transport: &Transport<T>, buf: &mut BytesMut) -> std::io::Result<usize>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    std::future::poll_fn(|cx| transport.poll_read(cx, buf)).await
}

async fn drained(q: Option<&InputSender>) {
    match q {
        Some(q) => q.drained().await,
        None => std::future::pending().await,
    }
}

/// Queues `data`; returns the queue when it is over its bound.
fn push(q: Option<&InputSender>, data: bytes::Bytes) -> Option<InputSender> {
    let q = q?;
    (q.push(data) && q.is_full()).then(|| q.clone())
}

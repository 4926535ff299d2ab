//! The connection driver: runs the protocol state machine over a transport,
//! starts the application for each request and ends requests.
//!
//! A server that does not multiplex hands each connection to
//! [`single`](crate::single), which serves its one request at a time inside
//! the connection's task. The driver here is for multiplexed connections:
//! one loop reads the connection and hands each request's input to its
//! queue; each request runs `Handler::run` on its own task; all output goes
//! through one writer task. The state machine and the table of running
//! requests sit behind one lock, so ending a request (from its task) and
//! aborting it (from the loop) cannot both answer it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use gateway_core::server::{LINGER_TIME, Watch, linger_close_io};
use gateway_core::{AppBody, Application, Body, ErrorStream, Handler, Outcome};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::gateway::{FcgiGateway, Out, StderrState};
use crate::input::{self, FilterData, InputSender};
use crate::proto::{Config, Connection, Event, ProtocolStatus, ResponseEncoder, Role};
use crate::writer::{Output, writer};

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
}

struct Slot {
    serial: u64,
    role: Role,
    begun: Instant,
    stdin: Option<InputSender>,
    data: Option<InputSender>,
    task: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<StderrState>>,
    _permit: OwnedSemaphorePermit,
}

struct State {
    proto: Connection,
    slots: HashMap<u16, Slot>,
    /// When the connection last had no request: its start, or the end of
    /// the last request.
    idle_since: Instant,
    /// While no request is active, when the first byte of the next request
    /// head arrived (the connection's start for a fresh connection):
    /// partial records and management records do not move it.
    head_since: Option<Instant>,
}

impl State {
    /// A request was ended or refused: with none left, the connection is
    /// idle from now on.
    fn ended_one(&mut self) {
        if self.proto.active_requests() == 0 {
            self.idle_since = Instant::now();
            self.head_since = None;
        }
    }
}

type Locked = Arc<Mutex<State>>;

/// What the loop hears when a request ends.
enum Ended {
    /// Nothing more to do.
    Done,
    /// Request `.0`'s response failed after its head: reset the connection
    /// once the request's input has ended.
    Reset(u16),
    /// The request's body gave up waiting for input: the web server's
    /// stream is in an unknown state, so the connection takes no new
    /// request and closes once the others are done.
    Stalled,
}

/// Why the loop stopped.
enum Stop {
    /// Close politely: flush, shut down writing, drain.
    Close,
    /// The peer went away or broke the protocol: cancel everything.
    Abort,
    /// A response failed after its head: write what was queued, then reset
    /// the connection so that the web server cannot take the response for
    /// a whole one.
    Reset,
}

/// Serves one connection until it closes. `reset` ends the transport with a
/// reset where it can (TCP: zero linger), for responses that failed after
/// their head.
pub(crate) async fn serve<T, S, B>(
    shared: Arc<Shared<S>>,
    io: T,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    watch: Option<Watch>,
    reset: fn(&T),
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Application<B>,
    B: AppBody,
{
    if shared.config.mpxs_conns {
        // Boxed, so that its size does not weigh on every connection's
        // future (moved whole when its task is spawned).
        Box::pin(multiplexed(shared, io, peer_addr, local_addr, watch, reset)).await;
    } else {
        crate::single::serve(shared, io, peer_addr, local_addr, watch, reset).await;
    }
}

/// Serves one multiplexed connection until it closes.
async fn multiplexed<T, S, B>(
    shared: Arc<Shared<S>>,
    io: T,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    mut watch: Option<Watch>,
    reset: fn(&T),
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Application<B>,
    B: AppBody,
{
    let limits = shared.handler.limits().clone();
    let (mut rd, wr) = tokio::io::split(io);
    let (output, writer_fut) = writer(wr, limits.get_write_timeout());
    let mut writer_task = tokio::spawn(writer_fut);
    let opened = Instant::now();
    let state: Locked = Arc::new(Mutex::new(State {
        proto: Connection::new(&shared.config),
        slots: HashMap::new(),
        idle_since: opened,
        head_since: Some(opened),
    }));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Ended>();
    let mut resetting: Option<(u16, Instant)> = None;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut serial: u64 = 0;
    let mut started: u64 = 0;
    let mut stopping = watch.as_ref().is_some_and(Watch::is_stopping);
    let mut stalled = false;
    let max_requests = limits.get_max_requests_per_connection();
    let head_timeout = limits.get_head_read_timeout();
    let idle_timeout = limits.get_idle_timeout();

    let stop = loop {
        let (should_close, waiting_for_head, deadline) = {
            let Ok(st) = state.lock() else {
                break Stop::Abort;
            };
            // A reset while the web server is still sending the request
            // (Apache sends the end of FCGI_STDIN after the parameters)
            // fails its send, and it answers 503 instead of passing on the
            // partial response: wait for the input's end, briefly.
            if let Some((id, until)) = resetting {
                let input_ended = st
                    .slots
                    .get(&id)
                    .is_none_or(|s| s.stdin.is_none() && s.data.is_none());
                if input_ended || Instant::now() >= until {
                    break Stop::Reset;
                }
            }
            let active = st.proto.active_requests();
            let exhausted = max_requests.is_some_and(|m| started >= m);
            let close =
                st.proto.should_close() || ((stopping || exhausted || stalled) && active == 0);
            // The head of a request (BEGIN_REQUEST and all its PARAMS) is
            // due within head_read_timeout of its first byte as a whole; a
            // connection without requests and without such bytes closes
            // idle_timeout after its last request.
            let oldest_waiting = st
                .slots
                .values()
                .filter(|s| s.task.is_none())
                .map(|s| s.begun)
                .min();
            let (waiting_for_head, deadline) = match (oldest_waiting, st.head_since) {
                (Some(t), _) => (true, Some(after(t, head_timeout))),
                (None, Some(t)) if active == 0 => (true, Some(after(t, head_timeout))),
                (None, None) if active == 0 => (false, Some(after(st.idle_since, idle_timeout))),
                (None, _) => (false, None),
            };
            // Resetting: nothing else is waited for.
            let deadline = resetting.map_or(deadline, |(_, until)| Some(until));
            (close, waiting_for_head, deadline)
        };
        if should_close {
            break Stop::Close;
        }
        tokio::select! {
            biased;
            ended = done_rx.recv() => {
                match ended {
                    Some(Ended::Reset(id)) => {
                        tracing::debug!("FastCGI response failed after its head, resetting the connection");
                        resetting = Some((id, Instant::now() + LINGER_TIME));
                    }
                    Some(Ended::Stalled) if !stalled => {
                        tracing::debug!("FastCGI input stalled, closing the connection once idle");
                        stalled = true;
                    }
                    _ => {}
                }
                continue;
            }
            r = &mut writer_task => {
                let error = r.ok().and_then(|(_, r)| r.err());
                tracing::debug!(?error, "FastCGI writer stopped");
                break Stop::Abort;
            }
            () = stopping_of(&mut watch), if !stopping => {
                stopping = true;
                continue;
            }
            () = sleep_until(deadline) => {
                if resetting.is_some() {
                    continue;
                }
                if waiting_for_head {
                    tracing::debug!("FastCGI request head not received in time, closing");
                    gateway_core::metrics::note(shared.handler.metrics(), gateway_core::Failure::Timeout);
                    break Stop::Abort;
                }
                tracing::debug!("FastCGI connection idle, closing");
                break Stop::Close;
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => {
                    tracing::debug!("FastCGI web server closed the connection");
                    break Stop::Abort;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "FastCGI read failed");
                    break Stop::Abort;
                }
                Ok(_) => {
                    // The first byte after an idle spell starts the clock
                    // of the next request head.
                    if let Ok(mut st) = state.lock()
                        && st.proto.active_requests() == 0
                        && st.head_since.is_none()
                    {
                        st.head_since = Some(Instant::now());
                    }
                }
            },
        }
        // Handle every complete record read so far.
        let ctx = Ctx {
            shared: &shared,
            state: &state,
            output: &output,
            done: &done_tx,
            peer_addr,
            local_addr,
            refuse: stopping
                || stalled
                || resetting.is_some()
                || max_requests.is_some_and(|m| started >= m),
        };
        match ctx.process(&mut buf, &mut serial, &mut started).await {
            Ok(()) => {}
            Err(reason) => {
                tracing::debug!(%reason, "FastCGI protocol error, closing the connection");
                gateway_core::metrics::note(
                    shared.handler.metrics(),
                    gateway_core::Failure::Protocol,
                );
                break Stop::Abort;
            }
        }
    };

    // Cancel whatever still runs; nothing more is written for those
    // requests. The tasks are cancelled before their input queues are
    // dropped, so that an application still running does not see its body
    // cut short first.
    let slots: Vec<Slot> = match state.lock() {
        Ok(mut st) => st.slots.drain().map(|(_, s)| s).collect(),
        Err(_) => Vec::new(),
    };
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for mut slot in slots {
        if let Some(task) = slot.task.take() {
            task.abort();
            tasks.push(task);
        }
    }
    drop(output);
    drop(done_tx);
    match stop {
        Stop::Abort => writer_task.abort(),
        Stop::Close => {
            for t in tasks {
                let _ = t.await;
            }
            if let Ok((wr, Ok(()))) = writer_task.await {
                linger_close_io(rd.unsplit(wr), limits.get_write_timeout()).await;
            }
        }
        Stop::Reset => {
            for t in &tasks {
                t.abort();
            }
            if let Ok((wr, _)) = writer_task.await {
                reset(&rd.unsplit(wr));
            }
        }
    }
}

pub(crate) async fn stopping_of(watch: &mut Option<Watch>) {
    match watch {
        Some(w) => w.stopping().await,
        None => std::future::pending().await,
    }
}

/// `t + d`, or a year after `t` when that is not representable (a limit of
/// `Duration::MAX` for "none").
pub(crate) fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(t)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Ctx<'a, S> {
    shared: &'a Arc<Shared<S>>,
    state: &'a Locked,
    output: &'a Output,
    done: &'a mpsc::UnboundedSender<Ended>,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    refuse: bool,
}

/// What to do after an event, outside the lock.
enum After {
    Nothing,
    /// The input queue is over its bound: wait for the application.
    Wait(InputSender),
    /// A request was aborted: wait for its task to stop, then end it.
    Aborted(u16, JoinHandle<()>, Arc<Mutex<StderrState>>),
}

impl<S, B> Ctx<'_, S>
where
    // The Response projection ties B to S (an impl's parameters must be
    // constrained).
    S: Application<B> + Service<Request<Body>, Response = Response<B>>,
    B: AppBody,
{
    async fn process(
        &self,
        buf: &mut BytesMut,
        serial: &mut u64,
        started: &mut u64,
    ) -> Result<(), crate::proto::ProtocolError> {
        loop {
            let after = {
                let Ok(mut st) = self.state.lock() else {
                    return Ok(());
                };
                let event = st.proto.next_event(buf);
                let replies = st.proto.take_output();
                if !replies.is_empty() {
                    let _ = self.output.send_now(replies.freeze());
                }
                match event? {
                    None => return Ok(()),
                    Some(event) => self.event(&mut st, event, serial, started),
                }
            };
            match after {
                After::Nothing => {}
                After::Wait(queue) => queue.drained().await,
                After::Aborted(id, task, stderr) => {
                    let output = Out::Queue(self.output.clone());
                    let done = self.done.clone();
                    tokio::spawn(async move {
                        let _ = task.await;
                        end_request(&output, id, &stderr, 1);
                        let _ = done.send(Ended::Done);
                    });
                }
            }
        }
    }

    fn event(&self, st: &mut State, event: Event, serial: &mut u64, started: &mut u64) -> After {
        match event {
            Event::Begin { id, role, .. } => {
                let permit = if self.refuse {
                    None
                } else {
                    self.shared.capacity.clone().try_acquire_owned().ok()
                };
                match permit {
                    Some(permit) => {
                        *serial += 1;
                        let begun = st.head_since.unwrap_or_else(Instant::now);
                        st.slots.insert(
                            id,
                            Slot {
                                serial: *serial,
                                role,
                                begun,
                                stdin: None,
                                data: None,
                                task: None,
                                stderr: Arc::default(),
                                _permit: permit,
                            },
                        );
                    }
                    None => {
                        tracing::debug!(id, "FastCGI request refused: overloaded");
                        gateway_core::metrics::note(
                            self.shared.handler.metrics(),
                            gateway_core::Failure::Limit,
                        );
                        st.proto.reject(id, ProtocolStatus::Overloaded);
                        let replies = st.proto.take_output();
                        let _ = self.output.send_now(replies.freeze());
                        st.ended_one();
                    }
                }
                After::Nothing
            }
            Event::Params { id, params } => {
                st.head_since = None;
                let Some(slot) = st.slots.get_mut(&id) else {
                    return After::Nothing;
                };
                *started += 1;
                let body_timeout = self.shared.handler.limits().get_body_read_timeout();
                let (stdin_tx, stdin_rx) = input::channel(
                    input::declared_length(&params, b"CONTENT_LENGTH"),
                    body_timeout,
                );
                slot.stdin = Some(stdin_tx);
                let filter = if slot.role == Role::Filter {
                    let (tx, rx) = input::channel(
                        input::declared_length(&params, b"FCGI_DATA_LENGTH"),
                        body_timeout,
                    );
                    slot.data = Some(tx);
                    Some(FilterData::new(rx))
                } else {
                    None
                };
                let gw = FcgiGateway {
                    id,
                    role: slot.role,
                    params: Some(params),
                    stdin: Some(stdin_rx),
                    output: Out::Queue(self.output.clone()),
                    encoder: ResponseEncoder::new(id),
                    stderr_state: slot.stderr.clone(),
                    errors: self.shared.errors.clone(),
                    peer_addr: self.peer_addr,
                    local_addr: self.local_addr,
                };
                slot.task = Some(tokio::spawn(run_request(
                    self.shared.clone(),
                    self.state.clone(),
                    self.done.clone(),
                    gw,
                    slot.serial,
                    filter,
                )));
                After::Nothing
            }
            Event::Stdin { id, data } => push(st, id, data, false),
            Event::Data { id, data } => push(st, id, data, true),
            Event::StdinEnd { id } => {
                if let Some(q) = st.slots.get_mut(&id).and_then(|s| s.stdin.take()) {
                    q.finish();
                }
                After::Nothing
            }
            Event::DataEnd { id } => {
                if let Some(q) = st.slots.get_mut(&id).and_then(|s| s.data.take()) {
                    q.finish();
                }
                After::Nothing
            }
            Event::Abort { id } => {
                tracing::debug!(id, "FastCGI request aborted by the web server");
                st.proto.finish(id);
                st.ended_one();
                match st.slots.remove(&id) {
                    Some(Slot {
                        task: Some(task),
                        stderr,
                        ..
                    }) => {
                        task.abort();
                        After::Aborted(id, task, stderr)
                    }
                    Some(slot) => {
                        // Not started yet: answer at once.
                        end_request(&Out::Queue(self.output.clone()), id, &slot.stderr, 1);
                        let _ = self.done.send(Ended::Done);
                        After::Nothing
                    }
                    None => After::Nothing,
                }
            }
            Event::Rejected { id, status } => {
                tracing::debug!(id, ?status, "FastCGI request refused");
                st.ended_one();
                After::Nothing
            }
            _ => After::Nothing,
        }
    }
}

fn push(st: &mut State, id: u16, data: bytes::Bytes, is_data: bool) -> After {
    let Some(slot) = st.slots.get_mut(&id) else {
        return After::Nothing;
    };
    let q = if is_data { &slot.data } else { &slot.stdin };
    match q {
        Some(q) if q.push(data) && q.is_full() => After::Wait(q.clone()),
        _ => After::Nothing,
    }
}

/// Queues the end of request `id` (unless its error stream already ended).
pub(crate) fn end_request(output: &Out, id: u16, stderr: &Mutex<StderrState>, app_status: u32) {
    if let Ok(mut s) = stderr.lock()
        && !s.ended
    {
        s.ended = true;
        output.send_now(FcgiGateway::end_records(id, s.used, app_status));
    }
}

/// Runs the application for one request through the handler; a Filter
/// request's data stream goes into the request's extensions.
pub(crate) async fn run_app<S, B>(
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

async fn run_request<S, B>(
    shared: Arc<Shared<S>>,
    state: Locked,
    done: mpsc::UnboundedSender<Ended>,
    mut gw: FcgiGateway,
    serial: u64,
    filter: Option<FilterData>,
) where
    S: Application<B>,
    B: AppBody,
{
    let outcome = run_app(&shared, &mut gw, filter).await;
    let app_status = u32::from(!outcome.is_complete());
    // A response that failed after its head went out ends with appStatus 1,
    // or, when configured, with the connection reset and no end of the
    // response (what a crashed application does), which web servers pass on
    // to the client as a truncated response.
    let truncate = outcome.is_aborted() && shared.reset_on_abort;
    let id = gw.id;
    let output = gw.output.clone();
    let stderr = gw.stderr_state.clone();
    // Drop the request's input queue before ending it.
    drop(gw);
    let Ok(mut st) = state.lock() else { return };
    if st.slots.get(&id).is_some_and(|s| s.serial == serial) {
        if truncate {
            // The slot stays, so the driver sees when its input ends.
            if let Ok(mut s) = stderr.lock() {
                s.ended = true;
            }
            drop(st);
            let _ = done.send(Ended::Reset(id));
        } else {
            let stalled = st.slots.remove(&id).is_some_and(|slot| {
                [&slot.stdin, &slot.data]
                    .into_iter()
                    .flatten()
                    .any(InputSender::timed_out)
            });
            st.proto.finish(id);
            st.ended_one();
            end_request(&output, id, &stderr, app_status);
            drop(st);
            let _ = done.send(if stalled { Ended::Stalled } else { Ended::Done });
        }
    }
}

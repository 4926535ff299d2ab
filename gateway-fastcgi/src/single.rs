//! The driver of a connection that carries one request at a time (the
//! server does not multiplex, as nginx, Apache httpd, lighttpd and
//! `cgi-fcgi` expect).
//!
//! Everything happens in the connection's task: the request's handler
//! future is polled in the same `select!` as the socket reads, so no task is
//! spawned per request and no writer task or channel sits between the
//! application and the socket. The request's output is appended to the
//! connection's buffer ([`direct`](crate::direct)) and written when the
//! handler would block or ends, so a small response and its end records
//! leave in one write.
//!
//! While the handler runs, the loop still reads the connection: `FCGI_STDIN`
//! and `FCGI_DATA` go to the request's bounded queues (reading stops while
//! a queue is full), `FCGI_ABORT_REQUEST` drops the handler future and ends
//! the request, management records are answered, a `FCGI_BEGIN_REQUEST`
//! for another id is refused with `FCGI_CANT_MPX_CONN`, and the web server
//! closing the connection drops the handler future.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use gateway_core::server::{
    LINGER_TIME, Watch, linger_close_io, nothing_waiting_io, stall_timeout,
};
use gateway_core::{AppBody, Application, Body, Outcome};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tower::Service;

use crate::conn::{Shared, after, end_request, run_app, stopping_of};
use crate::direct::{self, Sink};
use crate::gateway::{FcgiGateway, Out, StderrState};
use crate::input::{self, FilterData, InputBody, InputSender};
use crate::proto::{Connection, Event, ProtocolError, ProtocolStatus, ResponseEncoder, Role};

/// A request begun and waiting for the end of its parameters.
struct Pending {
    id: u16,
    role: Role,
    permit: OwnedSemaphorePermit,
}

/// The request whose handler runs.
struct Running {
    id: u16,
    stdin: Option<InputSender>,
    data: Option<InputSender>,
    stderr: Arc<Mutex<StderrState>>,
    _permit: OwnedSemaphorePermit,
}

/// A request ready to run: its state in the driver, its gateway, and the
/// Filter role's data stream.
type Started = (Running, FcgiGateway, Option<FilterData>);

/// What the records read so far mean for the running request.
enum Step {
    /// Every complete record was handled.
    More,
    /// An input queue is over its bound: stop reading until it drains.
    Full(InputSender),
    /// The web server aborted the request.
    Aborted,
}

/// How the running request ended.
enum End {
    Done(Outcome),
    Aborted,
    /// The connection failed or broke the protocol.
    Broken,
}

/// Why the connection stops.
enum Stop {
    /// Write what is queued, then close (politely if input may follow).
    Close,
    /// Drop everything and close at once.
    Abort,
    /// Write what is queued, wait for the rest of request `.0`'s input
    /// (briefly), then reset the connection.
    Reset(u16),
}

struct Driver<T, S> {
    shared: Arc<Shared<S>>,
    io: Arc<direct::Shared<T>>,
    sink: Arc<dyn Sink>,
    out: Out,
    proto: Connection,
    buf: BytesMut,
    pending: Option<Pending>,
    started: u64,
    stopping: bool,
    /// When the connection last had no request: its start, or the end of
    /// the last request.
    idle_since: Instant,
    /// Between requests, when the first byte of the next request head
    /// arrived (the connection's start for a fresh connection): the whole
    /// head is due within `head_read_timeout` of it, however it trickles
    /// in. Management records do not move it.
    head_since: Option<Instant>,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
}

/// Serves one connection, one request at a time, until it closes.
pub(crate) async fn serve<T, S, B>(
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
    let limits = shared.handler.limits();
    let head_timeout = limits.get_head_read_timeout();
    let idle_timeout = limits.get_idle_timeout();
    let write_timeout = limits.get_write_timeout();
    let max_requests = limits.get_max_requests_per_connection();

    let io = Arc::new(direct::Shared::new(io));
    let sink: Arc<dyn Sink> = io.clone();
    let mut d = Driver {
        proto: Connection::new(&shared.config),
        shared,
        io,
        out: Out::Direct(sink.clone(), write_timeout),
        sink,
        buf: BytesMut::new(),
        pending: None,
        started: 0,
        stopping: watch.as_ref().is_some_and(Watch::is_stopping),
        idle_since: Instant::now(),
        head_since: Some(Instant::now()),
        peer_addr,
        local_addr,
    };
    let mut stopped = pin!(stopping_of(&mut watch));
    // One timer for the head-read and idle deadlines, moved only when the
    // deadline changes (a few times per request).
    let mut timer = pin!(tokio::time::sleep_until(
        d.idle_deadline(head_timeout, idle_timeout)
    ));
    // Whether the web server may still send input when the connection
    // closes (then the close drains it, so it does not become a reset).
    let mut input_open = true;
    let (mut stdin_open, mut data_open) = (false, false);

    let stop = 'conn: loop {
        // Between requests: wait for the next request's parameters.
        let ((mut run, gw, filter), mut leftover) = loop {
            match d.idle_events(max_requests) {
                Err(reason) => {
                    tracing::debug!(%reason, "FastCGI protocol error, closing the connection");
                    gateway_core::metrics::note(
                        d.shared.handler.metrics(),
                        gateway_core::Failure::Protocol,
                    );
                    break 'conn Stop::Abort;
                }
                Ok(Some(request)) => break request,
                Ok(None) => {}
            }
            let exhausted = max_requests.is_some_and(|m| d.started >= m);
            if d.proto.should_close()
                || ((d.stopping || exhausted) && d.proto.active_requests() == 0)
            {
                break 'conn Stop::Close;
            }
            input_open = true;
            let deadline = d.idle_deadline(head_timeout, idle_timeout);
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                r = write_out(&*d.sink, write_timeout), if d.sink.buffered() > 0 => {
                    if let Err(error) = r {
                        tracing::debug!(%error, "FastCGI write failed");
                        break 'conn Stop::Abort;
                    }
                }
                r = read(&d.io, &mut d.buf) => match r {
                    Ok(0) => {
                        tracing::debug!("FastCGI web server closed the connection");
                        break 'conn Stop::Abort;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "FastCGI read failed");
                        break 'conn Stop::Abort;
                    }
                    Ok(_) => {
                        d.head_since.get_or_insert_with(Instant::now);
                    }
                },
                () = &mut stopped, if !d.stopping => d.stopping = true,
                () = &mut timer => {
                    if d.head_since.is_some() {
                        tracing::debug!("FastCGI request head not received in time, closing");
                        gateway_core::metrics::note(d.shared.handler.metrics(), gateway_core::Failure::Timeout);
                        break 'conn Stop::Abort;
                    }
                    tracing::debug!("FastCGI connection idle, closing");
                    break 'conn Stop::Close;
                }
            }
        };

        // A request runs: poll its handler next to the connection.
        let id = run.id;
        let stderr = run.stderr.clone();
        let end = {
            let shared = d.shared.clone();
            // Boxed: the handler's future is large, and the connection's
            // future is moved whole when its task is spawned.
            let mut fut = Box::pin(async move {
                let mut gw = gw;
                run_app(&shared, &mut gw, filter).await
            });
            let mut full: Option<InputSender> = None;
            loop {
                if full.is_none() {
                    let handled = match leftover.take() {
                        Some(event) => match d.running_event(&mut run, event) {
                            Step::More => d.running_events(&mut run),
                            other => Ok(other),
                        },
                        None => d.running_events(&mut run),
                    };
                    match handled {
                        Err(reason) => {
                            tracing::debug!(%reason, "FastCGI protocol error, closing the connection");
                            gateway_core::metrics::note(
                                d.shared.handler.metrics(),
                                gateway_core::Failure::Protocol,
                            );
                            break End::Broken;
                        }
                        Ok(Step::Aborted) => break End::Aborted,
                        Ok(Step::Full(q)) => full = Some(q),
                        Ok(Step::More) => {}
                    }
                }
                tokio::select! {
                    biased;
                    outcome = &mut fut => break End::Done(outcome),
                    // Always polled after the handler, so output it
                    // appended before it blocked goes out now (a branch
                    // condition would be read only once, before the
                    // handler ran, and hold a streamed body to its end).
                    r = write_buffered(&*d.sink, write_timeout) => {
                        if let Err(error) = r {
                            tracing::debug!(%error, "FastCGI write failed");
                            break End::Broken;
                        }
                    }
                    () = drained(full.as_ref()), if full.is_some() => full = None,
                    r = read(&d.io, &mut d.buf), if full.is_none() => match r {
                        Ok(0) => {
                            tracing::debug!("FastCGI web server closed the connection");
                            break End::Broken;
                        }
                        Err(error) => {
                            tracing::debug!(%error, "FastCGI read failed");
                            break End::Broken;
                        }
                        Ok(_) => {}
                    },
                    () = &mut stopped, if !d.stopping => d.stopping = true,
                }
            }
            // Leaving this block drops the handler future: an aborted or
            // broken request's application is cancelled here.
        };
        (stdin_open, data_open) = (run.stdin.is_some(), run.data.is_some());
        input_open = stdin_open || data_open;
        // The body gave up waiting for the web server: what it sends next
        // is anyone's guess, so the connection ends with this request.
        let stalled = [&run.stdin, &run.data]
            .into_iter()
            .flatten()
            .any(InputSender::timed_out);
        drop(run);
        d.ended_one();
        match end {
            End::Broken => break 'conn Stop::Abort,
            End::Aborted => {
                tracing::debug!(id, "FastCGI request aborted by the web server");
                end_request(&d.out, id, &stderr, 1);
            }
            End::Done(outcome) => {
                if outcome.is_aborted() && d.shared.reset_on_abort {
                    tracing::debug!(
                        "FastCGI response failed after its head, resetting the connection"
                    );
                    if let Ok(mut s) = stderr.lock() {
                        s.ended = true;
                    }
                    break 'conn Stop::Reset(id);
                }
                d.proto.finish(id);
                end_request(&d.out, id, &stderr, u32::from(!outcome.is_complete()));
                if stalled {
                    tracing::debug!("FastCGI input stalled, closing the connection");
                    break 'conn Stop::Close;
                }
            }
        }
    };

    match stop {
        Stop::Abort => drop(d.io.take()),
        Stop::Close => {
            let written = write_out(&*d.sink, write_timeout).await.is_ok();
            let Some(mut io) = d.io.take() else { return };
            // With all of the input read and nothing more arriving, a plain
            // close cannot turn into a reset.
            if written && (input_open || !d.buf.is_empty() || !nothing_waiting_io(&mut io).await) {
                linger_close_io(io, write_timeout).await;
            }
        }
        Stop::Reset(id) => {
            let _ = write_out(&*d.sink, write_timeout).await;
            // A reset while the web server is still sending the request
            // (Apache sends the end of FCGI_STDIN after the parameters)
            // fails its send, and it answers 503 instead of passing on the
            // partial response.
            let skip = d.skip_input(id, stdin_open, data_open);
            let _ = tokio::time::timeout(LINGER_TIME, skip).await;
            if let Some(io) = d.io.take() {
                reset(&io);
            }
        }
    }
}

impl<T, S, B> Driver<T, S>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    // The Response projection ties B to S (an impl's parameters must be
    // constrained).
    S: Application<B> + Service<Request<Body>, Response = Response<B>>,
    B: AppBody,
{
    /// When waiting between requests ends: `head_timeout` after the first
    /// byte of the next request head, or `idle_timeout` after the last
    /// request when no such byte has arrived.
    fn idle_deadline(&self, head_timeout: Duration, idle_timeout: Duration) -> Instant {
        match self.head_since {
            Some(t) => after(t, head_timeout),
            None => after(self.idle_since, idle_timeout),
        }
    }

    /// A request was ended or refused: the connection is idle from now on,
    /// and bytes of the next request head already read start its clock.
    fn ended_one(&mut self) {
        let now = Instant::now();
        self.idle_since = now;
        self.head_since = (!self.buf.is_empty()).then_some(now);
    }

    /// Moves the protocol layer's replies to the output buffer.
    fn replies(&mut self) {
        if self.proto.has_output() {
            let replies = self.proto.take_output();
            self.io.push(&replies);
        }
    }

    /// Handles the records read so far while no handler runs; returns the
    /// next request once its parameters are complete, with the event that
    /// followed them if one was taken already.
    fn idle_events(
        &mut self,
        max_requests: Option<u64>,
    ) -> Result<Option<(Started, Option<Event>)>, ProtocolError> {
        loop {
            let event = self.proto.next_event(&mut self.buf);
            self.replies();
            let Some(event) = event? else {
                return Ok(None);
            };
            match event {
                Event::Begin { id, role, .. } => {
                    let refuse = self.stopping || max_requests.is_some_and(|m| self.started >= m);
                    let permit = if refuse {
                        None
                    } else {
                        self.shared.capacity.clone().try_acquire_owned().ok()
                    };
                    match permit {
                        Some(permit) => {
                            self.pending = Some(Pending { id, role, permit });
                        }
                        None => {
                            tracing::debug!(id, "FastCGI request refused: overloaded");
                            gateway_core::metrics::note(
                                self.shared.handler.metrics(),
                                gateway_core::Failure::Limit,
                            );
                            self.proto.reject(id, ProtocolStatus::Overloaded);
                            self.replies();
                            self.ended_one();
                        }
                    }
                }
                Event::Params { id, params } => {
                    let Some(p) = self.pending.take_if(|p| p.id == id) else {
                        continue;
                    };
                    self.started += 1;
                    self.head_since = None;
                    // A request without a body usually ends its FCGI_STDIN
                    // in the same read: then its body needs no queue.
                    let next = self.proto.next_event(&mut self.buf);
                    self.replies();
                    return Ok(Some(match next? {
                        Some(Event::StdinEnd { id: i }) if i == id => {
                            (self.start(p, params, true), None)
                        }
                        other => (self.start(p, params, false), other),
                    }));
                }
                Event::Abort { id } => {
                    tracing::debug!(id, "FastCGI request aborted by the web server");
                    self.proto.finish(id);
                    if self.pending.take_if(|p| p.id == id).is_some() {
                        // Not started yet: answer at once.
                        self.out.send_now(FcgiGateway::end_records(id, false, 1));
                        self.ended_one();
                    }
                }
                Event::Rejected { id, status } => {
                    tracing::debug!(id, ?status, "FastCGI request refused");
                    if self.pending.is_none() {
                        self.ended_one();
                    }
                }
                _ => {}
            }
        }
    }

    /// The request's input queues and gateway; `stdin_ended`: its
    /// FCGI_STDIN has already ended, empty.
    fn start(&mut self, p: Pending, params: crate::proto::Params, stdin_ended: bool) -> Started {
        let body_timeout = self.shared.handler.limits().get_body_read_timeout();
        let (stdin_tx, stdin_rx) = if stdin_ended {
            (
                None,
                InputBody::ended(input::declared_length(&params, b"CONTENT_LENGTH")),
            )
        } else {
            let (tx, rx) = input::channel(
                input::declared_length(&params, b"CONTENT_LENGTH"),
                body_timeout,
            );
            (Some(tx), rx)
        };
        let (data, filter) = if p.role == Role::Filter {
            let (tx, rx) = input::channel(
                input::declared_length(&params, b"FCGI_DATA_LENGTH"),
                body_timeout,
            );
            (Some(tx), Some(FilterData::new(rx)))
        } else {
            (None, None)
        };
        let stderr: Arc<Mutex<StderrState>> = Arc::default();
        let gw = FcgiGateway {
            id: p.id,
            role: p.role,
            params: Some(params),
            stdin: Some(stdin_rx),
            output: self.out.clone(),
            encoder: ResponseEncoder::new(p.id),
            stderr_state: stderr.clone(),
            errors: self.shared.errors.clone(),
            peer_addr: self.peer_addr,
            local_addr: self.local_addr,
        };
        let run = Running {
            id: p.id,
            stdin: stdin_tx,
            data,
            stderr,
            _permit: p.permit,
        };
        (run, gw, filter)
    }

    /// Reads and discards input until request `id`'s open input streams
    /// have ended (or the connection fails).
    async fn skip_input(&mut self, id: u16, mut stdin: bool, mut data: bool) {
        while stdin || data {
            loop {
                match self.proto.next_event(&mut self.buf) {
                    Ok(Some(Event::StdinEnd { id: i })) if i == id => stdin = false,
                    Ok(Some(Event::DataEnd { id: i })) if i == id => data = false,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            if !(stdin || data) {
                return;
            }
            match read(&self.io, &mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Handles the records read so far while the handler of `run` runs.
    fn running_events(&mut self, run: &mut Running) -> Result<Step, ProtocolError> {
        loop {
            let event = self.proto.next_event(&mut self.buf);
            self.replies();
            let Some(event) = event? else {
                return Ok(Step::More);
            };
            match self.running_event(run, event) {
                Step::More => {}
                step => return Ok(step),
            }
        }
    }

    /// Handles one event while the handler of `run` runs.
    fn running_event(&mut self, run: &mut Running, event: Event) -> Step {
        match event {
            Event::Stdin { id, data } if id == run.id => {
                if let Some(q) = push(run.stdin.as_ref(), data) {
                    return Step::Full(q);
                }
            }
            Event::Data { id, data } if id == run.id => {
                if let Some(q) = push(run.data.as_ref(), data) {
                    return Step::Full(q);
                }
            }
            Event::StdinEnd { id } if id == run.id => {
                if let Some(q) = run.stdin.take() {
                    q.finish();
                }
            }
            Event::DataEnd { id } if id == run.id => {
                if let Some(q) = run.data.take() {
                    q.finish();
                }
            }
            Event::Abort { id } if id == run.id => {
                self.proto.finish(id);
                return Step::Aborted;
            }
            Event::Rejected { id, status } => {
                tracing::debug!(id, ?status, "FastCGI request refused");
            }
            _ => {}
        }
        Step::More
    }
}

/// Writes the output buffer out, failing once the web server has taken
/// nothing for `timeout`.
async fn write_out(sink: &dyn Sink, timeout: Duration) -> std::io::Result<()> {
    stall_timeout(timeout, std::future::poll_fn(|cx| sink.poll_write_out(cx))).await
}

/// Writes the buffer out once it holds something. Waits without a waker
/// while it is empty: only the handler polled in the same task fills it,
/// and every wake-up of the handler polls this again.
async fn write_buffered(sink: &dyn Sink, timeout: Duration) -> std::io::Result<()> {
    std::future::poll_fn(|_| {
        if sink.buffered() > 0 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    write_out(sink, timeout).await
}

async fn read<T>(io: &direct::Shared<T>, buf: &mut BytesMut) -> std::io::Result<usize>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    std::future::poll_fn(|cx| io.poll_read(cx, buf)).await
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

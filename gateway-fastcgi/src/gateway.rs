//! The [`Gateway`] of one FastCGI request: parameters in, `FCGI_STDOUT` and
//! `FCGI_STDERR` records out.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use gateway_core::{Body, Environ, ErrorSink, ErrorStream, Gateway, GatewayInfo, Protocol};

use crate::input::InputBody;
use crate::proto::record::RecordType;
use crate::proto::{
    Params, ProtocolStatus, ResponseEncoder, Role, encode_end_request, encode_stream,
    encode_stream_end,
};
use crate::transport::{HIGH_WATER, Sink};

/// Where one request's records go: the connection's output buffer, until
/// the request has ended. Cheap to clone (the request's gateway and its
/// error streams hold clones, as does the dispatcher).
#[derive(Clone)]
pub(crate) struct Out {
    state: Arc<OutState>,
}

/// One request's output: the connection's buffer, the request's id, and
/// what is checked and set under the buffer's lock, so that nothing of a
/// request follows its `FCGI_END_REQUEST`, even from an application still
/// running on another thread when it is cancelled. It is also the
/// request's error stream (`FCGI_STDERR` records), so that one allocation,
/// taken back for the connection's next request, serves both.
struct OutState {
    sink: Arc<dyn Sink>,
    id: u16,
    stderr_used: AtomicBool,
    ended: AtomicBool,
}

impl Out {
    pub(crate) fn new(sink: Arc<dyn Sink>, id: u16) -> Out {
        Out {
            state: Arc::new(OutState {
                sink,
                id,
                stderr_used: AtomicBool::new(false),
                ended: AtomicBool::new(false),
            }),
        }
    }

    /// An `Out` for request `id` on the connection of `spare` (a request's
    /// `Out` that has ended), reusing its allocation when nothing else
    /// holds it any more (the request's gateway and error streams are
    /// gone); otherwise a new one.
    pub(crate) fn reuse(mut spare: Out, id: u16) -> Out {
        match Arc::get_mut(&mut spare.state) {
            Some(state) => {
                state.id = id;
                *state.stderr_used.get_mut() = false;
                *state.ended.get_mut() = false;
                spare
            }
            None => Out::new(spare.state.sink.clone(), id),
        }
    }

    /// The request's error stream: `FCGI_STDERR` records.
    fn error_stream(&self) -> ErrorStream {
        ErrorStream::from_shared(self.state.clone())
    }

    /// Appends records of the request, unless it has ended; whether they
    /// were appended.
    fn append(&self, encode: &mut dyn FnMut(&mut BytesMut)) -> bool {
        self.state.append(encode)
    }

    /// Appends `data` as `FCGI_STDOUT` records; `None` when they could not
    /// be, else whether the buffer then holds more than [`HIGH_WATER`]
    /// bytes (found under the same lock).
    fn stdout(&self, encoder: &mut ResponseEncoder, data: &[u8]) -> Option<bool> {
        let mut full = false;
        self.append(&mut |out| {
            encoder.stdout(out, data);
            full = out.len() > HIGH_WATER;
        })
        .then_some(full)
    }

    /// Ends the response: empty `FCGI_STDOUT`, empty `FCGI_STDERR` if it
    /// was used, `FCGI_END_REQUEST` with `app_status`. Nothing of the
    /// request is appended after it. Does nothing the second time.
    pub(crate) fn end(&self, app_status: u32) {
        let state = &*self.state;
        let id = state.id;
        state.sink.append(&mut |out| {
            if !state.ended.swap(true, Ordering::AcqRel) {
                encode_stream_end(out, RecordType::Stdout, id);
                if state.stderr_used.load(Ordering::Acquire) {
                    encode_stream_end(out, RecordType::Stderr, id);
                }
                encode_end_request(out, id, app_status, ProtocolStatus::RequestComplete);
            }
        });
    }

    /// Cuts the response off where it is: nothing more of the request is
    /// appended, not even its end (the connection is to be reset).
    pub(crate) fn cut(&self) {
        let ended = &self.state.ended;
        self.state
            .sink
            .append(&mut |_| ended.store(true, Ordering::Release));
    }

    /// Whether the connection can still take the request's output.
    fn is_open(&self) -> bool {
        !self.state.ended.load(Ordering::Acquire) && self.state.sink.append(&mut |_| {})
    }

    /// Waits until the connection's buffer has room (the web server read
    /// enough of it).
    async fn room(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.state.sink.poll_room(cx)).await
    }
}

impl OutState {
    /// Appends records of the request, unless it has ended; whether they
    /// were appended.
    fn append(&self, encode: &mut dyn FnMut(&mut BytesMut)) -> bool {
        let ended = &self.ended;
        let mut appended = false;
        let open = self.sink.append(&mut |out| {
            if !ended.load(Ordering::Acquire) {
                encode(out);
                appended = true;
            }
        });
        open && appended
    }
}

/// The request's error stream: each message an `FCGI_STDERR` record.
impl ErrorSink for OutState {
    fn write(&self, msg: &[u8]) {
        if msg.is_empty() {
            // An empty record would end the stream.
            return;
        }
        let used = &self.stderr_used;
        let id = self.id;
        self.append(&mut |out| {
            used.store(true, Ordering::Release);
            encode_stream(out, RecordType::Stderr, id, msg);
        });
    }
}

/// One request's gateway.
pub(crate) struct FcgiGateway {
    pub(crate) id: u16,
    pub(crate) role: Role,
    pub(crate) params: Option<Params>,
    /// Whether `params` has an `FCGI_ROLE` of its own.
    pub(crate) role_given: bool,
    pub(crate) stdin: Option<InputBody>,
    pub(crate) output: Out,
    pub(crate) encoder: ResponseEncoder,
    /// Where the error stream goes instead of `FCGI_STDERR` records.
    pub(crate) errors: Option<ErrorStream>,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
    /// Whether the last append of the response found the connection open
    /// (what a flush right after it need not ask again).
    pub(crate) open: bool,
}

impl std::fmt::Debug for FcgiGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcgiGateway")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "FastCGI connection closed")
}

impl FcgiGateway {
    /// Writes `data` as the response's `FCGI_STDOUT` records.
    async fn write_slice(&mut self, data: &[u8]) -> io::Result<()> {
        let full = self.append(data);
        self.wait_room(full).await
    }

    /// Appends `data` to the connection's output as `FCGI_STDOUT` records:
    /// `None` when the connection is closed, else whether the output is
    /// over its high-water mark.
    fn append(&mut self, data: &[u8]) -> Option<bool> {
        if data.is_empty() {
            return Some(false);
        }
        let full = self.output.stdout(&mut self.encoder, data);
        self.open = full.is_some();
        full
    }

    /// Waits, after an append, until the output has room again.
    async fn wait_room(&self, full: Option<bool>) -> io::Result<()> {
        match full {
            None => Err(closed()),
            Some(true) => self.output.room().await,
            Some(false) => Ok(()),
        }
    }
}

impl Gateway for FcgiGateway {
    // The default `write_head` writes the pipeline's Content-Length.
    const LENGTH_APART: bool = true;

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.write_slice(&data).await
    }

    async fn write_buf(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        // Copied into the connection's output records.
        self.write_slice(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        // The dispatcher writes whenever output is buffered. Right after an
        // append that found the connection open, it is not asked again.
        if std::mem::take(&mut self.open) || self.output.is_open() {
            Ok(())
        } else {
            Err(closed())
        }
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        match self.stdin.take() {
            Some(body) if self.role != Role::Authorizer && !body.is_empty_ended() => {
                Body::new(body)
            }
            _ => Body::empty(),
        }
    }

    fn stderr(&self) -> ErrorStream {
        match &self.errors {
            Some(errors) => errors.clone(),
            None => self.output.error_stream(),
        }
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        let role = self.role.as_str();
        let Some(params) = self.params.take() else {
            environ.set_default("FCGI_ROLE", role);
            return;
        };
        // Whether FCGI_ROLE is to be added was found with the request's
        // length, in the parameters' offsets, rather than in the environ.
        let given = self.role_given;
        let was_empty = environ.is_empty();
        let (buf, spans) = params.into_spans();
        environ.extend_replacing_spans(&buf, spans);
        if given {
            return;
        }
        if was_empty {
            // The environ holds the parameters alone, none of them FCGI_ROLE.
            environ.push("FCGI_ROLE", role);
        } else {
            environ.set_default("FCGI_ROLE", role);
        }
    }

    fn info(&self) -> GatewayInfo {
        GatewayInfo::new(Protocol::FastCgi)
            .with_multiprocess(false)
            .with_addrs(self.peer_addr, self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;

    fn gateway(role: Role, params: &[(&str, &str)]) -> FcgiGateway {
        let (io, _) = tokio::io::duplex(64);
        FcgiGateway {
            id: 1,
            role,
            role_given: params.iter().any(|(n, _)| *n == "FCGI_ROLE"),
            params: Some(Params::from_pairs(params.iter().copied()).unwrap()),
            stdin: None,
            output: Out::new(Arc::new(Transport::new(io)), 1),
            encoder: ResponseEncoder::new(1),
            errors: None,
            peer_addr: None,
            local_addr: None,
            open: false,
        }
    }

    fn roles(env: &Environ) -> Vec<&[u8]> {
        env.iter()
            .filter(|(n, _)| *n == b"FCGI_ROLE")
            .map(|(_, v)| v)
            .collect()
    }

    /// FCGI_ROLE is added once, after the parameters, unless the
    /// parameters or the base environ have it already.
    #[tokio::test]
    async fn fcgi_role_is_set_once() {
        let mut env = Environ::new();
        gateway(
            Role::Authorizer,
            &[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/a")],
        )
        .add_cgi_vars(&mut env);
        assert_eq!(roles(&env), [b"AUTHORIZER"]);
        assert_eq!(env.iter().last().map(|(n, _)| n), Some(&b"FCGI_ROLE"[..]));
        assert_eq!(env.get("PATH_INFO"), Some(&b"/a"[..]));

        let mut env = Environ::new();
        gateway(Role::Responder, &[("FCGI_ROLE", "SENT"), ("A", "1")]).add_cgi_vars(&mut env);
        assert_eq!(roles(&env), [b"SENT"]);
        assert_eq!(env.len(), 2);

        let mut env: Environ = [("FCGI_ROLE", "BASE")].into_iter().collect();
        gateway(Role::Filter, &[("A", "1")]).add_cgi_vars(&mut env);
        assert_eq!(roles(&env), [b"BASE"]);

        let mut env: Environ = [("FCGI_ROLE", "BASE")].into_iter().collect();
        gateway(Role::Filter, &[("FCGI_ROLE", "SENT")]).add_cgi_vars(&mut env);
        assert_eq!(roles(&env), [b"SENT"]);

        let mut env: Environ = [("B", "2")].into_iter().collect();
        gateway(Role::Filter, &[("A", "1")]).add_cgi_vars(&mut env);
        assert_eq!(roles(&env), [b"FILTER"]);
        assert_eq!(env.len(), 3);
    }

    /// A request's error stream writes `FCGI_STDERR` records of that
    /// request (an empty message writes none: it would end the stream),
    /// and is the request's output state itself: once every clone is gone,
    /// the connection's next request takes the same allocation back; while
    /// the application keeps one, the next request gets a new one and the
    /// kept stream still names its own request.
    #[tokio::test]
    async fn error_stream_shares_the_request_output() {
        let (io, _) = tokio::io::duplex(64);
        let sink: Arc<dyn Sink> = Arc::new(Transport::new(io));
        let out = Out::new(sink.clone(), 3);
        let errors = out.error_stream();
        errors.write(b"");
        assert_eq!(sink.buffered(), 0);
        errors.write(b"odd");
        let mut expected = BytesMut::new();
        encode_stream(&mut expected, RecordType::Stderr, 3, b"odd");
        assert_eq!(sink.buffered(), expected.len());
        assert!(out.state.stderr_used.load(Ordering::Acquire));

        let at = Arc::as_ptr(&out.state);
        drop(errors);
        out.end(0);
        let next = Out::reuse(out, 4);
        assert_eq!(Arc::as_ptr(&next.state), at, "allocation taken back");
        assert_eq!(next.state.id, 4);
        assert!(!next.state.stderr_used.load(Ordering::Acquire));
        assert!(!next.state.ended.load(Ordering::Acquire));

        let kept = next.error_stream();
        next.end(0);
        let third = Out::reuse(next, 5);
        assert_ne!(
            Arc::as_ptr(&third.state),
            at,
            "still held by the application"
        );
        assert_eq!(third.state.id, 5);
        let before = sink.buffered();
        // The kept stream's request has ended: nothing more of it goes out.
        kept.write(b"late");
        assert_eq!(sink.buffered(), before);
    }
}

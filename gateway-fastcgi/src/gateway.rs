//! The [`Gateway`] of one FastCGI request: parameters in, `FCGI_STDOUT` and
//! `FCGI_STDERR` records out.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::server::stall_timeout;
use gateway_core::{Body, Environ, ErrorStream, Gateway, GatewayInfo, Protocol};

use crate::direct::{HIGH_WATER, Sink};
use crate::input::InputBody;
use crate::proto::record::RecordType;
use crate::proto::{
    Params, ProtocolStatus, ResponseEncoder, Role, encode_end_request, encode_stream,
    encode_stream_end,
};
use crate::writer::Output;

/// Whether a request's error stream was used, and whether the request has
/// ended (after which its error stream writes nothing).
#[derive(Debug, Default)]
pub(crate) struct StderrState {
    pub(crate) used: bool,
    pub(crate) ended: bool,
}

/// Where a request's records go.
#[derive(Clone)]
pub(crate) enum Out {
    /// To the connection's writer task (multiplexed connections).
    Queue(Output),
    /// Straight into the connection's output buffer (one request at a
    /// time); `Duration` bounds each wait for the web server to read.
    Direct(Arc<dyn Sink>, Duration),
}

impl Out {
    /// Queues records without waiting (control records, the error stream).
    pub(crate) fn send_now(&self, bytes: Bytes) {
        match self {
            Out::Queue(q) => {
                let _ = q.send_now(bytes);
            }
            Out::Direct(sink, _) => {
                sink.append(&mut |out| out.extend_from_slice(&bytes));
            }
        }
    }
}

/// One request's gateway.
pub(crate) struct FcgiGateway {
    pub(crate) id: u16,
    pub(crate) role: Role,
    pub(crate) params: Option<Params>,
    pub(crate) stdin: Option<InputBody>,
    pub(crate) output: Out,
    pub(crate) encoder: ResponseEncoder,
    pub(crate) stderr_state: Arc<Mutex<StderrState>>,
    /// Where the error stream goes instead of `FCGI_STDERR` records.
    pub(crate) errors: Option<ErrorStream>,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for FcgiGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcgiGateway")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl FcgiGateway {
    /// The records that end the response: empty `FCGI_STDOUT`, empty
    /// `FCGI_STDERR` if it was used, `FCGI_END_REQUEST`.
    pub(crate) fn end_records(id: u16, stderr_used: bool, app_status: u32) -> Bytes {
        let mut out = BytesMut::with_capacity(32);
        encode_stream_end(&mut out, RecordType::Stdout, id);
        if stderr_used {
            encode_stream_end(&mut out, RecordType::Stderr, id);
        }
        encode_end_request(&mut out, id, app_status, ProtocolStatus::RequestComplete);
        out.freeze()
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "FastCGI connection closed")
}

impl Gateway for FcgiGateway {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        match &self.output {
            Out::Queue(q) => {
                let mut buf = BytesMut::with_capacity(data.len() + 16);
                self.encoder.stdout(&mut buf, &data);
                q.send(buf.freeze()).await
            }
            Out::Direct(sink, timeout) => {
                let encoder = &mut self.encoder;
                if !sink.append(&mut |out| encoder.stdout(out, &data)) {
                    return Err(closed());
                }
                if sink.buffered() >= HIGH_WATER {
                    let wait = std::future::poll_fn(|cx| sink.poll_write_out(cx));
                    return stall_timeout(*timeout, wait).await;
                }
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        // The writer task flushes whenever its queue runs empty; the direct
        // driver writes whenever the request's future would block or ends.
        let gone = match &self.output {
            Out::Queue(q) => q.is_closed(),
            Out::Direct(sink, _) => !sink.append(&mut |_| {}),
        };
        if gone {
            return Err(closed());
        }
        Ok(())
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        match self.stdin.take() {
            Some(body) if self.role != Role::Authorizer => Body::new(body),
            _ => Body::empty(),
        }
    }

    fn stderr(&self) -> ErrorStream {
        match &self.errors {
            Some(errors) => errors.clone(),
            None => {
                let output = self.output.clone();
                let state = self.stderr_state.clone();
                let id = self.id;
                ErrorStream::new(move |msg| {
                    if msg.is_empty() {
                        return;
                    }
                    let mut buf = BytesMut::with_capacity(msg.len() + 16);
                    encode_stream(&mut buf, RecordType::Stderr, id, msg);
                    if let Ok(mut state) = state.lock() {
                        // Queued under the lock that also guards the end of
                        // the request, so nothing follows FCGI_END_REQUEST.
                        if !state.ended {
                            state.used = true;
                            output.send_now(buf.freeze());
                        }
                    }
                })
            }
        }
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        if let Some(params) = self.params.take() {
            environ.extend_replacing(params.into_vec());
        }
        environ.set_default("FCGI_ROLE", self.role.as_str());
    }

    fn info(&self) -> GatewayInfo {
        GatewayInfo::new(Protocol::FastCgi)
            .with_multiprocess(false)
            .with_addrs(self.peer_addr, self.local_addr)
    }
}

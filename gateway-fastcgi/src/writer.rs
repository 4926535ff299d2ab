//! The connection's single writer: every record leaves through one task, so
//! records of different requests never interleave mid-record, and cancelling
//! a request's application can never leave half a record on the wire.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::server::stall_timeout;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};

/// Most response bytes queued for the writer at once, across the requests of
/// one connection; an application writing faster than the web server reads
/// waits for room.
const WINDOW: usize = 256 * 1024;

/// Most bytes gathered from the queue into one write.
const GATHER: usize = 64 * 1024;

#[derive(Debug)]
struct Out {
    bytes: Bytes,
    permits: u32,
}

/// A handle to queue whole records for the writer task. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    tx: mpsc::UnboundedSender<Out>,
    window: Arc<Semaphore>,
}

impl Output {
    /// Queues records, waiting for room in the window first.
    pub(crate) async fn send(&self, bytes: Bytes) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let want = u32::try_from(bytes.len().min(WINDOW)).unwrap_or(u32::MAX);
        let permit = self.window.acquire_many(want).await.map_err(|_| closed())?;
        permit.forget();
        self.tx
            .send(Out {
                bytes,
                permits: want,
            })
            .map_err(|_| closed())
    }

    /// Queues records without waiting: control records and the small,
    /// synchronous error-stream writes.
    pub(crate) fn send_now(&self, bytes: Bytes) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Out { bytes, permits: 0 })
            .map_err(|_| closed())
    }

    /// Whether the writer is gone (the connection failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "FastCGI connection closed")
}

/// Starts the writer for `stream`; the future ends with the writer's result
/// once every handle is dropped (after writing everything queued) or a write
/// fails or takes longer than `write_timeout`. The stream is handed back so
/// the caller can shut it down.
pub(crate) fn writer<W>(
    stream: W,
    write_timeout: Duration,
) -> (Output, impl Future<Output = (W, io::Result<()>)>)
where
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let window = Arc::new(Semaphore::new(WINDOW));
    let output = Output {
        tx,
        window: window.clone(),
    };
    (output, run(stream, rx, window, write_timeout))
}

async fn run<W>(
    mut stream: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    window: Arc<Semaphore>,
    write_timeout: Duration,
) -> (W, io::Result<()>)
where
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut permits = first.permits as usize;
        let result = if first.bytes.len() >= GATHER {
            stall_timeout(write_timeout, stream.write_all(&first.bytes)).await
        } else {
            buf.extend_from_slice(&first.bytes);
            while buf.len() < GATHER {
                match rx.try_recv() {
                    Ok(next) => {
                        permits += next.permits as usize;
                        buf.extend_from_slice(&next.bytes);
                    }
                    Err(_) => break,
                }
            }
            let r = stall_timeout(write_timeout, stream.write_all(&buf)).await;
            buf.clear();
            r
        };
        window.add_permits(permits);
        if let Err(e) = result {
            window.close();
            rx.close();
            return (stream, Err(e));
        }
        if rx.is_empty() {
            if let Err(e) = stall_timeout(write_timeout, stream.flush()).await {
                window.close();
                rx.close();
                return (stream, Err(e));
            }
        }
    }
    window.close();
    let r = stall_timeout(write_timeout, stream.flush()).await;
    (stream, r)
}

//! What the fuzz targets share: the runtime they run requests on and a peer
//! that feeds a connection its bytes in pieces and reads all of its answer.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use gateway_core::server::{Connection, Shutdown, Stream};
use gateway_core::{Environ, Limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;

/// One current-thread runtime per fuzzing process, its clock paused: the
/// servers' timeouts pass at once when nothing else can run. Timers only:
/// the connections run over in-memory pipes, so no I/O driver (and no
/// `epoll_wait` each time the runtime parks).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

/// Writes `wire` to `wr` in pieces whose sizes come from `sizes` (so a
/// record or header is also cut at every place), letting the other side run
/// after each piece, then shuts the write side;
/// meanwhile reads everything from `rd` until it ends. Panics if the answer
/// grows past `cap` bytes or the exchange never ends.
pub async fn exchange<R, W>(mut rd: R, mut wr: W, wire: &[u8], sizes: u8, cap: usize) -> Vec<u8>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let write = async {
        let mut rest = wire;
        let mut step = 0u32;
        while !rest.is_empty() {
            step += 1;
            let size = usize::from(sizes.rotate_left(step % 8)) + 1;
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            if wr.write_all(piece).await.is_err() {
                return;
            }
            // Lets the server read this piece before the next is written,
            // so that it sees the pieces one by one.
            tokio::task::yield_now().await;
        }
        let _ = wr.shutdown().await;
    };
    let read = async {
        let mut out = Vec::new();
        while let Ok(n) = rd.read_buf(&mut out).await {
            if n == 0 {
                break;
            }
            assert!(out.len() < cap, "unbounded output");
        }
        out
    };
    let ((), out) = tokio::time::timeout(Duration::from_secs(3600), async {
        tokio::join!(write, read)
    })
    .await
    .expect("the connection ends");
    out
}

/// Splits a fuzz input into an environ and a body: lines (`\n`) of
/// `NAME=VALUE` (a later value replaces an earlier one, as every backend
/// does), then a line that is exactly `--` and the body.
pub fn environ_and_body(input: &[u8]) -> (Environ, Bytes) {
    let mut env = Environ::new();
    let mut rest = input;
    loop {
        let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if line == b"--" {
            return (env, Bytes::copy_from_slice(tail.unwrap_or_default()));
        }
        if !line.is_empty() {
            let (name, value) = match line.iter().position(|&b| b == b'=') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &b""[..]),
            };
            env.insert(Bytes::copy_from_slice(name), Bytes::copy_from_slice(value));
        }
        match tail {
            Some(t) => rest = t,
            None => return (env, Bytes::new()),
        }
    }
}

/// The limits a connection target runs with: short idle and head
/// timeouts (time runs fast), and from the `options` byte a small head
/// limit (bit 2) and a small body limit (bit 4).
pub fn fuzz_limits(options: u8) -> Limits {
    let mut limits = Limits::default();
    limits
        .idle_timeout(Duration::from_millis(50))
        .head_read_timeout(Duration::from_millis(50));
    if options & 2 != 0 {
        limits.max_head_len(256);
    }
    if options & 4 != 0 {
        limits.max_body_len(Some(16));
    }
    limits
}

/// A connection over an in-memory pipe, watching `shutdown`: the same
/// driver as over a socket, without a system call for every piece. The
/// other end is the client's.
pub fn in_memory_connection(shutdown: &Shutdown) -> (DuplexStream, Connection) {
    let (client, conn) = tokio::io::duplex(64 * 1024);
    (
        client,
        Connection::new(Stream::Duplex(conn), shutdown.watch()),
    )
}

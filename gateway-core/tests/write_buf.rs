//! How the pipeline hands over the bytes it gathered: a backend that copies
//! what it writes takes them from the pipeline's buffer
//! (`Gateway::write_buf`), and the buffer's memory is kept for the next
//! response on the thread; a backend that keeps what it is given gets them
//! as `Bytes` through `Gateway::write`.

mod common;

use std::io;

use bytes::{Bytes, BytesMut};
use common::*;
use gateway_core::{Body, Environ, ErrorStream, Gateway, GatewayInfo, Handler, Protocol};

/// A backend that copies what it writes, noting where each buffer it was
/// handed lives.
#[derive(Default)]
struct Copier {
    env: Environ,
    out: Vec<u8>,
    /// The address of each buffer `write_buf` copied from.
    buffers: Vec<usize>,
    /// The capacity of each buffer `write_buf` copied from.
    capacities: Vec<usize>,
    /// How many times `write` was called.
    writes: usize,
}

impl Gateway for Copier {
    const LENGTH_APART: bool = true;

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.writes += 1;
        self.out.extend_from_slice(&data);
        Ok(())
    }

    async fn write_buf(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        self.buffers.push(buf.as_ptr() as usize);
        self.capacities.push(buf.capacity());
        self.out.extend_from_slice(buf);
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        Body::empty()
    }

    fn stderr(&self) -> ErrorStream {
        ErrorStream::null()
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        environ.extend_from(&self.env);
    }

    fn info(&self) -> GatewayInfo {
        GatewayInfo::new(Protocol::Other("copier"))
    }
}

/// The capacity of the last buffer seen.
fn held_capacity(seen: &[(usize, usize)]) -> Option<&usize> {
    seen.last().map(|(_, capacity)| capacity)
}

const HELLO: &[u8] =
    b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

/// The head and a small body reach a copying backend through `write_buf`,
/// in one call; `write` is not used.
#[tokio::test(flavor = "current_thread")]
async fn a_copying_backend_gets_the_gathered_bytes_through_write_buf() {
    let app = respond(|| response(Body::from("hello"), &[("content-type", "text/plain")]));
    let mut gw = Copier {
        env: testing_env(),
        ..Copier::default()
    };
    let outcome = Handler::new().run(&mut gw, app).await;
    assert!(outcome.is_complete());
    assert_eq!(gw.out, HELLO);
    assert_eq!(gw.buffers.len(), 1);
    assert_eq!(gw.writes, 0);
}

/// The next response on the thread is gathered in the same memory: no
/// buffer is allocated per response for a copying backend.
#[tokio::test(flavor = "current_thread")]
async fn the_next_response_on_the_thread_reuses_the_buffer() {
    let handler = Handler::new();
    let mut seen = Vec::new();
    // Blocks of the buffer's size, made between the responses: a buffer
    // freed at the end of a response would be handed out again for one of
    // these, so a new buffer could not be at the same address by chance.
    let mut held: Vec<Vec<u8>> = Vec::new();
    for _ in 0..3 {
        if let Some(&capacity) = held_capacity(&seen) {
            held.extend((0..8).map(|_| Vec::with_capacity(capacity)));
        }
        let app = respond(|| response(Body::from("hello"), &[("content-type", "text/plain")]));
        let mut gw = Copier {
            env: testing_env(),
            ..Copier::default()
        };
        assert!(handler.run(&mut gw, app).await.is_complete());
        assert_eq!(gw.out, HELLO);
        seen.extend(gw.buffers.iter().copied().zip(gw.capacities));
    }
    drop(held);
    let seen: Vec<usize> = seen.into_iter().map(|(at, _)| at).collect();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "a new buffer per response: {seen:x?}"
    );
}

/// A backend that keeps the default `write_buf` gets the same bytes, as
/// one `Bytes` through `write` (the `Recorder` of the common helpers).
#[tokio::test(flavor = "current_thread")]
async fn the_default_write_buf_hands_the_bytes_to_write() {
    let app = respond(|| response(Body::from("hello"), &[("content-type", "text/plain")]));
    let mut gw = Recorder::new(testing_env());
    assert!(Handler::new().run(&mut gw, app).await.is_complete());
    assert_eq!(gw.writes(), vec![HELLO.to_vec()]);
}

//! The request body of a CGI process: at most `CONTENT_LENGTH` bytes of
//! stdin, with a spill so the process never deadlocks against its web
//! server.
//!
//! Apache and fcgiwrap write the whole request body to the program before
//! they read its output. A program that writes a large response before it
//! has read a large body would fill its stdout pipe while the server is
//! blocked filling its stdin pipe: both wait forever (until the server's
//! timeout). So once the response grows past [`SPILL_AFTER`] bytes while
//! body bytes are still unread, the gateway reads the rest of the body
//! first — into memory up to [`MEMORY_SPILL`], then into an unlinked
//! temporary file — and the application's body reads from there. Small
//! responses (an early 401, a redirect) never trigger it, so a body nobody
//! wants is not read for nothing.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Output below this many bytes cannot fill a pipe, so it never makes the
/// gateway read the body ahead.
pub(crate) const SPILL_AFTER: u64 = 8 * 1024;
/// Read-ahead body bytes kept in memory before they go to a temporary file.
pub(crate) const MEMORY_SPILL: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

struct State {
    pipe: File,
    /// Bytes still to read from the pipe (with an unknown length: until end
    /// of file, `u64::MAX` until then).
    unread: u64,
    /// Whether the length is known (end of file before it is an error).
    known: bool,
    memory: VecDeque<Bytes>,
    memory_len: usize,
    /// The temporary file and how far it has been read back.
    file: Option<(File, u64)>,
    /// Bytes in the temporary file not read back yet.
    file_len: u64,
    failed: Option<io::ErrorKind>,
}

/// The shared state of the body, held by the body and the gateway.
#[derive(Clone)]
pub(crate) struct Stdin {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stdin")
    }
}

impl Stdin {
    /// Stdin holding `length` bytes, or, with `None`, everything up to end
    /// of file.
    pub(crate) fn new(pipe: File, length: Option<u64>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                pipe,
                unread: length.unwrap_or(u64::MAX),
                known: length.is_some(),
                memory: VecDeque::new(),
                memory_len: 0,
                file: None,
                file_len: 0,
                failed: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads whatever is left of the body from the pipe into the spill.
    pub(crate) fn read_ahead(&self) {
        let mut s = self.lock();
        while s.unread > 0 && s.failed.is_none() {
            match read_pipe(&mut s) {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    if let Err(e) = s.spill(chunk) {
                        tracing::error!(error = %e, "cannot hold the request body read ahead");
                        s.failed = Some(e.kind());
                    }
                }
                Err(e) => s.failed = Some(e.kind()),
            }
        }
    }

    /// Whether nothing is left to read from the pipe.
    pub(crate) fn all_read(&self) -> bool {
        let s = self.lock();
        s.unread == 0 || s.failed.is_some()
    }

    /// Reads and discards what the application left of the body, at most
    /// `limit` bytes: a program that exits with body bytes unread makes
    /// Apache's `mod_cgid` (a Unix socket, which the kernel resets when
    /// closed with unread data) cut the response short, and fcgiwrap fail
    /// once the pipe is full. Returns whether the body was read to its end.
    pub(crate) fn discard_rest(&self, limit: u64) -> bool {
        let mut s = self.lock();
        let mut discarded = 0u64;
        while s.unread > 0 && s.failed.is_none() && discarded < limit {
            match read_pipe(&mut s) {
                Ok(chunk) => discarded += chunk.len() as u64,
                Err(_) => return false,
            }
        }
        s.unread == 0
    }

    /// The body the application reads: `length` bytes, or with `None`
    /// everything up to end of file.
    pub(crate) fn body(&self, length: Option<u64>) -> StdinBody {
        StdinBody {
            stdin: self.clone(),
            left: length.unwrap_or(u64::MAX),
            known: length.is_some(),
        }
    }
}

fn read_pipe(s: &mut State) -> io::Result<Bytes> {
    let want = s.unread.min(CHUNK as u64) as usize;
    let mut buf = vec![0u8; want];
    let n = loop {
        match s.pipe.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if n == 0 && !s.known {
        // The end of a body of unknown length.
        s.unread = 0;
        return Ok(Bytes::new());
    }
    if n == 0 {
        // G3/B5: the client went away before CONTENT_LENGTH bytes.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "request body ended before CONTENT_LENGTH bytes",
        ));
    }
    buf.truncate(n);
    s.unread -= n as u64;
    Ok(Bytes::from(buf))
}

impl State {
    fn spill(&mut self, chunk: Bytes) -> io::Result<()> {
        if self.file.is_none() && self.memory_len + chunk.len() <= MEMORY_SPILL {
            self.memory_len += chunk.len();
            self.memory.push_back(chunk);
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some((temp_file()?, 0));
        }
        if let Some((f, _)) = &mut self.file {
            f.seek(SeekFrom::End(0))?;
            f.write_all(&chunk)?;
            self.file_len += chunk.len() as u64;
        }
        Ok(())
    }

    /// The next chunk of the body: memory first, then the file, then the
    /// pipe.
    fn next(&mut self) -> io::Result<Option<Bytes>> {
        if let Some(chunk) = self.memory.pop_front() {
            self.memory_len -= chunk.len();
            return Ok(Some(chunk));
        }
        if self.file_len > 0
            && let Some((f, pos)) = &mut self.file
        {
            let want = self.file_len.min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            f.seek(SeekFrom::Start(*pos))?;
            f.read_exact(&mut buf)?;
            *pos += want as u64;
            self.file_len -= want as u64;
            return Ok(Some(Bytes::from(buf)));
        }
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "reading the request body failed"));
        }
        if self.unread == 0 {
            return Ok(None);
        }
        read_pipe(self).map(|chunk| (!chunk.is_empty()).then_some(chunk))
    }
}

/// An unlinked temporary file: it disappears when the process ends, however
/// it ends.
fn temp_file() -> io::Result<File> {
    let dir = std::env::temp_dir();
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(
            "gateway-cgi-body-{}-{nanos}-{attempt}",
            std::process::id()
        ));
        match File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a temporary file"))
}

/// The application's view of the body.
pub(crate) struct StdinBody {
    stdin: Stdin,
    left: u64,
    known: bool,
}

impl http_body::Body for StdinBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        // A blocking read: the process serves this one request.
        let next = self.stdin.lock().next();
        match next {
            Ok(Some(chunk)) => {
                if self.known {
                    self.left = self.left.saturating_sub(chunk.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Ok(None) => {
                self.left = 0;
                Poll::Ready(None)
            }
            Err(e) => {
                self.left = 0;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.known || self.left == 0 {
            SizeHint::with_exact(self.left)
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn pipe_with(data: &[u8]) -> File {
        let mut f = temp_file().unwrap();
        f.write_all(data).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f
    }

    async fn collect(body: StdinBody) -> Result<Vec<u8>, io::Error> {
        body.collect().await.map(|c| c.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn reads_content_length_bytes() {
        let stdin = Stdin::new(pipe_with(b"hello, and more"), Some(5));
        assert_eq!(collect(stdin.body(Some(5))).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn read_ahead_spills_to_memory_and_file_and_reads_back_in_order() {
        let data: Vec<u8> = (0..(MEMORY_SPILL + 300_000))
            .map(|i| (i % 251) as u8)
            .collect();
        let stdin = Stdin::new(pipe_with(&data), Some(data.len() as u64));
        let mut body = stdin.body(Some(data.len() as u64));
        // The app reads a little, the gateway reads ahead, the app reads on.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        stdin.read_ahead();
        assert!(
            stdin.lock().file.is_some(),
            "past the memory limit it spills to a file"
        );
        let rest = collect(body).await.unwrap();
        assert_eq!([&first[..], &rest[..]].concat(), data);
    }

    #[tokio::test]
    async fn short_stdin_is_an_error_even_when_read_ahead() {
        let stdin = Stdin::new(pipe_with(b"short"), Some(50));
        stdin.read_ahead();
        let err = collect(stdin.body(Some(50))).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A body of unknown length (a chunked upload through Apache's
    /// `mod_cgid`) is read to end of file, directly or read ahead.
    #[tokio::test]
    async fn unknown_length_reads_to_end_of_file() {
        let stdin = Stdin::new(pipe_with(b"all of the upload"), None);
        assert_eq!(
            collect(stdin.body(None)).await.unwrap(),
            b"all of the upload"
        );
        let data: Vec<u8> = (0..(MEMORY_SPILL + 1000)).map(|i| (i % 7) as u8).collect();
        let stdin = Stdin::new(pipe_with(&data), None);
        let mut body = stdin.body(None);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        stdin.read_ahead();
        let rest = collect(body).await.unwrap();
        assert_eq!([&first[..], &rest[..]].concat(), data);
    }
}

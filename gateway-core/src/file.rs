//! File bodies (wsgiref's `wsgi.file_wrapper`) and the region a backend's
//! sendfile hook receives.

use std::fmt;
use std::fs::File;
use std::future::Future as _;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, header};
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

/// A byte range of an open file, as the pipeline offers it to a backend's
/// [`sendfile`](crate::Gateway::sendfile) hook.
#[derive(Clone)]
pub struct FileRegion {
    file: Arc<File>,
    path: Option<PathBuf>,
    offset: u64,
    len: u64,
}

impl FileRegion {
    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file's path, when the body was opened from one (needed for
    /// `X-Sendfile`-style offload).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Where the region starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes the region holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the region to `out` with blocking I/O (the standard library
    /// uses `sendfile`/`copy_file_range` where the kernel allows). For
    /// backends that own a blocking output, such as a CGI program's stdout.
    pub fn copy_to(&self, out: &mut impl io::Write) -> io::Result<u64> {
        let mut f = &*self.file;
        f.seek(SeekFrom::Start(self.offset))?;
        let n = io::copy(&mut f.take(self.len), out)?;
        if n < self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than its region",
            ));
        }
        Ok(n)
    }
}

impl fmt::Debug for FileRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRegion")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

/// A response body that streams a file (or a range of it).
///
/// Any backend can send it as an ordinary body. Turned into a response with
/// [`FileBody::into_response`], it also puts its [`FileRegion`] into the
/// response's extensions, where the pipeline finds it (even if a framework
/// boxes the body) and offers it to the backend's `sendfile` hook, which can
/// send it without copying through user space, or hand it to the web server.
///
/// Reads run on tokio's blocking pool in blocks of `block_size` (64 KiB by
/// default), like wsgiref's `FileWrapper(blksize)`.
pub struct FileBody {
    region: FileRegion,
    block_size: usize,
    pos: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    /// Opens `path` for the whole file.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut body = Self::from_file(file, 0, len);
        body.region.path = Some(path.to_path_buf());
        Ok(body)
    }

    /// A body of `len` bytes of `file` starting at `offset`.
    pub fn from_file(file: File, offset: u64, len: u64) -> Self {
        Self {
            region: FileRegion {
                file: Arc::new(file),
                path: None,
                offset,
                len,
            },
            block_size: 64 * 1024,
            pos: 0,
            pending: None,
        }
    }

    /// Sets how many bytes each read takes (wsgiref's `blksize`).
    pub fn block_size(&mut self, n: usize) -> &mut Self {
        self.block_size = n.max(1);
        self
    }

    /// The region this body sends.
    pub fn region(&self) -> &FileRegion {
        &self.region
    }

    /// A 200 response with this body, `Content-Length` set and the region in
    /// the extensions for the sendfile hook.
    pub fn into_response(self) -> Response<FileBody> {
        let region = self.region.clone();
        let mut res = Response::new(self);
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(region.len));
        res.extensions_mut().insert(region);
        res
    }
}

impl fmt::Debug for FileBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBody")
            .field("region", &self.region)
            .field("pos", &self.pos)
            .finish()
    }
}

fn read_block(file: &File, at: u64, n: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = BytesMut::zeroed(n);
    let mut filled = 0;
    while filled < n {
        let got = file.read_at(&mut buf[filled..], at + filled as u64)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than its region",
            ));
        }
        filled += got;
    }
    Ok(buf.freeze())
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.pos >= this.region.len {
            return Poll::Ready(None);
        }
        let task = this.pending.get_or_insert_with(|| {
            let file = this.region.file.clone();
            let at = this.region.offset + this.pos;
            let n = (this.region.len - this.pos).min(this.block_size as u64) as usize;
            tokio::task::spawn_blocking(move || read_block(&file, at, n))
        });
        let res = match Pin::new(task).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        this.pending = None;
        match res {
            Ok(Ok(bytes)) => {
                this.pos += bytes.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Ok(Err(e)) => {
                this.pos = this.region.len;
                Poll::Ready(Some(Err(e)))
            }
            Err(join) => {
                this.pos = this.region.len;
                Poll::Ready(Some(Err(io::Error::other(join))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.region.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.region.len - self.pos.min(self.region.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    fn temp_file(contents: &[u8]) -> (PathBuf, File) {
        let path = std::env::temp_dir().join(format!(
            "gateway-core-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = File::create(&path).unwrap();
        f.write_all(contents).unwrap();
        (path.clone(), File::open(&path).unwrap())
    }

    /// "xyz"*50 with a 120-byte block size gives "xyz"*40 then "xyz"*10.
    #[tokio::test]
    async fn c24_blocks() {
        let data = b"xyz".repeat(50);
        let (path, file) = temp_file(&data);
        let mut body = FileBody::from_file(file, 0, data.len() as u64);
        body.block_size(120);
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            chunks.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(
            chunks,
            vec![
                Bytes::from(b"xyz".repeat(40)),
                Bytes::from(b"xyz".repeat(10))
            ]
        );
        // Iterating does not close the file: the region still reads.
        let mut out = Vec::new();
        body.region().copy_to(&mut out).unwrap();
        assert_eq!(out, data);
        std::fs::remove_file(path).unwrap();
    }

    #[tokio::test]
    async fn ranges_and_short_files() {
        let (path, file) = temp_file(b"0123456789");
        let body = FileBody::from_file(file.try_clone().unwrap(), 2, 5);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"23456");
        let err = FileBody::from_file(file, 8, 5).collect().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(path).unwrap();
    }
}

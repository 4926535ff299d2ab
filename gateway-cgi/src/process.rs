//! The CGI backend over this process's stdin, stdout, stderr and environment.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;

use bytes::{Bytes, BytesMut};
use gateway_core::{
    Body, Environ, ErrorStream, FileRegion, Gateway, GatewayInfo, HeadFormat, Protocol,
    ResponseHead, head,
};
use http::{HeaderValue, Version};

use crate::environ::{environ_pairs, fix_iis_path_info};
use crate::stdin::{SPILL_AFTER, Stdin};
use gateway_core::BodyLength;

/// Which flavour of CGI a [`ProcessGateway`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Cgi,
    Nph,
    Iis,
}

/// A [`Gateway`] over the process: the environment is the request's
/// meta-variables, stdin its body, stdout the response, stderr the error
/// stream (wsgiref's `CGIHandler`): run-once, multiprocess, not
/// multithread, no base environ.
///
/// Output goes straight to file descriptor 1 without the standard library's
/// line buffering, so a small response is one `write(2)`; file bodies are
/// copied by the kernel (`sendfile`) where it can.
#[derive(Debug)]
pub struct ProcessGateway {
    stdout: File,
    stdin: Option<File>,
    /// The body, once handed out, while bytes of it may be unread.
    body: Option<Stdin>,
    /// Response bytes written so far.
    written: u64,
    mode: Mode,
    /// Whether the environment is kept for the life of the process (see
    /// `environ_pairs`).
    environ_for_process_life: bool,
}

/// The most request-body bytes left unread by the application that are
/// read and discarded before the process exits.
const DRAIN_MAX: u64 = 16 << 20;

impl ProcessGateway {
    /// Whether the request has body bytes the application did not read.
    pub(crate) fn has_unread_body(&self) -> bool {
        match &self.body {
            Some(body) => !body.all_read(),
            None => {
                self.stdin.is_some()
                    && std::env::var_os("CONTENT_LENGTH").is_some_and(|v| !v.is_empty() && v != "0")
            }
        }
    }

    /// Reads and discards the request body the application did not read
    /// (at most [`DRAIN_MAX`] bytes), so that the web server sees the
    /// response end cleanly: Apache's `mod_cgid` hands the program a Unix
    /// socket, which the kernel resets when it is closed with unread data,
    /// and fcgiwrap fails once its pipe to the program is full. A body that
    /// the handler refused before handing it out (a 413) is drained by its
    /// declared length.
    pub(crate) fn drain_body(&mut self) {
        if let Some(body) = self.body.take() {
            if !body.discard_rest(DRAIN_MAX) {
                tracing::debug!("request body left unread at exit");
            }
            return;
        }
        let declared = std::env::var_os("CONTENT_LENGTH")
            .and_then(|v| v.into_string().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if declared == 0 {
            return;
        }
        if let Some(file) = self.stdin.take() {
            let stdin = Stdin::new(file, Some(declared));
            if !stdin.discard_rest(DRAIN_MAX) {
                tracing::debug!("request body left unread at exit");
            }
        }
    }

    /// With `run_once`, the process exits after this request: its
    /// environment is kept to the end instead of copied or freed.
    pub(crate) fn new(mode: Mode, run_once: bool) -> io::Result<Self> {
        // Duplicated descriptors: unbuffered, and closing them leaves the
        // process's own 0 and 1 alone. Taken without the standard library's
        // stdin and stdout handles, whose buffers a CGI request never uses.
        let (stdin, stdout) = stdio();
        let stdout = File::from(stdout?);
        let stdin = stdin.ok().map(File::from);
        Ok(Self {
            stdout,
            stdin,
            body: None,
            written: 0,
            mode,
            environ_for_process_life: run_once,
        })
    }
}

impl ProcessGateway {
    /// Writes `data` to stdout.
    fn write_slice(&mut self, data: &[u8]) -> io::Result<()> {
        // A response past a pipe's worth while the body is unread: read the
        // body ahead first, or the web server and we could wait on each
        // other (see the stdin module).
        self.written += data.len() as u64;
        if self.written > SPILL_AFTER
            && let Some(body) = self.body.take()
        {
            body.read_ahead();
        }
        // CGI has one request and nothing else to do: a blocking write is the
        // cheapest correct thing.
        self.stdout.write_all(data)
    }
}

/// Duplicates of the process's stdin and stdout descriptors.
#[cfg(unix)]
fn stdio() -> (io::Result<OwnedFd>, io::Result<OwnedFd>) {
    (
        rustix::stdio::stdin().try_clone_to_owned(),
        rustix::stdio::stdout().try_clone_to_owned(),
    )
}

#[cfg(not(unix))]
fn stdio() -> (io::Result<OwnedFd>, io::Result<OwnedFd>) {
    use std::os::fd::AsFd;
    (
        io::stdin().as_fd().try_clone_to_owned(),
        io::stdout().as_fd().try_clone_to_owned(),
    )
}

impl Gateway for ProcessGateway {
    // A small file costs less read into the one write with the head.
    const SENDFILE_MIN: Option<u64> = Some(64 * 1024 + 1);

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.write_slice(&data)
    }

    async fn write_buf(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        self.write_slice(buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()
    }

    fn stdin(&mut self, environ: &Environ) -> Body {
        // G3: read at most CONTENT_LENGTH bytes; unset or empty means no
        // body, unless the request says it has one of unknown length
        // (`CONTENT_LENGTH: -1`, or a transfer coding without a length, as
        // Apache's mod_cgid passes a chunked upload): then stdin is read to
        // end of file, which the web server gives once the body is over.
        let length = match environ.body_length() {
            Ok(BodyLength::Known(n)) if n > 0 => Some(n),
            Ok(BodyLength::Unknown) => None,
            _ => return Body::empty(),
        };
        let Some(file) = self.stdin.take() else {
            return Body::empty();
        };
        if length.is_none() && std::io::IsTerminal::is_terminal(&file) {
            // Nothing will ever close a terminal: asking for the length is
            // better than waiting for ever or guessing.
            return Body::failing(gateway_core::Error::length_required());
        }
        let stdin = Stdin::new(file, length);
        self.body = Some(stdin.clone());
        Body::new(stdin.body(length))
    }

    fn stderr(&self) -> ErrorStream {
        ErrorStream::stderr()
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        // Moved in, not copied: a pair's buffers are the ones the standard
        // library read the variable into.
        environ.extend_replacing(environ_pairs(self.environ_for_process_life));
        if self.mode == Mode::Iis {
            fix_iis_path_info(environ);
        }
    }

    fn info(&self) -> GatewayInfo {
        let protocol = match self.mode {
            Mode::Iis => Protocol::IisCgi,
            _ => Protocol::Cgi,
        };
        GatewayInfo::new(protocol)
            .with_origin_server(self.mode == Mode::Nph)
            .with_multithread(false)
            .with_run_once(true)
    }

    fn write_head(&mut self, head: &mut ResponseHead<'_>, format: &HeadFormat, buf: &mut BytesMut) {
        match format {
            // G8: an NPH head carries the request's protocol version and
            // never promises keep-alive.
            HeadFormat::Origin {
                server_software, ..
            } => {
                let version = match head.request_version {
                    Version::HTTP_09 => return,
                    Version::HTTP_10 => Version::HTTP_10,
                    _ => Version::HTTP_11,
                };
                let headers = &mut *head.headers;
                headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                head::encode_origin(
                    buf,
                    version,
                    head.status,
                    head.reason,
                    headers,
                    server_software.as_deref(),
                );
            }
            HeadFormat::Cgi => head::encode_cgi(buf, head.status, head.reason, head.headers),
        }
    }

    async fn sendfile(&mut self, file: &FileRegion) -> io::Result<bool> {
        file.copy_to(&mut self.stdout)?;
        Ok(true)
    }
}

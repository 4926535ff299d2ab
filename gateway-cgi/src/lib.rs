//! # gateway-cgi
//!
//! Run a web application — an axum `Router`, any `tower::Service` over
//! `http` types — as a CGI program (RFC 3875), an NPH program, or under
//! IIS's CGI, with the semantics of wsgiref's `CGIHandler`,
//! `IISCGIHandler` and `BaseCGIHandler`. It is the simplest backend of the
//! gateway workspace and builds on `gateway-core`, which owns the request
//! view, the response pipeline and the error policy.
//!
//! ## Getting started
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! fn main() -> std::process::ExitCode {
//!     let app = tower::service_fn(|_req: http::Request<gateway_core::Body>| async {
//!         Ok::<_, Infallible>(http::Response::new("Hello, world!\n".to_string()))
//!     });
//!     gateway_cgi::run(app)
//! }
//! ```
//!
//! Put the binary where the web server runs CGI programs (see the
//! repository's `examples/webservers/cgi/` for Apache, lighttpd and
//! nginx + fcgiwrap configurations).
//!
//! ## What a request costs
//!
//! A CGI process serves one request, so [`run`] does only what that needs:
//! a current-thread tokio runtime (no worker threads; an I/O driver only
//! when the program turns on tokio's `net`, `process` or `signal` feature,
//! which gateway-cgi itself does not need), the environment read once as
//! raw bytes and moved, not copied, into the request (and, under [`run`],
//! kept until the process exits rather than freed variable by variable just
//! before it), stdin and stdout used through their file descriptors without
//! the standard library's buffers, blocking reads of stdin and one
//! unbuffered write of the response for a small body, file bodies copied by
//! the kernel. When the request leaves nothing on the runtime, [`run`] lets
//! the process exit with it rather than take it down first.
//!
//! Process start-up dominates, and for a Rust program most of it is the
//! dynamic loader: a statically linked build starts about 30% faster
//! (`RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
//! --target x86_64-unknown-linux-gnu`; the explicit `--target` keeps the flag
//! away from build scripts and proc-macros). Whole-program LTO (`lto =
//! "fat"` in the profile the program is built with) leaves less code and
//! fewer relocations for every start to go through than `"thin"`. What the
//! program links in counts too: tokio's `rt-multi-thread` feature (part of `full`) brings
//! the multi-thread scheduler's code and, through it, libm, which the
//! dynamic loader then maps and relocates at every start; its `signal`
//! feature makes every runtime set up a signal driver. A CGI program needs
//! neither, nor tokio's `net` feature unless it uses tokio sockets. Install
//! the program by copying it: a binary straight from the linker (lld
//! writes through a shared mapping) is held in the page cache as single
//! pages, and starts measurably slower than a copy held in large folios.
//! The repository's `scripts/bench-cgi.sh` measures the `cgi_hello`
//! example against a trivial Rust program, C and Go.
//!
//! Apache and fcgiwrap write the whole request body to the program before
//! they read its output. So that a program which streams a large answer
//! while it reads a large body cannot deadlock against them, once the
//! response passes 8 KiB with body bytes still unread, the rest of the body
//! is read ahead (into memory up to 1 MiB, then an unlinked temporary file)
//! and the application reads it from there.
//!
//! ## Modes
//!
//! - [`run`]: plain CGI. The response head is `Status: …`.
//! - [`Cgi::iis`]: IIS's CGI, which repeats `SCRIPT_NAME` at the start of
//!   `PATH_INFO`; the repeat is removed before anything else.
//! - [`Cgi::nph`]: non-parsed headers: a full `HTTP/1.x` status line with
//!   `Date` and `Connection: close`. Apache runs a program in NPH mode
//!   when its file name starts with `nph-`.
//! - [`serve_streams`]: CGI over explicit streams (wsgiref's
//!   `BaseCGIHandler`), for tests and embedding.
//!
//! ## Exit status
//!
//! 0 when the response went out, including the error page (that page is
//! the report) and a client that went away; 1 when the response was
//! aborted after its head (the application or its body failed half-way, or
//! the body was shorter than its Content-Length), so the web server can see
//! the failure.
//!
//! ## httpoxy
//!
//! A client's `Proxy:` header reaches a CGI program as the `HTTP_PROXY`
//! environment variable, which HTTP client libraries read as a proxy
//! setting. When it is present, [`Cgi::run`] re-executes the program
//! without it before anything else happens, and the core never turns it
//! into a request header.

mod environ;
mod process;
mod stdin;

use std::borrow::Cow;
use std::io;
use std::process::ExitCode;

use bytes::Buf;
use gateway_core::{BoxError, ErrorStream, Handler, Outcome, Protocol, StreamGateway};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

pub use environ::{fix_iis_path_info, read_environ};
pub use gateway_core::{Body, Environ};
pub use process::ProcessGateway;

use process::Mode;

/// Serves the one CGI request of this process with `app` and returns the
/// exit status to end the process with. See [`Cgi`] for the other modes.
pub fn run<S, B>(app: S) -> ExitCode
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    Cgi::new().run(app)
}

/// Whether this process was started as a CGI program: `GATEWAY_INTERFACE`
/// is set (RFC 3875 §4.1.4).
pub fn is_cgi() -> bool {
    std::env::var_os("GATEWAY_INTERFACE").is_some()
}

/// The I/O events the runtime takes from the OS at a time: more than one
/// CGI request's application waits on at once.
const CGI_IO_EVENTS: usize = 64;

/// How long the process reads the rest of a request body the application
/// left unread, after the response.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A CGI program's configuration: the mode and the core [`Handler`].
#[derive(Debug, Clone)]
pub struct Cgi {
    mode: Mode,
    handler: Option<Handler>,
}

impl Default for Cgi {
    fn default() -> Self {
        Self::new()
    }
}

impl Cgi {
    /// Plain CGI.
    pub fn new() -> Self {
        Self {
            mode: Mode::Cgi,
            handler: None,
        }
    }

    /// CGI under IIS: `PATH_INFO` loses its repeated `SCRIPT_NAME`
    /// ([`fix_iis_path_info`]).
    pub fn iis() -> Self {
        Self {
            mode: Mode::Iis,
            handler: None,
        }
    }

    /// Non-parsed-header CGI: the program writes the full HTTP status line.
    pub fn nph() -> Self {
        Self {
            mode: Mode::Nph,
            handler: None,
        }
    }

    /// Uses `handler` (error page, limits, mount prefix…) instead of the
    /// default one.
    pub fn handler(&mut self, handler: Handler) -> &mut Self {
        self.handler = Some(handler);
        self
    }

    /// Serves this process's request on a current-thread runtime and
    /// returns the exit status.
    ///
    /// The process is meant to exit right after: when the request leaves
    /// nothing behind on the runtime (no task still alive, no body being
    /// drained), the runtime and the default handler are left for the exit
    /// to reclaim rather than taken down piece by piece. Otherwise the
    /// runtime is shut down as usual: the tasks left are dropped, and
    /// blocking threads are not waited for.
    pub fn run<S, B>(&self, app: S) -> ExitCode
    where
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: http_body::Body,
        B::Data: Buf,
        B::Error: Into<BoxError>,
    {
        scrub_httpoxy();
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // One request's worth of sockets: a small event buffer (the
            // default holds 1024 events, 12 KiB of heap touched at start-up).
            .max_io_events_per_tick(CGI_IO_EVENTS)
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return startup_failure(&e),
        };
        let handler = self.handler_or_default();
        let (code, drained) = match rt.block_on(serve_process(&handler, self.mode, app, true)) {
            Ok((outcome, drained)) => (exit_code(&outcome), drained),
            Err(e) => (startup_failure(&e), false),
        };
        if !drained && rt.metrics().num_alive_tasks() == 0 {
            // Nothing of the request's is left on the runtime: tearing it
            // down (its drivers, scheduler and blocking pool) would only
            // touch code and memory for the first time just before the
            // exit frees them all. Likewise the default handler (one
            // passed in is only borrowed here: it is dropped as usual).
            std::mem::forget(rt);
            std::mem::forget(handler);
        } else {
            // A drain still blocked on a stalled web server is not waited
            // for.
            rt.shutdown_background();
        }
        code
    }

    /// Serves this process's request inside an existing runtime.
    pub async fn serve<S, B>(&self, app: S) -> io::Result<Outcome>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: http_body::Body,
        B::Data: Buf,
        B::Error: Into<BoxError>,
    {
        let (outcome, _) = serve_process(&self.handler_or_default(), self.mode, app, false).await?;
        Ok(outcome)
    }

    /// The handler given, or a default one.
    fn handler_or_default(&self) -> Cow<'_, Handler> {
        match &self.handler {
            Some(h) => Cow::Borrowed(h),
            None => Cow::Owned(Handler::default()),
        }
    }
}

/// Serves the process's request with `handler`; with `run_once` (from
/// [`Cgi::run`], which ends the process after it) the environment is kept
/// for the life of the process instead of freed variable by variable.
/// Also says whether the rest of the request body had to be drained.
async fn serve_process<S, B>(
    handler: &Handler,
    mode: Mode,
    app: S,
    run_once: bool,
) -> io::Result<(Outcome, bool)>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    let mut gateway = ProcessGateway::new(mode, run_once)?;
    let outcome = handler.run(&mut gateway, app).await;
    // The response is out; what is left of the body is read before the
    // process exits, bounded in time: a web server that stalls mid-body
    // does not keep the process alive.
    let drain = gateway.has_unread_body();
    if drain {
        let drain = tokio::task::spawn_blocking(move || gateway.drain_body());
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    Ok((outcome, drain))
}

/// The exit status for a request's outcome: 1 when the response was aborted
/// after its head or could not be written, else 0.
pub fn exit_code(outcome: &Outcome) -> ExitCode {
    if outcome.is_aborted() || outcome.is_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn startup_failure(e: &io::Error) -> ExitCode {
    // Nothing has been written; the web server turns a silent exit into its
    // own 500, and the reason goes to its error log.
    ErrorStream::stderr().write(format!("gateway-cgi: cannot start: {e}\n").as_bytes());
    ExitCode::FAILURE
}

/// Serves one CGI request over explicit streams (wsgiref's
/// `BaseCGIHandler`): the meta-variables in `environ`, the body read from
/// `reader` (at most `CONTENT_LENGTH` bytes), the response written to
/// `writer` in the CGI form, diagnostics to `errors`. Flags as for a CGI
/// process: run-once, multiprocess, not multithread.
pub async fn serve_streams<R, W, S, B>(
    handler: &Handler,
    reader: R,
    writer: &mut W,
    errors: ErrorStream,
    environ: Environ,
    app: S,
) -> Outcome
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin,
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    let mut gw = StreamGateway::cgi(reader, writer, errors, environ);
    gw.flags(false, true, true).protocol(Protocol::Cgi);
    handler.run(&mut gw, app).await
}

/// Re-executes this program without `HTTP_PROXY` when a client put one in
/// the environment (httpoxy). Done with `exec`, before any thread or runtime
/// exists, because changing the environment in place is unsafe.
#[cfg(unix)]
fn scrub_httpoxy() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("HTTP_PROXY").is_none() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env_remove("HTTP_PROXY")
        .exec();
    // exec only returns on failure: carry on, the core still refuses to
    // turn HTTP_PROXY into a header.
    tracing::warn!(error = %err, "could not re-execute without HTTP_PROXY");
}

#[cfg(not(unix))]
fn scrub_httpoxy() {}

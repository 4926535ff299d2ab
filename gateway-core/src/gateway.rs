//! The backend trait (wsgiref's `BaseHandler` I/O methods) and a backend over
//! explicit streams (wsgiref's `SimpleHandler` / `BaseCGIHandler`).

use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::body::Body;
use crate::environ::{BodyLength, Environ, InvalidContentLength};
use crate::error::Error;
use crate::file::FileRegion;
use crate::head::{self, HeadFormat};
use crate::info::{ErrorStream, GatewayInfo, Protocol};

/// The response head as the pipeline hands it to a backend.
#[derive(Debug)]
#[non_exhaustive]
pub struct ResponseHead<'a> {
    /// The status.
    pub status: StatusCode,
    /// A reason phrase to use instead of the canonical one.
    pub reason: Option<&'a [u8]>,
    /// The headers, already checked: no hop-by-hop fields, no `Status`,
    /// Content-Length as the pipeline settled it. The pipeline is done with
    /// them once [`Gateway::write_head`] returns, so a backend that hands the
    /// head to a library may take them (`std::mem::take`) instead of
    /// copying.
    pub headers: &'a mut HeaderMap,
    /// The version of the request (HTTP/0.9 requests get no head in the
    /// origin form).
    pub request_version: Version,
    /// The `Content-Length` the pipeline gave a response whose application
    /// set none (from the body's exact size, or `0` for a body that ended
    /// without a byte), when the backend takes it apart from the headers
    /// ([`Gateway::LENGTH_APART`]); `headers` then has no `Content-Length`,
    /// and the backend writes this one after them. Always `None` for a
    /// backend that does not take it apart: the pipeline puts it in
    /// `headers`.
    pub content_length: Option<u64>,
}

impl ResponseHead<'_> {
    /// Appends the head to `buf` as the default
    /// [`write_head`](Gateway::write_head) does: in `format`
    /// ([`HeadFormat::Cgi`] or the origin form; nothing for an HTTP/0.9
    /// request in the origin form), with
    /// [`content_length`](ResponseHead::content_length) written after the
    /// headers. For a backend whose `write_head` puts the head somewhere
    /// other than the buffer it is given.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use gateway_core::{HeadFormat, ResponseHead};
    ///
    /// fn encode(head: &ResponseHead<'_>) -> BytesMut {
    ///     let mut buf = BytesMut::new();
    ///     head.encode(&HeadFormat::Cgi, &mut buf);
    ///     buf
    /// }
    /// # let _ = encode;
    /// ```
    pub fn encode(&self, format: &HeadFormat, buf: &mut BytesMut) {
        match format {
            HeadFormat::Cgi => head::encode_cgi_with_length(
                buf,
                self.status,
                self.reason,
                self.headers,
                self.content_length,
            ),
            HeadFormat::Origin {
                version,
                server_software,
            } => {
                if self.request_version != Version::HTTP_09 {
                    head::encode_origin_with_length(
                        buf,
                        *version,
                        self.status,
                        self.reason,
                        self.headers,
                        server_software.as_deref(),
                        self.content_length,
                    );
                }
            }
        }
    }
}

/// A backend: how one protocol moves a request in and a response out.
///
/// This is the I/O half of wsgiref's `BaseHandler`; the
/// [`Handler`](crate::Handler) is the rest. The required methods are wsgiref's abstract
/// ones (`_write`, `_flush`, `get_stdin`, `get_stderr`, `add_cgi_vars`);
/// the provided ones have defaults a backend overrides as needed: what the
/// backend is ([`info`](Gateway::info): protocol, head form, the `wsgi.*`
/// flags, addresses, as one value), how the request is handed over
/// ([`request`](Gateway::request)), how the head is written
/// ([`write_head`](Gateway::write_head)), how the bytes the pipeline
/// gathered are taken ([`write_buf`](Gateway::write_buf)), protocol switches
/// ([`supports_upgrade`](Gateway::supports_upgrade)) and file bodies
/// ([`sendfile`](Gateway::sendfile)).
///
/// A minimal backend that keeps the response in memory:
///
/// ```
/// use bytes::Bytes;
/// use gateway_core::{Body, Environ, ErrorStream, Gateway, GatewayInfo, Protocol};
///
/// struct Memory { out: Vec<u8> }
///
/// impl Gateway for Memory {
///     async fn write(&mut self, data: Bytes) -> std::io::Result<()> {
///         self.out.extend_from_slice(&data);
///         Ok(())
///     }
///     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
///     fn stdin(&mut self, _env: &Environ) -> Body { Body::empty() }
///     fn stderr(&self) -> ErrorStream { ErrorStream::null() }
///     fn add_cgi_vars(&mut self, env: &mut Environ) {
///         env.insert("REQUEST_METHOD", "GET");
///     }
///     fn info(&self) -> GatewayInfo {
///         GatewayInfo::new(Protocol::Other("memory")).with_multiprocess(false)
///     }
/// }
/// ```
pub trait Gateway: Send {
    /// The smallest file body offered to [`sendfile`](Gateway::sendfile), or
    /// `None` (the default) to offer none. A file body that is not offered
    /// is streamed like any other body, which keeps the head lazy (a file
    /// that fails on its first read still gets the error page) and sends a
    /// small file in the same write as the head.
    const SENDFILE_MIN: Option<u64> = None;

    /// Whether the `Content-Length` the pipeline adds to a response is
    /// handed to [`write_head`](Gateway::write_head) apart, in
    /// [`ResponseHead::content_length`], rather than inserted into the
    /// headers (default false). The default `write_head` writes it either
    /// way, so a backend that keeps the default `write_head` can say true
    /// and save a header insertion per response; one that overrides
    /// `write_head` and says true must write it.
    const LENGTH_APART: bool = false;

    /// Whether the backend takes the response head whole, through
    /// [`take_head`](Gateway::take_head), instead of having it written by
    /// [`write_head`](Gateway::write_head) (default false). For a backend
    /// that hands the head to a library (hyper) as `http` types: it gets the
    /// application's head as it is, rather than a copy to make.
    const TAKES_HEAD: bool = false;

    /// Takes the checked response head whole, when
    /// [`TAKES_HEAD`](Gateway::TAKES_HEAD) says so (and then instead of
    /// [`write_head`](Gateway::write_head)): the head the application made,
    /// with the pipeline's changes (hop-by-hop fields removed,
    /// `X-Accel-Buffering` added), its extensions (a
    /// [`ReasonPhrase`](crate::ReasonPhrase) the application set among
    /// them), and the `Content-Length` kept apart as
    /// [`ResponseHead::content_length`] describes it. The backend must
    /// send the head. The default drops it: a backend that says true
    /// overrides this.
    fn take_head(&mut self, head: http::response::Parts, content_length: Option<u64>) {
        let _ = (head, content_length);
    }

    /// Writes all of `data` to the client, retrying short writes.
    fn write(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Writes all of what the pipeline gathered in `buf` (the head, small
    /// body chunks). The pipeline empties `buf` afterwards, whatever the
    /// outcome.
    ///
    /// The default hands the bytes to [`write`](Gateway::write) as one
    /// `Bytes` (taking them out of `buf`), which suits a backend that keeps
    /// what it is given. A backend that copies what it writes anyway (into
    /// a record, a pipe, a buffered writer) overrides this to copy straight
    /// from `buf`: the pipeline then reuses the buffer's memory, with no
    /// allocation per response for it.
    fn write_buf(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<()>> + Send {
        self.write(buf.split().freeze())
    }

    /// Pushes buffered output to the client.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// The request body (wsgiref's `get_stdin`), called once per request after
    /// [`add_cgi_vars`](Gateway::add_cgi_vars) with the finished environ, so
    /// the backend can read `CONTENT_LENGTH`.
    fn stdin(&mut self, environ: &Environ) -> Body;

    /// The request's error stream (wsgiref's `get_stderr`, wsgi.errors).
    fn stderr(&self) -> ErrorStream;

    /// Adds the backend's CGI meta-variables to `environ` (wsgiref's
    /// `add_cgi_vars`): the process environment, FastCGI PARAMS, the SCGI
    /// header, or the variables derived from an HTTP request.
    fn add_cgi_vars(&mut self, environ: &mut Environ);

    /// The request the application gets, made from the finished environ and
    /// the body [`stdin`](Gateway::stdin) returned. The default builds it
    /// with [`build_request`](crate::request::build_request), the one rule
    /// every CGI-family backend shares. A backend that already holds the
    /// request in `http` form (an origin server whose library parsed it)
    /// overrides this to hand it over as it is, which saves rebuilding the
    /// request line and headers; it must describe the same request as the
    /// environ does. An error is a 400 for the client.
    fn request(&mut self, environ: &Environ, body: Body) -> Result<Request<Body>, Error> {
        crate::request::build_request(environ, body)
    }

    /// What this backend is, asked once per request: the protocol, whether
    /// it is the origin server (writes `HTTP/x.y` status lines with
    /// `Date`/`Server`) or CGI-style (`Status:`), wsgi.multithread,
    /// wsgi.multiprocess, wsgi.run_once, and the socket addresses. The
    /// handler adds the scheme and the request id and hands the result to
    /// the application. Default: [`GatewayInfo::new`] of
    /// `Protocol::Other("custom")` (wsgiref's `BaseHandler` defaults).
    fn info(&self) -> GatewayInfo {
        GatewayInfo::new(Protocol::Other("custom"))
    }

    /// What the handler reads of every request before it calls the
    /// application, when the backend knows it without an environ (an
    /// origin server whose library parsed the request): the method, the
    /// version, the body's length. Asked once per request, after
    /// [`add_cgi_vars`](Gateway::add_cgi_vars); it must agree with the
    /// environ. The default, `None`, has the handler read them from the
    /// environ, which makes a deferred environ's known variables (see
    /// [`Environ::deferred`]) enough; a backend that answers here can
    /// defer its whole environ.
    fn request_facts(&self) -> Option<RequestFacts> {
        None
    }

    /// Puts the response head into `buf`, to be written with the first body
    /// bytes (so a small response costs one write). The default encodes it
    /// in `format` ([`HeadFormat::Cgi`] or the origin form; nothing for an
    /// HTTP/0.9 request in the origin form). A backend that hands a
    /// structured head to a library (hyper) overrides this and leaves `buf`
    /// alone.
    fn write_head(&mut self, head: &mut ResponseHead<'_>, format: &HeadFormat, buf: &mut BytesMut) {
        head.encode(format, buf);
    }

    /// Whether this backend can hand the connection over to the application
    /// after a `101 Switching Protocols` answer (HTTP/1.1 `Upgrade`, such as
    /// WebSocket). When true, a 101 whose `Connection` names `upgrade` keeps
    /// its `Connection` and `Upgrade` headers, and the backend carries out
    /// the switch. When false (the default, and every CGI-family protocol,
    /// which has no connection to hand over), a 101 from the application is
    /// answered `501 Not Implemented` instead.
    fn supports_upgrade(&self) -> bool {
        false
    }

    /// Sends a file body itself (wsgiref's `sendfile`), after the head has
    /// been written. Offered only file bodies of at least
    /// [`SENDFILE_MIN`](Gateway::SENDFILE_MIN) bytes. Return `Ok(true)` when
    /// the whole region was sent, `Ok(false)` to let the pipeline stream
    /// the body as usual. Default: false.
    ///
    /// Handing a file to the web server instead (`X-Sendfile`,
    /// `X-Accel-Redirect`) is the application's side:
    /// [`OffloadLayer`](crate::offload::OffloadLayer).
    fn sendfile(&mut self, file: &FileRegion) -> impl Future<Output = io::Result<bool>> + Send {
        let _ = file;
        async { Ok(false) }
    }
}

/// What the handler reads of every request before it calls the
/// application, as a backend that parsed the request knows it (see
/// [`Gateway::request_facts`]): the same values the environ's
/// `REQUEST_METHOD`, `SERVER_PROTOCOL`, `CONTENT_LENGTH`,
/// `HTTP_TRANSFER_ENCODING`, `HTTPS` and `SCRIPT_NAME` give. The header
/// count limit ([`Limits::max_headers`](crate::Limits::max_headers)) is the
/// backend's to apply when it gives these.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub(crate) is_head: bool,
    pub(crate) version: Version,
    pub(crate) body_length: Result<BodyLength, InvalidContentLength>,
    pub(crate) https: bool,
    pub(crate) script_name: Option<Bytes>,
}

impl RequestFacts {
    /// A request with this method and version, whose body's length
    /// follows from its `Content-Length` (repeated fields joined with `,`)
    /// and whether it has a `Transfer-Encoding`, by the rule of
    /// [`BodyLength::from_values`]; over plain HTTP, with an empty
    /// `SCRIPT_NAME`.
    pub fn new(
        method: &Method,
        version: Version,
        content_length: Option<&[u8]>,
        transfer_coding: bool,
    ) -> Self {
        Self {
            is_head: method == Method::HEAD,
            version,
            body_length: BodyLength::from_values(content_length, transfer_coding),
            https: false,
            script_name: None,
        }
    }

    /// Sets whether the request came over TLS.
    pub fn with_https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// Sets the request's `SCRIPT_NAME`.
    pub fn with_script_name(mut self, script_name: impl Into<Bytes>) -> Self {
        self.script_name = Some(script_name.into()).filter(|s| !s.is_empty());
        self
    }
}

/// A backend over explicit streams: wsgiref's `SimpleHandler` (origin form,
/// multithread, not multiprocess) and `BaseCGIHandler` (CGI form) in one.
///
/// The request body is read from `reader` (at most `CONTENT_LENGTH` bytes),
/// the response is written to `writer` with `write_all`, so a writer that
/// takes a few bytes per call still gets every byte.
///
/// ```
/// use gateway_core::{Environ, ErrorStream, StreamGateway};
///
/// let mut env = Environ::new();
/// env.setup_testing_defaults();
/// let gw = StreamGateway::cgi(&b""[..], Vec::new(), ErrorStream::null(), env);
/// # let _ = gw;
/// ```
#[derive(Debug)]
pub struct StreamGateway<R, W> {
    reader: Option<R>,
    writer: W,
    errors: ErrorStream,
    environ: Environ,
    info: GatewayInfo,
}

impl<R, W> StreamGateway<R, W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin,
{
    /// wsgiref's `SimpleHandler`: origin-server head, multithread, not
    /// multiprocess, not run-once.
    pub fn origin(reader: R, writer: W, errors: ErrorStream, environ: Environ) -> Self {
        Self {
            reader: Some(reader),
            writer,
            errors,
            environ,
            info: GatewayInfo::new(Protocol::Http)
                .with_origin_server(true)
                .with_multiprocess(false),
        }
    }

    /// wsgiref's `BaseCGIHandler`: CGI head, the same flags as `SimpleHandler`
    /// unless changed with [`flags`](StreamGateway::flags).
    pub fn cgi(reader: R, writer: W, errors: ErrorStream, environ: Environ) -> Self {
        let mut gw = Self::origin(reader, writer, errors, environ);
        gw.info = GatewayInfo::new(Protocol::Cgi).with_multiprocess(false);
        gw
    }

    /// Sets wsgi.multithread, wsgi.multiprocess and wsgi.run_once.
    pub fn flags(&mut self, multithread: bool, multiprocess: bool, run_once: bool) -> &mut Self {
        self.info = self
            .info
            .clone()
            .with_multithread(multithread)
            .with_multiprocess(multiprocess)
            .with_run_once(run_once);
        self
    }

    /// Sets the protocol reported in [`GatewayInfo`](crate::GatewayInfo).
    pub fn protocol(&mut self, protocol: Protocol) -> &mut Self {
        self.info.protocol = protocol;
        self
    }

    /// Sets whether the head is written in the origin form.
    pub fn origin_server(&mut self, origin: bool) -> &mut Self {
        self.info.origin_server = origin;
        self
    }

    /// The writer, to look at what was written.
    pub fn writer(&self) -> &W {
        &self.writer
    }

    /// Gives back the writer.
    pub fn into_writer(self) -> W {
        self.writer
    }
}

impl<R, W> Gateway for StreamGateway<R, W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin,
{
    const LENGTH_APART: bool = true;

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.writer.write_all(&data).await
    }

    async fn write_buf(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        self.writer.write_all(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }

    fn stdin(&mut self, environ: &Environ) -> Body {
        match (environ.body_length(), self.reader.take()) {
            (Ok(BodyLength::Known(n)), Some(r)) => Body::from_reader(r, Some(n)),
            (Ok(BodyLength::Unknown), Some(r)) => Body::from_reader(r, None),
            _ => Body::empty(),
        }
    }

    fn stderr(&self) -> ErrorStream {
        self.errors.clone()
    }

    fn add_cgi_vars(&mut self, environ: &mut Environ) {
        environ.extend_from(&self.environ);
    }

    fn info(&self) -> GatewayInfo {
        self.info.clone()
    }
}

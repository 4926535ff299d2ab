//! Handing file bodies to the web server: `X-Accel-Redirect` (nginx),
//! `X-Sendfile` (lighttpd, Apache `mod_xsendfile`) and
//! `X-LIGHTTPD-send-file` (lighttpd).
//!
//! An application that answers with a [`FileBody`](crate::FileBody) made by
//! [`FileBody::open`](crate::FileBody::open) and
//! [`into_response`](crate::FileBody::into_response) leaves the file's path
//! and region in the response. [`OffloadLayer`] turns such a response into
//! one header and an empty body; the web server then sends the file itself
//! (with `sendfile(2)`, its own range and conditional request handling, and
//! without tying up the application while a slow client downloads).
//!
//! ```
//! use gateway_core::offload::OffloadLayer;
//!
//! // nginx: `location /protected/ { internal; alias /srv/files/; }`
//! let layer = OffloadLayer::nginx("/srv/files", "/protected/");
//! // lighttpd: `"x-sendfile" => "enable"` in the fastcgi.server entry.
//! let layer = OffloadLayer::lighttpd("/srv/files");
//! // Apache httpd with mod_xsendfile: `XSendFile On`, `XSendFilePath /srv/files`.
//! let layer = OffloadLayer::apache("/srv/files");
//! # let _ = layer;
//! ```
//!
//! Wrap the application with it like any tower layer
//! (`ServiceBuilder::new().layer(layer).service(app)`, or axum's
//! `Router::layer`).
//!
//! # What is offloaded
//!
//! A response is handed to the web server only when all of these hold;
//! otherwise it is sent as it is, unchanged (a debug-level log line says
//! why):
//!
//! - its status is 200 (the web server answers with the status of the file
//!   it serves, so a 404 page or a 206 would turn into a 200);
//! - it carries the region of a file body opened from a path, and the
//!   region is the whole file: a body made with
//!   [`FileBody::from_file`](crate::FileBody::from_file), or a part of a
//!   file (an application that answers `Range` requests itself), is
//!   streamed by the gateway. The web server answers `Range` and
//!   conditional requests for offloaded files itself;
//! - the file's real path (symbolic links and `..` resolved) lies inside
//!   one of the configured roots, and still names the very file that was
//!   opened (same device and inode): a name that escapes the root with
//!   `..` or through a symbolic link is never offloaded;
//! - the path can be written the way the web server reads it (see
//!   [`PathEncoding`]);
//! - the response does not already carry the header.
//!
//! The response then keeps its other headers (`Content-Type`,
//! `Content-Disposition`, `Cache-Control`, cookies: what the web server
//! passes on is its own business), loses `Content-Length` and the file
//! region, and gets the header; its body is empty. The checks cost a
//! `stat`, an `fstat` and a `realpath` on each file response, made on the
//! calling thread.
//!
//! # The web server's configuration decides, never the client
//!
//! The header's name and the path mapping come from the layer's
//! configuration only. Nothing in the request is read: a client's
//! `X-Sendfile-Type` or `X-Accel-Mapping` header has no effect. (Rack's
//! `Rack::Sendfile` took both from request headers, so a client could make
//! the proxy serve files of its choosing where the proxy did not overwrite
//! them: CVE-2025-61780.) The web server must in turn accept the header only
//! from the application: nginx's `internal` location, lighttpd's
//! `x-sendfile-docroot`, Apache's `XSendFilePath` limit what it serves.
//!
//! # Relation to the backend's hook
//!
//! A backend's [`Gateway::sendfile`](crate::Gateway::sendfile) sends a file
//! body itself, after the head. Handing the file to the web server is done
//! here, above the application, the same way for every protocol, so no
//! backend needs a hook for it.

use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::file::FileRegion;

/// The header that hands a file to the web server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OffloadHeader {
    /// `X-Accel-Redirect`: nginx redirects the request internally to this
    /// URI, which an `internal` location maps to the files.
    XAccelRedirect,
    /// `X-Sendfile`: lighttpd (`"x-sendfile" => "enable"`) and Apache
    /// httpd's `mod_xsendfile` send the file at this path.
    XSendfile,
    /// `X-LIGHTTPD-send-file`: lighttpd's older name for `X-Sendfile`.
    XLighttpdSendFile,
}

impl OffloadHeader {
    /// The header's name.
    pub fn name(self) -> HeaderName {
        HeaderName::from_static(match self {
            OffloadHeader::XAccelRedirect => "x-accel-redirect",
            OffloadHeader::XSendfile => "x-sendfile",
            OffloadHeader::XLighttpdSendFile => "x-lighttpd-send-file",
        })
    }
}

/// How the path is written in the header, which is how the web server
/// decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathEncoding {
    /// lighttpd: the value is a file-system path that lighttpd
    /// percent-decodes and then requires to be UTF-8. Encoded as
    /// [`Percent`](PathEncoding::Percent); a path that is not UTF-8 is not
    /// offloaded.
    PercentUtf8,
    /// nginx (the value is a URI that nginx percent-decodes once, before
    /// it splits off a query at `?`), and Apache httpd's `mod_xsendfile` 1.0
    /// (with `XSendFileUnescape On`, its default): every byte but letters,
    /// digits, `-._~` and `/` is percent-encoded, so any name can be
    /// written (`%`, `?`, `#`, spaces, bytes that are not UTF-8).
    Percent,
    /// Apache httpd's `mod_xsendfile` 0.12 (Debian 12's
    /// `libapache2-mod-xsendfile`), or 1.0 with `XSendFileUnescape Off`:
    /// the path's bytes as they are. A path holding a control character,
    /// or ending in white space, is not offloaded.
    Raw,
}

#[derive(Debug, Clone)]
struct Mapping {
    /// As configured.
    root: PathBuf,
    /// The root's real path, found once it exists.
    real_root: OnceLock<PathBuf>,
    /// Unencoded, ending in `/`.
    target: Vec<u8>,
}

impl Mapping {
    fn real_root(&self) -> Option<&Path> {
        if let Some(real) = self.real_root.get() {
            return Some(real);
        }
        let real = std::fs::canonicalize(&self.root).ok()?;
        Some(self.real_root.get_or_init(|| real))
    }
}

#[derive(Debug, Clone)]
struct Config {
    header: OffloadHeader,
    name: HeaderName,
    encoding: PathEncoding,
    mappings: Vec<Mapping>,
}

/// A tower layer that hands whole-file responses to the web server; see
/// the [module documentation](self).
///
/// Cheap to clone. Configured once, when the application is built; see
/// [`nginx`](OffloadLayer::nginx), [`lighttpd`](OffloadLayer::lighttpd),
/// [`apache`](OffloadLayer::apache), or [`new`](OffloadLayer::new) with
/// [`map`](OffloadLayer::map) for any other combination.
#[derive(Clone)]
pub struct OffloadLayer {
    config: Arc<Config>,
}

impl fmt::Debug for OffloadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadLayer")
            .field("header", &self.config.header)
            .field("encoding", &self.config.encoding)
            .field(
                "mappings",
                &self
                    .config
                    .mappings
                    .iter()
                    .map(|m| (&m.root, String::from_utf8_lossy(&m.target)))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl OffloadLayer {
    /// A layer that writes `header` with paths encoded as `encoding`, and
    /// offloads nothing until [`map`](OffloadLayer::map) adds a root.
    pub fn new(header: OffloadHeader, encoding: PathEncoding) -> Self {
        Self {
            config: Arc::new(Config {
                header,
                name: header.name(),
                encoding,
                mappings: Vec::new(),
            }),
        }
    }

    /// nginx: files under `root` are sent as `X-Accel-Redirect:
    /// <uri_prefix><path below root>`, percent-encoded
    /// ([`PathEncoding::Percent`]). nginx needs an `internal` location for
    /// the prefix that maps it back to `root`:
    ///
    /// ```text
    /// location /protected/ {
    ///     internal;
    ///     alias /srv/files/;
    /// }
    /// ```
    pub fn nginx(root: impl Into<PathBuf>, uri_prefix: impl AsRef<str>) -> Self {
        Self::new(OffloadHeader::XAccelRedirect, PathEncoding::Percent)
            .map(root, uri_prefix.as_ref())
    }

    /// lighttpd: files under `root` are sent as `X-Sendfile: <real path>`,
    /// percent-encoded ([`PathEncoding::PercentUtf8`]). lighttpd needs
    /// `"x-sendfile" => "enable"` and `"x-sendfile-docroot" => ( "<root>" )`
    /// in the `fastcgi.server` (or `scgi.server`) entry, or
    /// `cgi.x-sendfile = "enable"` for CGI.
    pub fn lighttpd(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let target = root.clone();
        Self::new(OffloadHeader::XSendfile, PathEncoding::PercentUtf8).map(root, target)
    }

    /// Apache httpd with `mod_xsendfile`: files under `root` are sent as
    /// `X-Sendfile: <real path>`, the path's bytes as they are
    /// ([`PathEncoding::Raw`], for `mod_xsendfile` 0.12 as Debian 12 ships
    /// it; for 1.0, whose `XSendFileUnescape` is on by default, add
    /// `.encoding(PathEncoding::Percent)`). Apache needs `XSendFile On` and
    /// `XSendFilePath <root>`.
    pub fn apache(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let target = root.clone();
        Self::new(OffloadHeader::XSendfile, PathEncoding::Raw).map(root, target)
    }

    /// Adds a root: a file whose real path lies below `root` is offloaded
    /// as `target` followed by its path below the root. For
    /// `X-Accel-Redirect`, `target` is the URI prefix of the `internal`
    /// location; for `X-Sendfile`, the directory where the web server sees
    /// the root (the same path, unless it runs in another file-system
    /// view). Both are written unencoded: the layer encodes the whole
    /// value. A `/` is added to `target` when it does not end in one.
    ///
    /// The root's real path is looked up once it exists (symbolic links in
    /// it resolved); until then nothing below it is offloaded. The first
    /// root that holds a file wins.
    pub fn map(mut self, root: impl Into<PathBuf>, target: impl AsRef<OsStr>) -> Self {
        let mut target = target.as_ref().as_bytes().to_vec();
        if !target.ends_with(b"/") {
            target.push(b'/');
        }
        let config = Arc::make_mut(&mut self.config);
        config.mappings.push(Mapping {
            root: root.into(),
            real_root: OnceLock::new(),
            target,
        });
        self
    }

    /// Sets how paths are written (each constructor picks its web server's
    /// way).
    pub fn encoding(mut self, encoding: PathEncoding) -> Self {
        Arc::make_mut(&mut self.config).encoding = encoding;
        self
    }

    /// The header this layer writes.
    pub fn header(&self) -> OffloadHeader {
        self.config.header
    }

    /// The header value that hands `region` to the web server, or `None`
    /// when it is not offloaded (not a whole file opened from a path,
    /// outside every root, or not expressible; see the module docs). Blocks
    /// on a few file-system calls.
    pub fn header_value(&self, region: &FileRegion) -> Option<HeaderValue> {
        match self.value_for(region) {
            Ok(v) => Some(v),
            Err(why) => {
                tracing::debug!(path = ?region.path(), "file not offloaded: {why}");
                None
            }
        }
    }

    fn value_for(&self, region: &FileRegion) -> Result<HeaderValue, &'static str> {
        let path = region.path().ok_or("the body was not opened from a path")?;
        let opened = region
            .file()
            .metadata()
            .map_err(|_| "cannot stat the open file")?;
        if !opened.is_file() {
            return Err("not a regular file");
        }
        if region.offset() != 0 || region.len() != opened.len() {
            return Err("the body is a part of the file");
        }
        let real = std::fs::canonicalize(path).map_err(|_| "the path no longer resolves")?;
        let named = std::fs::metadata(&real).map_err(|_| "the path no longer resolves")?;
        if (named.dev(), named.ino()) != (opened.dev(), opened.ino()) {
            return Err("the path names another file than the one opened");
        }
        let (mapping, rest) = self
            .config
            .mappings
            .iter()
            .find_map(|m| {
                let rest = real.strip_prefix(m.real_root()?).ok()?;
                (!rest.as_os_str().is_empty()).then_some((m, rest))
            })
            .ok_or("outside every configured root")?;
        let mut plain = mapping.target.clone();
        for (i, part) in rest.components().enumerate() {
            let Component::Normal(part) = part else {
                return Err("unexpected path component");
            };
            if i > 0 {
                plain.push(b'/');
            }
            plain.extend_from_slice(part.as_bytes());
        }
        encode(&plain, self.config.encoding)
    }

    /// Adds the header for `region` to `headers` and returns true, or
    /// returns false and leaves them alone (what the layer does to a
    /// qualifying response, for code that builds responses itself).
    pub fn offload_headers(&self, region: &FileRegion, headers: &mut HeaderMap) -> bool {
        if headers.contains_key(&self.config.name) {
            return false;
        }
        match self.header_value(region) {
            Some(v) => {
                headers.insert(self.config.name.clone(), v);
                true
            }
            None => false,
        }
    }

    /// Offloads `res` when it qualifies (see the module docs), else hands
    /// it back unchanged. What the layer's service does with every
    /// response.
    pub fn offload<B>(&self, res: Response<B>) -> Response<OffloadBody<B>> {
        if res.status() != StatusCode::OK {
            return res.map(OffloadBody::new);
        }
        let Some(region) = res.extensions().get::<FileRegion>() else {
            return res.map(OffloadBody::new);
        };
        if res.headers().contains_key(&self.config.name) {
            return res.map(OffloadBody::new);
        }
        let Some(value) = self.header_value(region) else {
            return res.map(OffloadBody::new);
        };
        let (mut parts, body) = res.into_parts();
        drop(body);
        parts.extensions.remove::<FileRegion>();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(self.config.name.clone(), value);
        Response::from_parts(parts, OffloadBody::offloaded())
    }
}

/// Writes `plain` (a path or URI path, unencoded) as `encoding` says.
fn encode(plain: &[u8], encoding: PathEncoding) -> Result<HeaderValue, &'static str> {
    let value = match encoding {
        PathEncoding::Raw => {
            if plain.iter().any(|&b| b < 0x20 || b == 0x7f) {
                return Err("the path holds a control character");
            }
            if plain.last().is_some_and(|&b| b == b' ') {
                return Err("the path ends in white space");
            }
            Bytes::copy_from_slice(plain)
        }
        PathEncoding::Percent | PathEncoding::PercentUtf8 => {
            if encoding == PathEncoding::PercentUtf8 && std::str::from_utf8(plain).is_err() {
                return Err("the path is not UTF-8");
            }
            percent_encode(plain)
        }
    };
    HeaderValue::from_maybe_shared(value).map_err(|_| "not a valid header value")
}

fn percent_encode(plain: &[u8]) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = BytesMut::with_capacity(plain.len() + 16);
    for &b in plain {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.put_u8(b);
        } else {
            out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    out.freeze()
}

impl<S> tower::Layer<S> for OffloadLayer {
    type Service = Offload<S>;

    fn layer(&self, inner: S) -> Offload<S> {
        Offload {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`OffloadLayer`] makes: the application, with its whole-file
/// responses handed to the web server.
#[derive(Debug, Clone)]
pub struct Offload<S> {
    inner: S,
    layer: OffloadLayer,
}

impl<S, ReqBody, B> tower::Service<Request<ReqBody>> for Offload<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<B>>,
{
    type Response = Response<OffloadBody<B>>;
    type Error = S::Error;
    type Future = OffloadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        OffloadFuture {
            inner: self.inner.call(req),
            layer: self.layer.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`Offload`].
    pub struct OffloadFuture<F> {
        #[pin]
        inner: F,
        layer: OffloadLayer,
    }
}

impl<F> fmt::Debug for OffloadFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for OffloadFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<OffloadBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(this.layer.offload(res)))
    }
}

pin_project! {
    /// The body of a response that went through [`OffloadLayer`]: the
    /// application's body, or nothing when the web server sends the file.
    pub struct OffloadBody<B> {
        #[pin]
        inner: Option<B>,
    }
}

impl<B> OffloadBody<B> {
    fn new(body: B) -> Self {
        Self { inner: Some(body) }
    }

    fn offloaded() -> Self {
        Self { inner: None }
    }

    /// Whether the web server sends this response's file (the body is
    /// empty).
    pub fn is_offloaded(&self) -> bool {
        self.inner.is_none()
    }
}

impl<B> fmt::Debug for OffloadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadBody")
            .field("offloaded", &self.is_offloaded())
            .finish()
    }
}

impl<B: http_body::Body> http_body::Body for OffloadBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.project().inner.as_pin_mut() {
            Some(body) => body.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved_bytes_and_slashes() {
        let got = percent_encode("/a b/grüße%?#+&.txt".as_bytes());
        assert_eq!(&got[..], b"/a%20b/gr%C3%BC%C3%9Fe%25%3F%23%2B%26.txt");
    }

    #[test]
    fn encodings_refuse_what_the_server_would_misread() {
        assert_eq!(
            encode(b"/p/a%41?b", PathEncoding::Percent).unwrap(),
            "/p/a%2541%3Fb"
        );
        assert!(encode(b"/p/a%b", PathEncoding::PercentUtf8).is_ok());
        assert!(encode(b"/p/\xff", PathEncoding::PercentUtf8).is_err());
        assert_eq!(encode(b"/p/\xff", PathEncoding::Percent).unwrap(), "/p/%FF");
        assert_eq!(
            encode("/p/grüße".as_bytes(), PathEncoding::Raw)
                .unwrap()
                .as_bytes(),
            "/p/grüße".as_bytes()
        );
        assert!(encode(b"/p/a\nb", PathEncoding::Raw).is_err());
        assert!(encode(b"/p/a\tb", PathEncoding::Raw).is_err());
        assert!(encode(b"/p/a ", PathEncoding::Raw).is_err());
    }
}

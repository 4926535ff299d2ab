//! One HTTP request as a [`Gateway`]: the environ derived from hyper's
//! request the way wsgiref's `simple_server` does, the head handed to hyper
//! as a structured response, body chunks sent through a bounded channel.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::{
    Body, BoxError, Environ, ErrorStream, Gateway, HeadFormat, Protocol, ResponseHead,
};
use http::request::Parts;
use http::response;
use http::{HeaderMap, HeaderValue, Method, Response, Version, header};
use tokio::sync::{mpsc, oneshot};

/// What the connection's response body reads from.
pub(crate) type Chunk = Result<Bytes, BoxError>;

/// Where the gateway leaves the request's headers once the environ is
/// derived from them, for the application (no copy).
#[derive(Clone, Default)]
pub(crate) struct HeaderSlot(Arc<Mutex<Option<HeaderMap>>>);

impl HeaderSlot {
    fn put(&self, headers: HeaderMap) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(headers);
        }
    }

    /// The headers, once.
    pub(crate) fn take(&self) -> Option<HeaderMap> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A connection's addresses, formatted once for every request's environ.
pub(crate) struct Addrs {
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    local_ip: Bytes,
    local_port: Bytes,
    peer_ip: Bytes,
    peer_port: Bytes,
}

impl Addrs {
    pub(crate) fn new(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Self {
        let ip = |a: Option<SocketAddr>| a.map(|a| Bytes::from(a.ip().to_string()));
        let port = |a: Option<SocketAddr>| a.map(|a| Bytes::from(a.port().to_string()));
        Self {
            peer,
            local,
            local_ip: ip(local).unwrap_or_default(),
            local_port: port(local).unwrap_or_default(),
            peer_ip: ip(peer).unwrap_or_default(),
            peer_port: port(peer).unwrap_or_default(),
        }
    }
}

/// One request on an HTTP connection.
pub(crate) struct HttpGateway {
    pub(crate) parts: Parts,
    pub(crate) headers: HeaderSlot,
    pub(crate) body: Option<Body>,
    pub(crate) addrs: Arc<Addrs>,
    pub(crate) head_tx: Option<oneshot::Sender<response::Parts>>,
    pub(crate) body_tx: mpsc::Sender<Chunk>,
    pub(crate) server_software: Option<Bytes>,
    pub(crate) errors: ErrorStream,
    pub(crate) write_timeout: Duration,
}

impl HttpGateway {
    /// Whether the head went to hyper.
    pub(crate) fn head_sent(&self) -> bool {
        self.head_tx.is_none()
    }

    /// Ends the response body with an error, so hyper closes the connection
    /// without a clean end (no chunked terminator, a short Content-Length
    /// body; an HTTP/2 stream reset): the client sees truncation (H10, H11).
    pub(crate) async fn abort(&mut self, why: &'static str) {
        let _ = self.body_tx.send(Err(why.into())).await;
    }
}

impl Gateway for HttpGateway {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        // Room in the channel: no timer needed.
        let data = match self.body_tx.try_send(Ok(data)) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            Err(mpsc::error::TrySendError::Full(data)) => data,
        };
        match tokio::time::timeout(self.write_timeout, self.body_tx.send(data)).await {
            Ok(Ok(())) => Ok(()),
            // hyper dropped the body: the client went away.
            Ok(Err(_)) => Err(io::ErrorKind::BrokenPipe.into()),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "writing the response timed out",
            )),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        // hyper flushes whenever the body would block.
        Ok(())
    }

    fn stdin(&mut self, _environ: &Environ) -> Body {
        self.body.take().unwrap_or_default()
    }

    fn stderr(&self) -> ErrorStream {
        self.errors.clone()
    }

    fn add_cgi_vars(&mut self, env: &mut Environ) {
        derive_environ(env, &self.parts, &self.addrs, self.server_software.as_ref());
        self.headers.put(std::mem::take(&mut self.parts.headers));
    }

    fn origin_server(&self) -> bool {
        true
    }

    fn protocol(&self) -> Protocol {
        Protocol::Http
    }

    fn multiprocess(&self) -> bool {
        false
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.addrs.peer
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.addrs.local
    }

    /// Hands the head to hyper (which writes the status line and adds
    /// `Date`) and leaves `buf` empty.
    fn write_head(&mut self, head: &ResponseHead<'_>, _format: &HeadFormat, _buf: &mut BytesMut) {
        let Some(tx) = self.head_tx.take() else {
            return;
        };
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = head.status;
        let mut headers = HeaderMap::with_capacity(head.headers.len() + 1);
        // H1: Server comes before the application's headers.
        if let Some(s) = &self.server_software
            && !head.headers.contains_key(header::SERVER)
            && let Ok(v) = HeaderValue::from_maybe_shared(s.clone())
        {
            headers.insert(header::SERVER, v);
        }
        for (name, value) in head.headers {
            headers.append(name.clone(), value.clone());
        }
        parts.headers = headers;
        if let Some(reason) = head.reason
            && let Ok(r) = hyper::ext::ReasonPhrase::try_from(Bytes::copy_from_slice(reason))
        {
            parts.extensions.insert(r);
        }
        let _ = tx.send(parts);
    }
}

/// The CGI meta-variables for an HTTP request, as wsgiref's
/// `WSGIRequestHandler.get_environ` makes them (H2, H6): `SCRIPT_NAME` is
/// empty, `PATH_INFO` the percent-decoded path, `QUERY_STRING` raw,
/// `CONTENT_TYPE`/`CONTENT_LENGTH` only when the request has them (no
/// `text/plain` default, H6), `HTTP_*` with repeated fields joined by `,`.
/// Header names holding `_` are left out of the environ (as `simple_server`
/// does, so `X_Forwarded_For` cannot pose as `X-Forwarded-For`); the
/// application still sees every header in the request.
pub(crate) fn derive_environ(
    env: &mut Environ,
    parts: &Parts,
    addrs: &Addrs,
    software: Option<&Bytes>,
) {
    let uri = &parts.uri;
    env.insert("SERVER_SOFTWARE", software.cloned().unwrap_or_default());
    env.insert("GATEWAY_INTERFACE", "CGI/1.1");
    env.insert("SERVER_PROTOCOL", version_str(parts.version));
    env.insert("REQUEST_METHOD", method_bytes(&parts.method));
    env.insert("SCRIPT_NAME", "");
    env.insert("PATH_INFO", percent_decode(uri.path().as_bytes()));
    env.insert("QUERY_STRING", uri.query().unwrap_or_default().to_owned());
    let raw = uri.path_and_query().map_or("/", |pq| pq.as_str());
    env.insert("REQUEST_URI", raw.to_owned());

    // SERVER_NAME/PORT: the Host the client asked for, else the socket.
    let host = parts
        .headers
        .get(header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()));
    let host_name = host.map(|h| split_host(h).0).filter(|h| !h.is_empty());
    match (host_name, addrs.local) {
        (Some(h), _) => env.insert("SERVER_NAME", Bytes::copy_from_slice(h)),
        (None, Some(_)) => env.insert("SERVER_NAME", addrs.local_ip.clone()),
        (None, None) => env.insert("SERVER_NAME", "localhost"),
    };
    let port = match (addrs.local, host.and_then(|h| split_host(h).1)) {
        (Some(_), _) => addrs.local_port.clone(),
        (None, Some(p)) => Bytes::copy_from_slice(p),
        (None, None) => Bytes::from_static(b"80"),
    };
    env.insert("SERVER_PORT", port);
    if addrs.peer.is_some() {
        env.insert("REMOTE_ADDR", addrs.peer_ip.clone());
        env.insert("REMOTE_PORT", addrs.peer_port.clone());
    }

    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        env.insert("CONTENT_TYPE", Bytes::copy_from_slice(ct.as_bytes()));
    }
    if let Some(cl) = parts.headers.get(header::CONTENT_LENGTH) {
        env.insert("CONTENT_LENGTH", Bytes::copy_from_slice(cl.as_bytes()));
    }
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = uri.authority()
    {
        // HTTP/2 carries the host in :authority.
        env.insert("HTTP_HOST", a.as_str().to_owned());
    }
    for name in parts.headers.keys() {
        if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH {
            continue;
        }
        if name.as_str().contains('_') {
            continue;
        }
        let key = env_name(name.as_str());
        let mut values = parts.headers.get_all(name).iter();
        let value = match (values.next(), values.next()) {
            (Some(v), None) => Bytes::copy_from_slice(v.as_bytes()),
            _ => {
                let mut value = BytesMut::new();
                for (i, v) in parts.headers.get_all(name).iter().enumerate() {
                    if i > 0 {
                        value.extend_from_slice(b",");
                    }
                    value.extend_from_slice(v.as_bytes());
                }
                value.freeze()
            }
        };
        env.insert(key, value);
    }
}

/// `user-agent` → `HTTP_USER_AGENT` (common names without allocating).
fn env_name(name: &str) -> Bytes {
    let known: &'static str = match name {
        "host" => "HTTP_HOST",
        "user-agent" => "HTTP_USER_AGENT",
        "accept" => "HTTP_ACCEPT",
        "accept-encoding" => "HTTP_ACCEPT_ENCODING",
        "accept-language" => "HTTP_ACCEPT_LANGUAGE",
        "connection" => "HTTP_CONNECTION",
        "cookie" => "HTTP_COOKIE",
        "referer" => "HTTP_REFERER",
        "authorization" => "HTTP_AUTHORIZATION",
        _ => {
            let mut key = BytesMut::with_capacity(5 + name.len());
            key.extend_from_slice(b"HTTP_");
            key.extend(name.bytes().map(|b| {
                if b == b'-' {
                    b'_'
                } else {
                    b.to_ascii_uppercase()
                }
            }));
            return key.freeze();
        }
    };
    Bytes::from_static(known.as_bytes())
}

fn method_bytes(m: &Method) -> Bytes {
    let known: &'static str = match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => return Bytes::copy_from_slice(m.as_str().as_bytes()),
    };
    Bytes::from_static(known.as_bytes())
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `host:port` → (`host`, `port`), keeping `[v6]` hosts whole.
fn split_host(h: &[u8]) -> (&[u8], Option<&[u8]>) {
    let close = h.iter().rposition(|&b| b == b']');
    match h.iter().rposition(|&b| b == b':') {
        Some(i) if close.is_none_or(|c| i > c) => (&h[..i], h.get(i + 1..)),
        _ => (h, None),
    }
}

/// Percent-decodes a path (an invalid escape stays as it is).
pub(crate) fn percent_decode(s: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| (c as char).to_digit(16)),
                s.get(i + 2).and_then(|&c| (c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_paths() {
        assert_eq!(&percent_decode(b"/p%61th/%2F%zz%4")[..], b"/path//%zz%4");
    }

    #[test]
    fn env_names_and_methods() {
        assert_eq!(&env_name("user-agent")[..], b"HTTP_USER_AGENT");
        assert_eq!(&env_name("x-test-header")[..], b"HTTP_X_TEST_HEADER");
        assert_eq!(&method_bytes(&Method::HEAD)[..], b"HEAD");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(&method_bytes(&odd)[..], b"PROPFIND");
    }

    #[test]
    fn splits_hosts() {
        assert_eq!(split_host(b"a:80"), (&b"a"[..], Some(&b"80"[..])));
        assert_eq!(split_host(b"[::1]"), (&b"[::1]"[..], None));
        assert_eq!(split_host(b"[::1]:8"), (&b"[::1]"[..], Some(&b"8"[..])));
    }
}

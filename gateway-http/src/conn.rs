//! One connection: hyper drives HTTP/1.1 or HTTP/2, every request runs the
//! core handler on its own task.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use gateway_core::server::Connection;
use gateway_core::{Body, BoxError, ErrorStream, Handler};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::{mpsc, oneshot};
use tower::Service;

use crate::body::TimeoutBody;
use crate::gateway::{Addrs, Chunk, HeaderSlot, HttpGateway};

/// What every connection of a server shares.
pub(crate) struct Shared<S> {
    pub(crate) app: S,
    pub(crate) handler: Handler,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) server_software: Option<Bytes>,
    pub(crate) errors: ErrorStream,
}

/// Serves one accepted connection until it closes or the server stops.
pub(crate) async fn serve_connection<S, B>(conn: Connection, shared: Arc<Shared<S>>)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError> + Send,
{
    let Connection {
        stream,
        peer_addr,
        local_addr,
        mut shutdown,
        ..
    } = conn;
    let svc_shared = shared.clone();
    let addrs = Arc::new(Addrs::new(peer_addr, local_addr));
    let svc =
        hyper::service::service_fn(move |req| respond(req, svc_shared.clone(), addrs.clone()));
    let c = shared.builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(c);
    let result = tokio::select! {
        r = c.as_mut() => r,
        _ = shutdown.stopping() => {
            // Finish the request in flight, then close (HTTP/2: GOAWAY).
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The hyper service: starts the handler on its own task and resolves with
/// the head as soon as the pipeline hands it over.
async fn respond<S, B>(
    req: Request<Incoming>,
    shared: Arc<Shared<S>>,
    addrs: Arc<Addrs>,
) -> Result<Response<ResponseBody>, BoxError>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError> + Send,
{
    let (parts, incoming) = req.into_parts();
    let limits = shared.handler.limits();
    let incoming = TimeoutBody::new(incoming, limits.get_body_read_timeout());
    let body = match limits.get_max_body_len() {
        Some(max) => Body::new(Limited::new(
            incoming,
            usize::try_from(max).unwrap_or(usize::MAX),
        )),
        None => Body::new(incoming),
    };
    let (head_tx, mut head_rx) = oneshot::channel();
    let (body_tx, mut body_rx) = mpsc::channel(4);
    let headers = HeaderSlot::default();
    let app = OriginalHeaders {
        inner: shared.app.clone(),
        headers: headers.clone(),
    };
    let mut gw = HttpGateway {
        parts,
        headers,
        body: Some(body),
        addrs,
        head_tx: Some(head_tx),
        body_tx,
        server_software: shared.server_software.clone(),
        errors: shared.errors.clone(),
        write_timeout: limits.get_write_timeout(),
    };
    let handler = shared.handler.clone();
    // The handler runs inside this future until the head is out, then inside
    // the response body, which hyper polls: no task per request, and a
    // client that goes away drops (cancels) the application with the body.
    let mut driver: Option<Driver> = Some(Box::pin(async move {
        let outcome = handler.run(&mut gw, app).await;
        if gw.head_sent() && (outcome.is_aborted() || outcome.is_failed()) {
            gw.abort("response aborted").await;
        }
    }));
    let head = poll_fn(|cx| {
        if let Poll::Ready(r) = Pin::new(&mut head_rx).poll(cx) {
            return Poll::Ready(r.ok());
        }
        if let Some(d) = &mut driver
            && d.as_mut().poll(cx).is_ready()
        {
            driver = None;
        }
        match head_rx.try_recv() {
            Ok(parts) => Poll::Ready(Some(parts)),
            Err(oneshot::error::TryRecvError::Empty) if driver.is_some() => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    })
    .await;
    let Some(parts) = head else {
        // Nothing could be sent (not even the error page): close.
        return Err("the request ended without a response".into());
    };
    // The core decides the framing: only a response it gave a
    // Content-Length is offered to hyper with an exact size.
    let sized = parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let body = if driver.is_none() && body_rx.len() <= 1 {
        // The handler is done and wrote at most one chunk (the common case:
        // the coalesced body): hand hyper a body of known size.
        match body_rx.try_recv() {
            Ok(Ok(data)) => ResponseBody::whole(Some(data), None, sized),
            Ok(Err(e)) => ResponseBody::whole(None, Some(e), sized),
            Err(_) => ResponseBody::whole(None, None, sized),
        }
    } else {
        ResponseBody {
            rx: Some(body_rx),
            driver,
            whole: None,
            error: None,
            error_ready: false,
            sized: false,
        }
    };
    Ok(Response::from_parts(parts, body))
}

/// The rest of a request's handler, driven by the response body.
type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Gives the application the request's headers as they arrived (repeated
/// fields stay separate, H2), in place of the ones the core rebuilt from the
/// environ (where they are joined with `,`).
#[derive(Clone)]
struct OriginalHeaders<S> {
    inner: S,
    headers: HeaderSlot,
}

impl<S, B> Service<Request<Body>> for OriginalHeaders<S>
where
    S: Service<Request<Body>, Response = B>,
{
    type Response = B;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> S::Future {
        if let Some(h) = self.headers.take() {
            *req.headers_mut() = h;
        }
        self.inner.call(req)
    }
}

/// The response body hyper writes: chunks from the handler (through a
/// channel while it runs, or the whole body when it finished at once); an
/// error aborts the response.
///
/// hyper drops what it has buffered when a body fails, so an error is held
/// back for one poll: the body says "not ready" first, hyper flushes what it
/// has to the socket, and the next poll fails. The client gets every byte the
/// application produced, then a close without a clean end.
pub(crate) struct ResponseBody {
    rx: Option<mpsc::Receiver<Chunk>>,
    driver: Option<Driver>,
    whole: Option<Bytes>,
    error: Option<BoxError>,
    error_ready: bool,
    sized: bool,
}

impl ResponseBody {
    fn whole(data: Option<Bytes>, error: Option<BoxError>, sized: bool) -> Self {
        Self {
            rx: None,
            driver: None,
            whole: data.filter(|d| !d.is_empty()),
            error,
            error_ready: false,
            sized,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(data) = this.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        loop {
            if this.error.is_some() {
                if this.error_ready {
                    return Poll::Ready(this.error.take().map(Err));
                }
                this.error_ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let Some(rx) = &mut this.rx else {
                return Poll::Ready(None);
            };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(Some(Err(e))) => {
                    this.error = Some(e);
                    continue;
                }
                Poll::Ready(None) => {
                    this.rx = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            // Nothing queued: let the handler produce more.
            match &mut this.driver {
                Some(d) => {
                    ready!(d.as_mut().poll(cx));
                    this.driver = None;
                }
                None => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none() && self.whole.is_none() && self.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.rx, &self.whole, &self.error) {
            (None, Some(d), None) if self.sized => SizeHint::with_exact(d.len() as u64),
            (None, None, None) if self.sized => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

//! The `/offload` routes: a file from the fixture directory through the
//! app's [`OffloadLayer`], with counters that tell what the app itself sent.

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use gateway_core::offload::OffloadLayer;
use gateway_core::{Body, BoxError, FileBody};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::json;
use tower::{Layer, ServiceExt};

use super::{ConfBody, full, text};

/// The offload configuration and what went through it.
#[derive(Debug, Default)]
pub(super) struct OffloadRoute {
    pub(super) layer: Option<OffloadLayer>,
    /// Responses that left with the offload header and no body.
    offloaded: AtomicU64,
    /// Body bytes the `/offload` responses carried.
    body_bytes: AtomicU64,
}

impl OffloadRoute {
    pub(super) fn new(layer: Option<OffloadLayer>) -> Self {
        Self {
            layer,
            ..Self::default()
        }
    }
}

/// `GET /offload?name=NAME`: the file, through the layer when one is set;
/// `GET /offload/stats`: the counters as JSON.
pub(super) async fn offload(
    req: Request<Body>,
    files: &Path,
    route: &Arc<OffloadRoute>,
    rest: &[&str],
    name: Option<String>,
) -> Result<Response<ConfBody>, BoxError> {
    if rest.first() == Some(&"stats") {
        let doc = json!({
            "configured": route.layer.is_some(),
            "offloaded": route.offloaded.load(Ordering::SeqCst),
            "body_bytes": route.body_bytes.load(Ordering::SeqCst),
        });
        let mut res = Response::new(full(serde_json::to_vec(&doc)?));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(res);
    }
    let name = name.unwrap_or_default();
    if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Ok(text(StatusCode::BAD_REQUEST, "bad file name\n"));
    }
    let path = files.join(&name);
    let app = tower::service_fn(move |_req: Request<Body>| {
        let path = path.clone();
        async move {
            Ok::<_, Infallible>(match FileBody::open(&path) {
                Ok(file) => {
                    let mut res = file
                        .into_response()
                        .map(|b| b.map_err(BoxError::from).boxed_unsync());
                    res.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    res
                }
                Err(_) => text(StatusCode::NOT_FOUND, "no such file\n"),
            })
        }
    });
    let res = match &route.layer {
        Some(layer) => {
            let res = layer.layer(app).oneshot(req).await?;
            if res.body().is_offloaded() {
                route.offloaded.fetch_add(1, Ordering::SeqCst);
            }
            res.map(|b| b.boxed_unsync())
        }
        None => app.oneshot(req).await?,
    };
    let route = route.clone();
    Ok(res.map(move |body| Counted { body, route }.boxed_unsync()))
}

/// A body that adds the bytes it yields to the route's counter.
struct Counted {
    body: ConfBody,
    route: Arc<OffloadRoute>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.route
                .body_bytes
                .fetch_add(data.len() as u64, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

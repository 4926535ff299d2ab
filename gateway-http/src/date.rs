//! Writing hyper's cached `Date` afresh on the current thread.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Has hyper write the `Date` it keeps for the current thread's responses
/// afresh (it does so for a response at least a second after the last),
/// by answering one request over an in-memory pipe, without a runtime.
/// Run after a burst of connections has ended (see
/// [`ConnectionCap::on_burst_end`](gateway_core::server::ConnectionCap::on_burst_end)):
/// the date written last during the burst sits high in the thread's heap
/// and would keep the memory below it resident.
pub(crate) fn refresh() {
    answer();
}

/// The exchange behind [`refresh`]: hyper's answer, when it came whole.
fn answer() -> Option<Vec<u8>> {
    let (mut client, server) = tokio::io::duplex(1024);
    let service = hyper::service::service_fn(|_| async {
        Ok::<_, Infallible>(hyper::Response::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
        ))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let exchange = async move {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.map(|_| answer)
    };
    let mut both = pin!(async { tokio::join!(conn, exchange) });
    let mut cx = Context::from_waker(Waker::noop());
    // Everything is in memory: each poll gets further, a few are enough.
    for _ in 0..64 {
        if let Poll::Ready((_, answer)) = both.as_mut().poll(&mut cx) {
            return answer.ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    /// The exchange ends without a runtime, with a dated answer, and a
    /// second one a second later too.
    #[test]
    fn the_exchange_completes_without_a_runtime() {
        for i in 0..2 {
            if i > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1100));
            }
            let answer = super::answer().expect("the exchange ended");
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            assert!(text.starts_with("http/1.1 200"), "{text}");
            assert!(text.contains("\r\ndate: "), "{text}");
        }
    }
}

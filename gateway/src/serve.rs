//! Serving what was decided.

use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::server::{
    self, Connection, ListenAddr, Listener, Refusal, ServerOptions, Shutdown, Sniffed, Stream,
};
use gateway_core::{AppBody, Application};

use crate::Builder;
use crate::detect::{Protocol, Socket, Start};

/// How long a refused connection may take to show its protocol.
const REFUSAL_SNIFF_TIME: Duration = Duration::from_secs(1);

pub(crate) fn start<S, B>(b: &Builder, start: &Start, app: S) -> io::Result<ExitCode>
where
    S: Application<B>,
    B: AppBody,
{
    let Some(socket) = &start.socket else {
        return cgi(b, start.protocol, app);
    };
    if let (Some(protocol), Socket::Addr(addr)) = (start.protocol, socket) {
        // One protocol on one address: that server's own `run`, with its
        // threads (a single-threaded runtime per CPU unless work stealing
        // is asked for).
        run_one(b, protocol, addr, app)?;
        return Ok(ExitCode::SUCCESS);
    }
    // As the servers' own `run`: a single-threaded runtime per thread,
    // each serving every socket (see `serve_sockets`), unless work
    // stealing is asked for.
    let stealing = b.options.get_work_stealing();
    let rt = if stealing {
        server::runtime(b.options.get_worker_threads())?
    } else {
        server::runtime(Some(1))?
    };
    rt.block_on(Box::pin(serve_sockets(
        b,
        start.protocol,
        socket,
        app,
        !stealing,
    )))?;
    Ok(ExitCode::SUCCESS)
}

/// Serves one socket protocol on `addr` with its server's `run`.
#[allow(unused_variables)]
fn run_one<S, B>(b: &Builder, protocol: Protocol, addr: &ListenAddr, app: S) -> io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let options = b.options.clone();
    match protocol {
        #[cfg(feature = "fastcgi")]
        Protocol::FastCgi => gateway_fastcgi::Server::new()
            .options(options)
            .run(addr, app),
        #[cfg(feature = "scgi")]
        Protocol::Scgi => gateway_scgi::Server::new().options(options).run(addr, app),
        #[cfg(feature = "http")]
        Protocol::Http => gateway_http::Server::new().options(options).run(addr, app),
        other => Err(missing(other.name())),
    }
}

#[allow(unused_variables)]
fn cgi<S, B>(b: &Builder, protocol: Option<Protocol>, app: S) -> io::Result<ExitCode>
where
    S: Application<B>,
    B: AppBody,
{
    #[cfg(feature = "cgi")]
    {
        let mut cgi = match protocol {
            Some(Protocol::IisCgi) => gateway_cgi::Cgi::iis(),
            _ => gateway_cgi::Cgi::new(),
        };
        cgi.handler(b.options.get_handler().clone());
        Ok(cgi.run(app))
    }
    #[cfg(not(feature = "cgi"))]
    Err(missing("cgi"))
}

#[allow(dead_code)]
fn missing(feature: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("this program was built without the `{feature}` feature of the gateway crate"),
    )
}

/// The protocol servers, each with the application.
struct Servers<S, B> {
    #[cfg(feature = "fastcgi")]
    fastcgi: gateway_fastcgi::Connections<S, B>,
    #[cfg(feature = "scgi")]
    scgi: gateway_scgi::Connections<S, B>,
    #[cfg(feature = "http")]
    http: gateway_http::Connections<S, B>,
    #[cfg(not(all(feature = "fastcgi", feature = "scgi", feature = "http")))]
    _app: std::marker::PhantomData<fn() -> (S, B)>,
}

impl<S, B> Servers<S, B>
where
    S: Application<B>,
    B: AppBody,
{
    #[allow(unused_variables)]
    fn new(options: &ServerOptions, app: &S) -> Self {
        Servers {
            #[cfg(feature = "fastcgi")]
            fastcgi: gateway_fastcgi::Server::new()
                .options(options.clone())
                .connections(app.clone()),
            #[cfg(feature = "scgi")]
            scgi: gateway_scgi::Server::new()
                .options(options.clone())
                .connections(app.clone()),
            #[cfg(feature = "http")]
            http: gateway_http::Server::new()
                .options(options.clone())
                .connections(app.clone()),
            #[cfg(not(all(feature = "fastcgi", feature = "scgi", feature = "http")))]
            _app: std::marker::PhantomData,
        }
    }

    /// Serves `listener` in `protocol` until the shutdown, with `cap` on
    /// its connections.
    async fn serve(
        &self,
        protocol: Protocol,
        listener: Listener,
        cap: server::ConnectionCap,
    ) -> io::Result<()> {
        match protocol {
            #[cfg(feature = "fastcgi")]
            Protocol::FastCgi => self.fastcgi.serve_capped(listener, cap).await,
            #[cfg(feature = "scgi")]
            Protocol::Scgi => self.scgi.serve_capped(listener, cap).await,
            #[cfg(feature = "http")]
            Protocol::Http => self.http.serve_capped(listener, cap).await,
            other => {
                // With no socket protocol built in, nothing serves it.
                drop((listener, cap));
                Err(missing(other.name()))
            }
        }
    }

    /// A new cap on connections for a socket of `protocol` (`None`: its
    /// connections show theirs), which every thread serving a copy of the
    /// socket shares.
    #[allow(unused_variables)]
    fn cap_for(
        &self,
        protocol: Option<Protocol>,
        options: &ServerOptions,
    ) -> server::ConnectionCap {
        match protocol {
            #[cfg(feature = "fastcgi")]
            Some(Protocol::FastCgi) => self.fastcgi.connection_cap(),
            #[cfg(feature = "scgi")]
            Some(Protocol::Scgi) => self.scgi.connection_cap(),
            #[cfg(feature = "http")]
            Some(Protocol::Http) => self.http.connection_cap(),
            _ => self.connection_cap(options),
        }
    }

    /// Serves one connection in the protocol it showed.
    async fn serve_connection(&self, sniffed: Sniffed, conn: Connection) {
        match sniffed {
            #[cfg(feature = "fastcgi")]
            Sniffed::FastCgi => self.fastcgi.serve_connection(conn).await,
            #[cfg(feature = "scgi")]
            Sniffed::Scgi => self.scgi.serve_connection(conn).await,
            #[cfg(feature = "http")]
            Sniffed::Http => self.http.serve_connection(conn).await,
            other => tracing::debug!(
                protocol = ?other,
                peer = ?conn.peer_addr,
                "a connection in no protocol this server speaks; closed"
            ),
        }
    }

    /// A cap on connections for a socket whose connections show their
    /// protocol: the options' cap and burst release, plus what the HTTP
    /// server refreshes after a burst when HTTP is built in.
    #[allow(unused_variables)]
    fn connection_cap(&self, options: &ServerOptions) -> server::ConnectionCap {
        #[cfg(feature = "http")]
        return self.http.connection_cap();
        #[cfg(not(feature = "http"))]
        options.connection_cap()
    }

    /// Refuses one connection past the cap, in the protocol it showed.
    async fn refuse(&self, stream: Stream) {
        let Ok((Some(sniffed), stream)) = server::sniff_stream(stream, REFUSAL_SNIFF_TIME).await
        else {
            return;
        };
        match sniffed {
            #[cfg(feature = "fastcgi")]
            Sniffed::FastCgi => self.fastcgi.refuse(stream).await,
            #[cfg(feature = "scgi")]
            Sniffed::Scgi => self.scgi.refuse(stream).await,
            #[cfg(feature = "http")]
            Sniffed::Http => self.http.refuse(stream).await,
            _ => drop(stream),
        }
    }
}

/// Serves the sockets of `socket` (with `protocol`, or the one each is
/// named after, or told per connection) until a signal or the shutdown.
/// With `per_thread`, on the servers' threads (half the CPUs, one per CPU
/// when every socket is HTTP, or the options' `worker_threads`): past one,
/// threads of their own, each with a single-threaded runtime and a copy of
/// every socket (see `spawn_per_thread`); otherwise, or with one, on the
/// runtime this runs on.
async fn serve_sockets<S, B>(
    b: &Builder,
    protocol: Option<Protocol>,
    socket: &Socket,
    app: S,
    per_thread: bool,
) -> io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let limits = b.options.get_handler().limits().clone();
    let shutdown = b.options.shutdown_handle();
    let (protocols, listeners): (Vec<Option<Protocol>>, Vec<Listener>) = match socket {
        Socket::Addr(addr) => vec![(protocol, server::listen(addr, &limits).await?)],
        Socket::Systemd(_) => server::systemd::take_all()?
            .into_iter()
            .map(|(name, l)| {
                let named = name.parse::<Protocol>().ok().filter(|p| p.is_socket());
                (protocol.or(named), l)
            })
            .collect(),
    }
    .into_iter()
    .unzip();
    let status = protocols
        .iter()
        .zip(&listeners)
        .map(|(p, l)| {
            format!(
                "{} on {}",
                p.map_or("FastCGI/SCGI/HTTP", |p| match p {
                    Protocol::FastCgi => "FastCGI",
                    Protocol::Scgi => "SCGI",
                    _ => "HTTP",
                }),
                l.local_addr_string()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let servers = Arc::new(Servers::new(&b.options, &app));
    // One cap per socket, shared by every thread that serves a copy of it.
    let caps: Vec<server::ConnectionCap> = protocols
        .iter()
        .map(|&p| servers.cap_for(p, &b.options))
        .collect();
    let timeout = limits.get_head_read_timeout();
    // Threads as the servers' own `run` has them: half the CPUs behind a
    // web server, one per CPU when every socket is HTTP.
    let threads = b.options.get_worker_threads().unwrap_or_else(|| {
        if protocols.iter().all(|p| *p == Some(Protocol::Http)) {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            server::half_the_cpus()
        }
    });
    // Serves this thread's sockets (copies of them), a task each.
    let stop = shutdown.clone();
    let serve = move |listeners: Vec<Listener>, _threads: usize| {
        let servers = servers.clone();
        let protocols = protocols.clone();
        let caps = caps.clone();
        let shutdown = stop.clone();
        async move {
            let mut tasks = Vec::new();
            for ((p, listener), cap) in protocols.into_iter().zip(listeners).zip(caps) {
                let servers = servers.clone();
                let shutdown = shutdown.clone();
                tasks.push(tokio::spawn(async move {
                    match p {
                        Some(p) => servers.serve(p, listener, cap).await,
                        None => serve_mixed(servers, listener, cap, shutdown, timeout).await,
                    }
                }));
            }
            let mut result = Ok(());
            for t in tasks {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        // One socket failing stops them all.
                        shutdown.trigger();
                        result = Err(e);
                    }
                    Err(e) => result = Err(io::Error::other(e)),
                }
            }
            result
        }
    };
    let serving: std::pin::Pin<Box<dyn Future<Output = io::Result<()>>>> =
        if per_thread && threads > 1 {
            server::spawn_per_thread("gateway", listeners, threads, &shutdown, serve)?
        } else {
            Box::pin(serve(listeners, 1))
        };
    let status_page = b
        .options
        .get_status_addr()
        .zip(b.options.get_handler().metrics().cloned());
    let serving = server::with_status(serving, status_page, &limits, &shutdown);
    server::until_signal(serving, &shutdown, || {
        tracing::info!("serving {status}");
        server::systemd::notify_ready(&format!("serving {status}"));
    })
    .await
}

/// Serves a socket whose connections each tell their protocol by their
/// first bytes.
async fn serve_mixed<S, B>(
    servers: Arc<Servers<S, B>>,
    listener: Listener,
    cap: server::ConnectionCap,
    shutdown: Shutdown,
    timeout: Duration,
) -> io::Result<()>
where
    S: Application<B>,
    B: AppBody,
{
    let refusal = {
        let servers = servers.clone();
        Refusal::new(move |stream| {
            let servers = servers.clone();
            async move { servers.refuse(stream).await }
        })
    };
    server::serve(listener, cap, shutdown, refusal, move |conn| {
        let servers = servers.clone();
        async move {
            // A connection that has not shown its protocol has no request
            // in flight: a shutdown closes it at once instead of waiting
            // out the head-read timeout. Bytes already there win the race.
            let mut stop = conn.shutdown.clone();
            let sniffed = tokio::select! {
                biased;
                r = conn.sniff(timeout) => r,
                _ = stop.stopping() => {
                    tracing::debug!("shutting down: closed a connection before its protocol showed");
                    return;
                }
            };
            match sniffed {
                Ok((Some(sniffed), conn)) => servers.serve_connection(sniffed, conn).await,
                Ok((None, _)) => {
                    tracing::debug!(
                        "the connection closed or went silent before its protocol showed"
                    )
                }
                Err(e) => tracing::debug!(error = %e, "reading a connection's first bytes failed"),
            }
        }
    })
    .await
}

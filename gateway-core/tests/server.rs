//! The shared server pieces: accept loop, connection cap, graceful shutdown.
#![cfg(feature = "server")]

use std::time::Duration;

use gateway_core::server::{BindOptions, ConnectionCap, Listener, Refusal, Shutdown, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn accepts_serves_and_shuts_down_gracefully() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let mut shutdown = Shutdown::new();
    shutdown.deadline(Duration::from_secs(5));
    let server = tokio::spawn(serve(
        listener,
        2,
        shutdown.clone(),
        Refusal::close(),
        |mut c: gateway_core::server::Connection| async move {
            let mut buf = [0u8; 5];
            if c.stream.read_exact(&mut buf).await.is_ok() {
                // An in-flight request finishes even after shutdown starts.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = c.stream.write_all(&buf).await;
            }
        },
    ));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    shutdown.trigger();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn deadline_aborts_stuck_connections() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let mut shutdown = Shutdown::new();
    shutdown.deadline(Duration::from_millis(100));
    let server = tokio::spawn(serve(
        listener,
        8,
        shutdown.clone(),
        Refusal::close(),
        |_c| async move {
            std::future::pending::<()>().await;
        },
    ));
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the deadline ends serve")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn unix_socket_with_mode() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("gw-core-{}.sock", std::process::id()));
    let listener =
        Listener::bind_unix(&path, BindOptions::new().mode(0o660).remove_stale(true)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    assert_eq!(
        listener.local_addr_string(),
        format!("unix:{}", path.display())
    );
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(
        listener,
        1,
        shutdown.clone(),
        Refusal::close(),
        |mut c: gateway_core::server::Connection| async move {
            let _ = c.stream.write_all(b"hi").await;
        },
    ));
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hi");
    shutdown.trigger();
    server.await.unwrap().unwrap();
    assert!(
        !path.exists(),
        "the socket file is removed with the listener"
    );
}

/// F1: fd 0 is not a listening socket in a test run: no listener.
#[tokio::test]
async fn stdin_that_is_not_a_socket_is_not_a_listener() {
    assert!(Listener::from_stdin().unwrap().is_none());
}

/// Past the connection cap a new client is answered at once by the
/// refusal, not left waiting in the backlog.
#[tokio::test]
async fn over_the_cap_a_client_is_refused_at_once() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = Shutdown::new();
    let refusal = Refusal::new(|mut s: gateway_core::server::Stream| async move {
        let _ = s.write_all(b"busy").await;
        gateway_core::server::linger_close(s, Duration::from_secs(1)).await;
    });
    let server = tokio::spawn(serve(
        listener,
        1,
        shutdown.clone(),
        refusal,
        |_c| async move {
            std::future::pending::<()>().await;
        },
    ));
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), second.read_to_end(&mut got))
        .await
        .expect("the refusal comes at once")
        .unwrap();
    assert_eq!(got, b"busy");
    shutdown.trigger();
    drop(server);
}

/// Two accept loops given clones of one `ConnectionCap` (what a server on
/// several threads runs) serve at most that many connections in all: with
/// a cap of 1 held by a connection on the first listener, a client of the
/// second is refused; once the first connection ends, the second listener
/// serves again.
#[tokio::test]
async fn a_shared_cap_holds_across_accept_loops() {
    let first = Listener::bind("127.0.0.1:0").await.unwrap();
    let second = Listener::bind("127.0.0.1:0").await.unwrap();
    let (a, b) = (first.tcp_addr().unwrap(), second.tcp_addr().unwrap());
    let shutdown = Shutdown::new();
    let cap = ConnectionCap::new(1);
    let refusal = || {
        Refusal::new(|mut s: gateway_core::server::Stream| async move {
            let _ = s.write_all(b"busy").await;
            gateway_core::server::linger_close(s, Duration::from_secs(1)).await;
        })
    };
    // Each connection answers "served" once it has read one byte, then
    // ends.
    let conn = |mut c: gateway_core::server::Connection| async move {
        let mut one = [0u8; 1];
        if c.stream.read_exact(&mut one).await.is_ok() {
            let _ = c.stream.write_all(b"served").await;
        }
    };
    let s1 = tokio::spawn(serve(first, cap.clone(), shutdown.clone(), refusal(), conn));
    let s2 = tokio::spawn(serve(
        second,
        cap.clone(),
        shutdown.clone(),
        refusal(),
        conn,
    ));
    let mut held = tokio::net::TcpStream::connect(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cap.available(), 0);
    let answer = |addr| async move {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"x").await;
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut got))
            .await
            .expect("an answer at once")
            .unwrap();
        got
    };
    assert_eq!(
        answer(b).await,
        b"busy",
        "the other loop is over the cap too"
    );
    held.write_all(b"x").await.unwrap();
    let mut got = Vec::new();
    held.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"served");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(answer(b).await, b"served", "the slot came back");
    shutdown.trigger();
    drop((s1, s2));
}

/// `Refusal::close` closes a connection over the cap without a word.
#[tokio::test]
async fn over_the_cap_a_closing_refusal_closes() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(
        listener,
        1,
        shutdown.clone(),
        Refusal::close(),
        |_c| async move {
            std::future::pending::<()>().await;
        },
    ));
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(1), second.read_to_end(&mut got))
        .await
        .expect("closed at once");
    assert!(r.is_err() || got.is_empty());
    shutdown.trigger();
    drop(server);
}

/// The backlog is the one asked for: with nobody accepting, the kernel
/// completes at most backlog + 1 handshakes.
#[tokio::test]
async fn listen_backlog_is_configurable() {
    let listener = Listener::bind_with("127.0.0.1:0", BindOptions::new().backlog(2))
        .await
        .unwrap();
    let addr = listener.tcp_addr().unwrap();
    let mut done = 0;
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => {
                held.push(s);
                done += 1;
            }
            _ => break,
        }
    }
    assert!(
        (2..=3).contains(&done),
        "{done} connections completed with a backlog of 2"
    );
    drop(listener);
}

/// A connection accepted just before the shutdown, whose client sends its
/// request a moment later, is served: its watch does not report the
/// shutdown during the grace for new connections.
#[tokio::test]
async fn a_connection_accepted_just_before_the_shutdown_gets_its_request_served() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let mut shutdown = Shutdown::new();
    shutdown.new_connection_grace(Duration::from_secs(2));
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel::<()>();
    let accepted_tx = std::sync::Mutex::new(Some(accepted_tx));
    let server = tokio::spawn(serve(
        listener,
        4,
        shutdown.clone(),
        Refusal::close(),
        move |mut c: gateway_core::server::Connection| {
            if let Some(tx) = accepted_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            async move {
                // A driver between requests: the next request, or the
                // shutdown, whichever comes first.
                let mut buf = [0u8; 5];
                tokio::select! {
                    r = c.stream.read_exact(&mut buf) => if r.is_ok() {
                        let _ = c.stream.write_all(&buf).await;
                    },
                    () = c.shutdown.stopping() => {}
                }
            }
        },
    ));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    accepted_rx.await.unwrap();
    shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.write_all(b"hello").await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello");
    server.await.unwrap().unwrap();
}

/// A connection watch reports the shutdown once its grace has passed; a
/// plain watch at once.
#[tokio::test(start_paused = true)]
async fn a_connection_watch_reports_the_shutdown_after_its_grace() {
    let mut shutdown = Shutdown::new();
    shutdown.new_connection_grace(Duration::from_secs(1));
    let mut young = shutdown.connection_watch();
    let plain = shutdown.watch();
    assert!(!young.is_stopping() && !plain.is_stopping());
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.trigger();
    assert!(plain.is_stopping());
    assert!(!young.is_stopping(), "300 ms into a 1 s grace");
    let started = tokio::time::Instant::now();
    young.stopping().await;
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    assert!(young.is_stopping());
    // A connection accepted after the trigger waits out its own grace; an
    // old connection's watch reports at once.
    let mut late = shutdown.connection_watch();
    tokio::time::timeout(Duration::from_millis(500), late.stopping())
        .await
        .expect_err("a watch made after the trigger waits out its own grace");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(late.is_stopping());
    tokio::time::timeout(Duration::from_millis(1), late.stopping())
        .await
        .expect("an old connection's watch reports at once");
    let mut zero = Shutdown::new();
    zero.new_connection_grace(Duration::ZERO).trigger();
    assert!(zero.connection_watch().is_stopping());
}

/// Connections the kernel completed but the server had not accepted when
/// the shutdown started are served, not reset with the listener.
#[tokio::test(flavor = "current_thread")]
async fn connections_waiting_in_the_backlog_at_shutdown_are_served() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    // Handshakes the kernel completes with nobody accepting yet: the
    // server task has not run (one thread, no await in between).
    let clients: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut c, b"hello").unwrap();
            c
        })
        .collect();
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let server = tokio::spawn(serve(
        listener,
        16,
        shutdown.clone(),
        Refusal::close(),
        |mut c: gateway_core::server::Connection| async move {
            let mut buf = [0u8; 5];
            if c.stream.read_exact(&mut buf).await.is_ok() {
                let _ = c.stream.write_all(&buf).await;
            }
        },
    ));
    server.await.unwrap().unwrap();
    for mut c in clients {
        let mut got = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Read::read_to_end(&mut c, &mut got).unwrap();
        assert_eq!(got, b"hello");
    }
}

/// With `reuse_port`, a second socket binds the port a first one listens
/// on (a new version next to the old), and connections reach the second
/// once the first is gone; without it the second bind fails.
#[tokio::test]
async fn reuse_port_lets_a_second_server_listen_on_the_same_port() {
    use gateway_core::Limits;
    use gateway_core::server::{ListenAddr, listen};
    let mut limits = Limits::default();
    limits.reuse_port(true);
    let first = listen(&"127.0.0.1:0".parse::<ListenAddr>().unwrap(), &limits)
        .await
        .unwrap();
    let addr = ListenAddr::Tcp(first.tcp_addr().unwrap());
    let second = listen(&addr, &limits)
        .await
        .expect("a second SO_REUSEPORT bind");
    let err = listen(&addr, &Limits::default()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    drop(first);
    let _client = tokio::net::TcpStream::connect(second.tcp_addr().unwrap())
        .await
        .unwrap();
    let (_, peer) = tokio::time::timeout(Duration::from_secs(5), second.accept())
        .await
        .expect("the second socket gets the connection")
        .unwrap();
    assert!(peer.is_some());
}

/// Listen addresses: every accepted form reads back as written; a bad one
/// is an error that names what was expected.
#[test]
fn listen_addresses_parse_and_print() {
    use gateway_core::server::ListenAddr;
    for text in [
        "127.0.0.1:9000",
        "[::1]:9000",
        "localhost:9000",
        "unix:/run/app.sock",
        "unix:/run/app.sock?mode=660",
        "fd:0",
        "systemd",
        "systemd:fastcgi",
    ] {
        let addr: ListenAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(addr.to_string(), text);
    }
    assert_eq!(
        "unix:/s?mode=0600".parse::<ListenAddr>().unwrap(),
        ListenAddr::Unix {
            path: "/s".into(),
            mode: Some(0o600)
        }
    );
    for bad in [
        "",
        "localhost",
        "localhost:http",
        "-bad:80",
        "a b:80",
        "9000",
        "127.0.0.1",
        "unix:",
        "unix:/s?mode=abc",
        "unix:/s?mode=99999",
        "fd:3",
        "systemd:",
        "tcp://127.0.0.1:9000",
    ] {
        let e = bad.parse::<ListenAddr>().unwrap_err().to_string();
        assert!(e.contains("expected HOST:PORT"), "{bad}: {e}");
        assert!(e.contains("unix:PATH"), "{bad}: {e}");
        assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
    }
}

/// The protocol of a connection is told from its first bytes even when
/// they arrive one at a time, and the bytes read to tell it are read again
/// by whoever serves the connection.
#[tokio::test]
async fn sniffing_a_stream_split_after_one_byte_replays_what_it_read() {
    use gateway_core::server::{Sniffed, Stream, sniff_stream};
    for (first, want) in [
        (&b"\x01\x01\x00\x01\x00\x08\x00\x00"[..], Sniffed::FastCgi),
        (b"70:CONTENT_LENGTH\x00", Sniffed::Scgi),
        (b"GET / HTTP/1.1\r\n\r\n", Sniffed::Http),
        (b"\x16\x03\x01\x02\x00", Sniffed::Unknown),
    ] {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let first = first.to_vec();
        let sent = first.clone();
        let writer = tokio::spawn(async move {
            theirs.write_all(&sent[..1]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            theirs.write_all(&sent[1..]).await.unwrap();
            theirs
        });
        let (found, mut stream) = sniff_stream(Stream::Unix(ours), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(found, Some(want));
        let _theirs = writer.await.unwrap();
        let mut got = vec![0u8; first.len()];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, first, "every byte is read again, in order");
    }
}

/// A peer that sends nothing is given up on after the timeout.
#[tokio::test]
async fn sniffing_a_silent_stream_times_out() {
    use gateway_core::server::{Stream, sniff_stream};
    let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
    let (found, _) = sniff_stream(Stream::Unix(ours), Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(found, None);
}

/// Two sockets, TCP and a Unix socket bound here, served on three threads
/// of their own: each thread gets a copy of both, the connections to
/// either are served on those threads (each answers with its thread's
/// name), the shutdown ends them all, and the Unix socket's path stays
/// until every thread is done, then goes.
#[test]
fn spawn_per_thread_serves_every_socket_on_threads_of_their_own() {
    use gateway_core::server::spawn_per_thread;
    let rt = gateway_core::server::runtime(Some(1)).unwrap();
    rt.block_on(async {
        let tcp = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.tcp_addr().unwrap();
        let path = std::env::temp_dir().join(format!("gw-spawn-{}.sock", std::process::id()));
        let unix = Listener::bind_unix(&path, BindOptions::new().remove_stale(true)).unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let serving = spawn_per_thread(
            "test",
            vec![tcp, unix],
            3,
            &shutdown,
            move |listeners: Vec<Listener>, threads| {
                let stop = stop.clone();
                async move {
                    assert_eq!((listeners.len(), threads), (2, 3));
                    let mut loops = Vec::new();
                    for listener in listeners {
                        loops.push(tokio::spawn(serve(
                            listener,
                            16,
                            stop.clone(),
                            Refusal::close(),
                            |mut c: gateway_core::server::Connection| async move {
                                let name = std::thread::current().name().map(str::to_owned);
                                let _ = c
                                    .stream
                                    .write_all(name.unwrap_or_default().as_bytes())
                                    .await;
                            },
                        )));
                    }
                    for l in loops {
                        l.await.map_err(std::io::Error::other)??;
                    }
                    Ok(())
                }
            },
        )
        .unwrap();
        let serving = tokio::spawn(serving);
        // The main runtime accepts nothing: every answer comes from a thread
        // of the set.
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let mut got = String::new();
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.read_to_string(&mut got).await.unwrap();
            names.insert(got);
            let mut got = String::new();
            let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
            s.read_to_string(&mut got).await.unwrap();
            names.insert(got);
        }
        assert!(
            !names.is_empty()
                && names
                    .iter()
                    .all(|n| ["test-0", "test-1", "test-2"].contains(&n.as_str())),
            "{names:?}"
        );
        assert!(path.exists(), "the socket's path stays while it is served");
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("every thread ends after the shutdown")
            .unwrap()
            .unwrap();
        assert!(
            !path.exists(),
            "the socket's path goes once every thread is done"
        );
    });
}

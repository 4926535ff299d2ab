//! The start-up decision, branch by branch, from made-up facts.

use std::collections::HashMap;

use gateway::{Facts, ListenAddr, Protocol, Socket, Start, Stdin, decide};

fn facts(vars: &[(&str, &str)], stdin: Stdin, systemd: &[&str]) -> Facts {
    Facts {
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        stdin,
        systemd: systemd.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn addr(s: &str) -> Option<Socket> {
    Some(Socket::Addr(s.parse().unwrap()))
}

fn start(f: &Facts) -> Start {
    decide(f, None, None).unwrap()
}

/// From a shell with nothing set: HTTP on 127.0.0.1:8000.
#[test]
fn a_terminal_with_nothing_set_serves_http_on_the_default_address() {
    let s = start(&facts(&[], Stdin::Terminal, &[]));
    assert_eq!(s.protocol, Some(Protocol::Http));
    assert_eq!(s.socket, addr("127.0.0.1:8000"));
    // The same with stdin a pipe or /dev/null (a service manager).
    assert_eq!(
        start(&facts(&[], Stdin::Other, &[])).socket,
        addr("127.0.0.1:8000")
    );
}

#[test]
fn http_listens_on_gateway_addr_then_port() {
    let s = start(&facts(&[("GATEWAY_ADDR", "[::1]:8080")], Stdin::Other, &[]));
    assert_eq!(s.socket, addr("[::1]:8080"));
    let s = start(&facts(&[("PORT", "5000")], Stdin::Other, &[]));
    assert_eq!(s.socket, addr("0.0.0.0:5000"));
    let s = start(&facts(
        &[("PORT", "5000"), ("GATEWAY_ADDR", "unix:/run/a.sock")],
        Stdin::Other,
        &[],
    ));
    assert_eq!(s.socket, addr("unix:/run/a.sock"));
    let e = decide(&facts(&[("PORT", "http")], Stdin::Other, &[]), None, None).unwrap_err();
    assert!(e.to_string().contains("PORT"), "{e}");
    // A port is digits: a sign is refused (it used to be taken, as a host
    // name address that printed as another address).
    let e = decide(&facts(&[("PORT", "+88")], Stdin::Other, &[]), None, None).unwrap_err();
    assert!(e.to_string().contains("PORT"), "{e}");
    let e = decide(
        &facts(&[("GATEWAY_ADDR", "nowhere")], Stdin::Other, &[]),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("GATEWAY_ADDR") && e.to_string().contains("expected"),
        "{e}"
    );
}

/// A CGI request: GATEWAY_INTERFACE, whatever stdin is (a pipe, or the
/// connected socket Apache's mod_cgid gives).
#[test]
fn gateway_interface_means_cgi() {
    for stdin in [Stdin::Other, Stdin::Connected, Stdin::Terminal] {
        let s = start(&facts(&[("GATEWAY_INTERFACE", "CGI/1.1")], stdin, &[]));
        assert_eq!(s.protocol, Some(Protocol::Cgi), "{stdin:?}");
        assert_eq!(s.socket, None);
    }
}

#[test]
fn iis_is_told_by_its_server_software() {
    let s = start(&facts(
        &[
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", "Microsoft-IIS/10.0"),
        ],
        Stdin::Other,
        &[],
    ));
    assert_eq!(s.protocol, Some(Protocol::IisCgi));
}

/// A listening socket on fd 0 (lighttpd bin-path, spawn-fcgi): each
/// connection's protocol is told by its first bytes; it wins over CGI
/// variables a parent may have left.
#[test]
fn a_listening_socket_on_fd_0_serves_sockets() {
    let s = start(&facts(
        &[("GATEWAY_INTERFACE", "CGI/1.1")],
        Stdin::Listening,
        &[],
    ));
    assert_eq!(s.protocol, None);
    assert_eq!(s.socket, Some(Socket::Addr(ListenAddr::Stdin)));
}

/// systemd's sockets come before fd 0 and CGI.
#[test]
fn systemd_sockets_come_first_after_an_explicit_choice() {
    let s = start(&facts(
        &[("GATEWAY_INTERFACE", "CGI/1.1")],
        Stdin::Listening,
        &["fastcgi", "http"],
    ));
    assert_eq!(s.protocol, None);
    assert_eq!(
        s.socket,
        Some(Socket::Systemd(vec!["fastcgi".into(), "http".into()]))
    );
}

/// An explicit choice wins; a socket protocol listens on GATEWAY_ADDR,
/// else systemd's sockets, else fd 0, else its default address.
#[test]
fn an_explicit_protocol_wins() {
    let f = facts(&[("GATEWAY_PROTOCOL", "fastcgi")], Stdin::Terminal, &[]);
    let s = start(&f);
    assert_eq!(s.protocol, Some(Protocol::FastCgi));
    assert_eq!(s.socket, addr("127.0.0.1:9000"));
    let s = start(&facts(
        &[("GATEWAY_PROTOCOL", "scgi")],
        Stdin::Listening,
        &[],
    ));
    assert_eq!(s.socket, Some(Socket::Addr(ListenAddr::Stdin)));
    let s = start(&facts(
        &[("GATEWAY_PROTOCOL", "scgi")],
        Stdin::Other,
        &["x"],
    ));
    assert_eq!(s.socket, Some(Socket::Systemd(vec!["x".into()])));
    let s = start(&facts(
        &[
            ("GATEWAY_PROTOCOL", "http"),
            ("GATEWAY_ADDR", "unix:/tmp/h.sock"),
        ],
        Stdin::Listening,
        &["x"],
    ));
    assert_eq!(s.socket, addr("unix:/tmp/h.sock"));
    // The builder's choice beats the environment's.
    let s = decide(
        &f,
        Some(Protocol::Http),
        Some(&"127.0.0.1:1".parse().unwrap()),
    )
    .unwrap();
    assert_eq!(s.protocol, Some(Protocol::Http));
    assert_eq!(s.socket, addr("127.0.0.1:1"));
}

/// Wrong starts are one clear error, never a guess.
#[test]
fn wrong_starts_are_errors() {
    let e = decide(
        &facts(&[("GATEWAY_PROTOCOL", "gopher")], Stdin::Other, &[]),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("expected cgi, iis-cgi, fastcgi, scgi or http"),
        "{e}"
    );
    let e = decide(
        &facts(&[("GATEWAY_PROTOCOL", "cgi")], Stdin::Terminal, &[]),
        None,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("terminal"), "{e}");
    let e = decide(&facts(&[], Stdin::Closed, &[]), None, None).unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
    let e = decide(
        &facts(&[("GATEWAY_PROTOCOL", "cgi")], Stdin::Closed, &[]),
        None,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
}

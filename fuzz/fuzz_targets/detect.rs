//! The launch-time decisions made from bytes a peer or the environment
//! controls: telling a connection's protocol from its first bytes
//! (`gateway_core::server::sniff`), and the facade's start-up decision
//! (`gateway::decide`) from environment variables, with `ListenAddr` and
//! `Protocol` parsing.
//!
//! Input layout: byte 0 picks what fd 0 is and the explicit protocol, the
//! rest is lines (`\n`) of `NAME=VALUE` for the decision; the whole input
//! is also sniffed, whole and by every prefix.
//!
//! Checks that nothing panics; that sniffing asks for more bytes only while
//! the input is short (a few dozen bytes at most), and that once it has
//! decided, more bytes never change its answer; that a decision is
//! consistent (CGI has no socket, a socket protocol has one).

#![no_main]

use std::collections::HashMap;

use gateway::{Facts, ListenAddr, Protocol, Socket, Stdin, decide};
use gateway_core::server::sniff;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };

    // Sniffing: the answer for each prefix, and stability once decided.
    let mut decided = None;
    for end in 0..=rest.len().min(64) {
        match (sniff(&rest[..end]), decided) {
            (None, None) => assert!(end <= 32, "still undecided after {end} bytes"),
            (None, Some(d)) => panic!("decided {d:?}, then undecided at {end}"),
            (Some(s), None) => decided = Some(s),
            (Some(s), Some(d)) => assert_eq!(s, d, "changed its mind at {end} bytes"),
        }
    }
    if rest.len() > 64 {
        assert_eq!(sniff(rest), decided);
    }

    // The start-up decision.
    let text = String::from_utf8_lossy(rest);
    let mut vars = HashMap::new();
    for line in text.split('\n') {
        if let Some((name, value)) = line.split_once('=') {
            vars.insert(name.to_owned(), value.to_owned());
        }
        let _ = line.parse::<ListenAddr>().map(|a| a.to_string());
        let _ = line.parse::<Protocol>();
    }
    let stdin = match selector & 7 {
        0 => Stdin::Listening,
        1 => Stdin::Connected,
        2 => Stdin::Terminal,
        3 => Stdin::Closed,
        _ => Stdin::Other,
    };
    let explicit = match selector >> 3 & 7 {
        0 => Some(Protocol::Cgi),
        1 => Some(Protocol::IisCgi),
        2 => Some(Protocol::FastCgi),
        3 => Some(Protocol::Scgi),
        4 => Some(Protocol::Http),
        _ => None,
    };
    let systemd = if selector & 0x40 != 0 {
        vec!["http".to_owned(), "x".to_owned()]
    } else {
        Vec::new()
    };
    let addr = vars.get("ADDR").and_then(|a| a.parse::<ListenAddr>().ok());
    let facts = Facts {
        vars,
        stdin,
        systemd,
    };
    if let Ok(start) = decide(&facts, explicit, addr.as_ref()) {
        let _ = start.to_string();
        match start.protocol {
            Some(p) if !p.is_socket() => assert!(start.socket.is_none()),
            _ => assert!(start.socket.is_some()),
        }
        if let Some(Socket::Addr(a)) = &start.socket {
            let again: ListenAddr = a.to_string().parse().expect("an address parses again");
            assert_eq!(&again, a);
        }
    }
});

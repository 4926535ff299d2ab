//! Arbitrary bytes from a web server into the FastCGI connection state
//! machine: it must never panic, never hold more than one record's worth of
//! undecoded input, queue bounded replies, and reach the same events,
//! replies and error whether the input comes all at once or in pieces.
//!
//! Input layout: byte 0 picks the configuration, byte 1 the piece sizes,
//! the rest is the wire.

#![no_main]

use bytes::BytesMut;
use gateway_fastcgi::proto::{Config, Connection, Event, MAX_RECORD_LEN, ProtocolError};
use libfuzzer_sys::fuzz_target;

/// Largest reply one record can cause: a GET_VALUES_RESULT with the three
/// known variables and 10-digit values, padded.
const MAX_REPLY: usize = 8 + 72;

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    output: Vec<u8>,
    error: Option<ProtocolError>,
}

fn config(selector: u8) -> Config {
    let mut config = Config::new();
    config
        .mpxs_conns(selector & 1 != 0)
        .max_reqs(u32::from(selector >> 1 & 3))
        .max_conns(u32::from(selector >> 3 & 3).pow(9))
        .max_params_len(if selector & 0x20 != 0 { 64 } else { 1 << 20 })
        .max_params(if selector & 0x40 != 0 { 4 } else { 4096 });
    config
}

/// Feeds `wire` in pieces whose sizes come from `sizes` (0 means all at once).
fn run(config: &Config, wire: &[u8], sizes: u8) -> Outcome {
    let mut conn = Connection::new(config);
    let mut outcome = Outcome {
        events: Vec::new(),
        output: Vec::new(),
        error: None,
    };
    let mut buf = BytesMut::new();
    let mut rest = wire;
    let mut step = 0usize;
    while !rest.is_empty() {
        let size = if sizes == 0 {
            rest.len()
        } else {
            // Vary piece sizes between 1 and 32.
            step += 1;
            usize::from(sizes.rotate_left(step as u32 % 8)) % 32 + 1
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(piece);
        loop {
            match conn.next_event(&mut buf) {
                Ok(Some(event)) => {
                    let reply = conn.take_output();
                    assert!(reply.len() <= MAX_REPLY, "reply of {} bytes", reply.len());
                    outcome.output.extend_from_slice(&reply);
                    check(&event);
                    // Act like a driver that answers as soon as input ends.
                    match event {
                        Event::StdinEnd { id } | Event::Abort { id } => {
                            conn.finish(id, std::time::Instant::now());
                        }
                        _ => {}
                    }
                    outcome.events.push(event);
                }
                Ok(None) => {
                    assert!(buf.len() < MAX_RECORD_LEN, "{} bytes buffered", buf.len());
                    assert!(!conn.has_output(), "reply without an event");
                    break;
                }
                Err(error) => {
                    outcome.error = Some(error);
                    return outcome;
                }
            }
        }
    }
    outcome
}

fn check(event: &Event) {
    match event {
        Event::Stdin { data, .. } | Event::Data { data, .. } => assert!(!data.is_empty()),
        Event::Begin { id, .. } | Event::Params { id, .. } | Event::Rejected { id, .. } => {
            assert_ne!(*id, 0)
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, sizes, wire @ ..] = data else {
        return;
    };
    let config = config(*selector);
    let whole = run(&config, wire, 0);
    let pieces = run(&config, wire, *sizes | 1);
    assert_eq!(whole, pieces);
});

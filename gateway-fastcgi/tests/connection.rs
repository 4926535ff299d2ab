//! The connection state machine, driven through its public API the way a
//! connection driver uses it: bytes in, events and reply bytes out.
//! Test names carry the checklist items they cover.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gateway_fastcgi::proto::{
    self, Close, Config, Connection, Event, Params, ProtocolError, ProtocolStatus, RecordType, Role,
};

const RESPONDER: u16 = 1;
const KEEP_CONN: u8 = 1;

/// F4: libfcgi's GET_VALUES_RESULT for the default configuration.
const LIBFCGI_VALUES: &[u8] = b"\x01\x0a\x00\x00\x00\x33\x05\x00\
    \x0e\x01FCGI_MAX_CONNS1\x0d\x01FCGI_MAX_REQS1\x0f\x01FCGI_MPXS_CONNS0\0\0\0\0\0";

/// Builds what a web server writes.
#[derive(Default)]
struct Wire(BytesMut);

impl Wire {
    fn begin(mut self, id: u16, role: u16, flags: u8) -> Self {
        proto::encode_begin_request(&mut self.0, id, role, flags);
        self
    }
    fn params(mut self, id: u16, pairs: &[(&str, &str)]) -> Self {
        proto::encode_params(&mut self.0, id, pairs.iter().copied()).unwrap();
        self
    }
    fn record(mut self, t: RecordType, id: u16, content: &[u8]) -> Self {
        proto::encode_record(&mut self.0, t, id, content).unwrap();
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn get_values(mut self, names: &[&str]) -> Self {
        proto::encode_get_values(&mut self.0, names).unwrap();
        self
    }
    fn bytes(self) -> BytesMut {
        self.0
    }
}

/// Feeds everything; returns the events, and the queued output.
fn run(conn: &mut Connection, wire: BytesMut) -> Result<(Vec<Event>, BytesMut), ProtocolError> {
    let mut buf = wire;
    let mut events = Vec::new();
    while let Some(event) = conn.next_event(&mut buf)? {
        events.push(event);
    }
    assert!(buf.is_empty(), "undecoded bytes left");
    Ok((events, conn.take_output()))
}

fn run_default(wire: BytesMut) -> Result<(Vec<Event>, BytesMut), ProtocolError> {
    run(&mut Connection::new(&Config::new()), wire)
}

fn params_of(events: &[Event]) -> Vec<&Params> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Params { params, .. } => Some(params),
            _ => None,
        })
        .collect()
}

fn end_request(id: u16, app_status: u32, status: ProtocolStatus) -> BytesMut {
    let mut out = BytesMut::new();
    proto::encode_end_request(&mut out, id, app_status, status);
    out
}

/// F10: BEGIN, PARAMS up to the empty record, then STDIN up to its empty
/// record. No output is queued: nothing unrequested is ever sent (Q3).
#[test]
fn responder_request_f10_q3() {
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .params(1, &[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "5")])
        .record(RecordType::Stdin, 1, b"hel")
        .record(RecordType::Stdin, 1, b"lo")
        .record(RecordType::Stdin, 1, b"")
        .bytes();
    let mut conn = Connection::new(&Config::new());
    let (events, output) = run(&mut conn, wire).unwrap();
    let expected_params =
        Params::from_pairs([("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "5")]).unwrap();
    assert_eq!(
        events,
        [
            Event::Begin {
                id: 1,
                role: Role::Responder,
                keep_conn: true
            },
            Event::Params {
                id: 1,
                params: expected_params
            },
            Event::Stdin {
                id: 1,
                data: Bytes::from_static(b"hel")
            },
            Event::Stdin {
                id: 1,
                data: Bytes::from_static(b"lo")
            },
            Event::StdinEnd { id: 1 },
        ]
    );
    assert!(output.is_empty());
    assert!(!conn.has_output());
    assert!(conn.is_active(1));
    assert_eq!(conn.role(1), Some(Role::Responder));
    assert_eq!(conn.keep_conn(1), Some(true));
}

/// F7: with KEEP_CONN the connection stays open and the web server reuses
/// id 1; without it the application closes once the request ends.
#[test]
fn keep_conn_and_id_reuse_f7_q5() {
    let mut conn = Connection::new(&Config::new());
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .params(1, &[])
        .bytes();
    run(&mut conn, wire).unwrap();
    assert!(!conn.finish(1, Instant::now()));
    assert!(!conn.should_close());
    assert!(!conn.is_active(1));

    let wire = Wire::default()
        .begin(1, RESPONDER, 0)
        .params(1, &[])
        .bytes();
    let (events, _) = run(&mut conn, wire).unwrap();
    assert_eq!(
        events[0],
        Event::Begin {
            id: 1,
            role: Role::Responder,
            keep_conn: false
        }
    );
    assert!(!conn.should_close());
    assert!(conn.finish(1, Instant::now()));
    assert!(conn.should_close());
}

/// F6: after the request ends, its late input is ignored.
#[test]
fn late_input_after_finish_is_ignored_f6() {
    let mut conn = Connection::new(&Config::new());
    run(
        &mut conn,
        Wire::default()
            .begin(1, RESPONDER, KEEP_CONN)
            .params(1, &[])
            .bytes(),
    )
    .unwrap();
    conn.finish(1, Instant::now());
    let wire = Wire::default()
        .record(RecordType::Stdin, 1, b"late")
        .record(RecordType::Stdin, 1, b"")
        .record(RecordType::AbortRequest, 1, b"")
        .bytes();
    let (events, output) = run(&mut conn, wire).unwrap();
    assert!(events.is_empty());
    assert!(output.is_empty());
}

/// F4: GET_VALUES in the middle of a request (between two PARAMS records)
/// gets libfcgi's exact answer; unknown names are left out.
#[test]
fn get_values_mid_request_f4() {
    let mut block = BytesMut::new();
    proto::encode_pair(&mut block, b"SERVER_PORT", b"80").unwrap();
    proto::encode_pair(&mut block, b"SERVER_ADDR", b"10.0.0.1").unwrap();
    let wire = Wire::default()
        .begin(1, RESPONDER, 0)
        .record(RecordType::Params, 1, &block[..20])
        .get_values(&[
            "FCGI_MAX_CONNS",
            "FCGI_UNKNOWN",
            "FCGI_MAX_REQS",
            "FCGI_MPXS_CONNS",
        ])
        .record(RecordType::Params, 1, &block[20..])
        .record(RecordType::Params, 1, b"")
        .bytes();
    let (events, output) = run_default(wire).unwrap();
    assert_eq!(&output[..], LIBFCGI_VALUES);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1],
        Event::GetValues {
            names: [
                "FCGI_MAX_CONNS",
                "FCGI_UNKNOWN",
                "FCGI_MAX_REQS",
                "FCGI_MPXS_CONNS"
            ]
            .map(|n| Bytes::from_static(n.as_bytes()))
            .to_vec()
        }
    );
    let params = params_of(&events);
    assert_eq!(params[0].get(b"SERVER_ADDR").unwrap(), b"10.0.0.1");
}

/// F4: the answer reflects the configuration; an empty query gets an empty
/// result record.
#[test]
fn get_values_reports_configuration_f4() {
    let mut config = Config::new();
    config.max_conns(8).max_reqs(64).mpxs_conns(true);
    let mut conn = Connection::new(&config);
    let (_, output) = run(
        &mut conn,
        Wire::default()
            .get_values(&["FCGI_MPXS_CONNS", "FCGI_MAX_REQS"])
            .bytes(),
    )
    .unwrap();
    assert_eq!(
        &output[..],
        b"\x01\x0a\x00\x00\x00\x23\x05\x00\x0f\x01FCGI_MPXS_CONNS1\x0d\x02FCGI_MAX_REQS64\0\0\0\0\0"
    );
    let (events, output) = run(&mut conn, Wire::default().get_values(&[]).bytes()).unwrap();
    assert_eq!(events, [Event::GetValues { names: vec![] }]);
    assert_eq!(&output[..], b"\x01\x0a\x00\x00\x00\x00\x00\x00");
}

/// F5: any management type other than GET_VALUES gets UNKNOWN_TYPE naming it.
#[test]
fn unknown_management_type_f5() {
    for t in [0x00u8, 0x0a, 0x0b, 0x0c, 0x7f, 0xff] {
        let wire = Wire::default()
            .raw(&[1, t, 0, 0, 0, 2, 6, 0, b'x', b'y', 0, 0, 0, 0, 0, 0])
            .bytes();
        let (events, output) = run_default(wire).unwrap();
        assert_eq!(events, [Event::UnknownManagement { record_type: t }]);
        let mut expected = b"\x01\x0b\x00\x00\x00\x08\x00\x00".to_vec();
        expected.extend_from_slice(&[t, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&output[..], &expected[..], "type {t}");
    }
}

/// F6, F15: application record types on request id 0 are protocol errors,
/// BEGIN_REQUEST included.
#[test]
fn application_types_on_id_zero_f6_f15() {
    for t in 1u8..=8 {
        let body: &[u8] = if t == 1 {
            b"\x00\x01\x00\x00\x00\x00\x00\x00"
        } else {
            b""
        };
        let wire = Wire::default().record(RecordType::from(t), 0, body).bytes();
        let err = run_default(wire).unwrap_err();
        assert!(err.is_unexpected_record(), "type {t}: {err}");
        assert_eq!(err.request_id(), Some(0));
    }
}

/// F6: a BEGIN_REQUEST body that is not 8 bytes is a protocol error.
#[test]
fn begin_request_body_length_f6() {
    for len in [0usize, 7, 9, 16] {
        let wire = Wire::default()
            .record(RecordType::BeginRequest, 1, &vec![0; len])
            .bytes();
        let err = run_default(wire).unwrap_err();
        assert!(err.is_bad_begin_request(), "len {len}: {err}");
        assert_eq!(err.request_id(), Some(1));
    }
}

/// F6: input records for ids that are not active are ignored.
#[test]
fn inactive_ids_are_ignored_f6() {
    let wire = Wire::default()
        .params(5, &[("A", "B")])
        .record(RecordType::Stdin, 5, b"body")
        .record(RecordType::Data, 5, b"data")
        .record(RecordType::AbortRequest, 5, b"")
        .bytes();
    let (events, output) = run_default(wire).unwrap();
    assert!(events.is_empty());
    assert!(output.is_empty());
}

/// F15: record types a web server never sends are protocol errors for any
/// request id, active or not, and are never answered with UNKNOWN_TYPE.
#[test]
fn types_a_web_server_never_sends_f15() {
    for t in [3u8, 6, 7, 9, 10, 11, 0, 12, 0xff] {
        for active in [false, true] {
            let mut wire = Wire::default();
            if active {
                wire = wire.begin(1, RESPONDER, 0);
            }
            let wire = wire.record(RecordType::from(t), 1, b"").bytes();
            let mut conn = Connection::new(&Config::new());
            let err = run(&mut conn, wire).unwrap_err();
            assert!(err.is_unexpected_record(), "type {t}: {err}");
            assert!(conn.take_output().is_empty());
        }
    }
}

/// F8: an unknown role is refused with END_REQUEST{0, UNKNOWN_ROLE}; the id
/// stays inactive, and without KEEP_CONN the connection should close.
#[test]
fn unknown_role_f8() {
    for role in [0u16, 4, 0xffff] {
        let wire = Wire::default()
            .begin(1, role, 0)
            .params(1, &[("A", "B")])
            .record(RecordType::Stdin, 1, b"")
            .bytes();
        let mut conn = Connection::new(&Config::new());
        let (events, output) = run(&mut conn, wire).unwrap();
        assert_eq!(
            events,
            [Event::Rejected {
                id: 1,
                status: ProtocolStatus::UnknownRole
            }]
        );
        assert_eq!(
            &output[..],
            b"\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00"
        );
        assert!(!conn.is_active(1));
        assert!(conn.should_close());
    }
    let mut conn = Connection::new(&Config::new());
    run(&mut conn, Wire::default().begin(1, 9, KEEP_CONN).bytes()).unwrap();
    assert!(!conn.should_close());
}

/// F8: the Authorizer role is accepted; the Filter role gets DATA after
/// PARAMS, which may interleave with STDIN.
#[test]
fn authorizer_and_filter_roles_f8() {
    let (events, _) = run_default(Wire::default().begin(1, 2, 0).params(1, &[]).bytes()).unwrap();
    assert_eq!(
        events[0],
        Event::Begin {
            id: 1,
            role: Role::Authorizer,
            keep_conn: false
        }
    );

    let wire = Wire::default()
        .begin(1, 3, 0)
        .params(1, &[("FCGI_DATA_LENGTH", "4")])
        .record(RecordType::Stdin, 1, b"in")
        .record(RecordType::Data, 1, b"file")
        .record(RecordType::Stdin, 1, b"")
        .record(RecordType::Data, 1, b"")
        .bytes();
    let (events, _) = run_default(wire).unwrap();
    assert_eq!(
        events[2..],
        [
            Event::Stdin {
                id: 1,
                data: Bytes::from_static(b"in")
            },
            Event::Data {
                id: 1,
                data: Bytes::from_static(b"file")
            },
            Event::StdinEnd { id: 1 },
            Event::DataEnd { id: 1 },
        ]
    );
}

/// F8, F15: DATA for a non-Filter request, or before PARAMS ended, is a
/// protocol error.
#[test]
fn data_out_of_place_f8_f15() {
    let wire = Wire::default()
        .begin(1, RESPONDER, 0)
        .params(1, &[])
        .record(RecordType::Data, 1, b"x")
        .bytes();
    assert!(run_default(wire).unwrap_err().is_unexpected_record());
    let wire = Wire::default()
        .begin(1, 3, 0)
        .record(RecordType::Data, 1, b"x")
        .bytes();
    assert!(run_default(wire).unwrap_err().is_unexpected_record());
}

/// F9: a second request on a connection that does not multiplex gets
/// libfcgi's CANT_MPX_CONN answer; the first request carries on.
#[test]
fn cant_mpx_conn_f9_q18() {
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .begin(2, RESPONDER, 0)
        .params(2, &[("IGNORED", "1")])
        .params(1, &[("A", "1")])
        .bytes();
    let mut conn = Connection::new(&Config::new());
    let (events, output) = run(&mut conn, wire).unwrap();
    assert_eq!(
        &output[..],
        b"\x01\x03\x00\x02\x00\x08\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00"
    );
    assert_eq!(
        events[1],
        Event::Rejected {
            id: 2,
            status: ProtocolStatus::CantMpxConn
        }
    );
    assert_eq!(events.len(), 3);
    assert_eq!(params_of(&events)[0].get(b"A").unwrap(), b"1");
    assert!(conn.is_active(1));
    assert!(!conn.is_active(2));
    assert!(!conn.should_close());
    assert_eq!(conn.active_requests(), 1);
}

/// F9: a multiplexing connection takes up to max_reqs requests, refuses
/// the next with OVERLOADED, and keeps interleaved streams apart.
#[test]
fn multiplexing_and_overload_f9() {
    let mut config = Config::new();
    config.mpxs_conns(true).max_reqs(2);
    let mut conn = Connection::new(&config);
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .begin(2, RESPONDER, KEEP_CONN)
        .begin(3, RESPONDER, KEEP_CONN)
        .params(2, &[("ID", "two")])
        .params(1, &[("ID", "one")])
        .record(RecordType::Stdin, 2, b"b")
        .record(RecordType::Stdin, 1, b"a")
        .bytes();
    let (events, output) = run(&mut conn, wire).unwrap();
    assert_eq!(
        &output[..],
        &end_request(3, 0, ProtocolStatus::Overloaded)[..]
    );
    assert_eq!(
        events[2],
        Event::Rejected {
            id: 3,
            status: ProtocolStatus::Overloaded
        }
    );
    assert!(
        matches!(&events[3], Event::Params { id: 2, params } if params.get(b"ID").unwrap() == b"two")
    );
    assert!(
        matches!(&events[4], Event::Params { id: 1, params } if params.get(b"ID").unwrap() == b"one")
    );
    assert_eq!(
        events[5..],
        [
            Event::Stdin {
                id: 2,
                data: Bytes::from_static(b"b")
            },
            Event::Stdin {
                id: 1,
                data: Bytes::from_static(b"a")
            },
        ]
    );
    assert_eq!(conn.active_requests(), 2);
    conn.finish(2, Instant::now());
    let (events, output) = run(
        &mut conn,
        Wire::default().begin(3, RESPONDER, KEEP_CONN).bytes(),
    )
    .unwrap();
    assert!(matches!(events[0], Event::Begin { id: 3, .. }));
    assert!(output.is_empty());
}

/// F15: STDIN before PARAMS ended is a protocol error.
#[test]
fn stdin_before_params_end_f15() {
    let wire = Wire::default()
        .begin(1, RESPONDER, 0)
        .record(RecordType::Params, 1, b"\x01\x01AB")
        .record(RecordType::Stdin, 1, b"x")
        .bytes();
    let err = run_default(wire).unwrap_err();
    assert!(err.is_unexpected_record());
    assert_eq!(
        err.to_string(),
        "FCGI_STDIN for request 1 before FCGI_PARAMS ended"
    );
}

/// B3: a second BEGIN for an active id, STDIN after its end marker, PARAMS
/// after its end marker, DATA after its end marker.
#[test]
fn records_after_their_end_b3() {
    let base = || Wire::default().begin(1, 3, 0).params(1, &[]);
    let cases = [
        base().begin(1, RESPONDER, 0),
        base()
            .record(RecordType::Stdin, 1, b"")
            .record(RecordType::Stdin, 1, b"x"),
        base()
            .record(RecordType::Stdin, 1, b"")
            .record(RecordType::Stdin, 1, b""),
        base().record(RecordType::Params, 1, b"\x00\x00"),
        base().record(RecordType::Params, 1, b""),
        base()
            .record(RecordType::Data, 1, b"")
            .record(RecordType::Data, 1, b"x"),
    ];
    for (i, wire) in cases.into_iter().enumerate() {
        let err = run_default(wire.bytes()).unwrap_err();
        assert!(err.is_unexpected_record(), "case {i}: {err}");
        assert_eq!(err.request_id(), Some(1));
    }
}

/// F13: ABORT_REQUEST becomes an event; later input for the request is
/// ignored (even input that would otherwise be an error) until the driver
/// ends it.
#[test]
fn abort_request_f13() {
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .params(1, &[])
        .record(RecordType::Stdin, 1, b"part")
        .record(RecordType::AbortRequest, 1, b"")
        .record(RecordType::Stdin, 1, b"more")
        .record(RecordType::AbortRequest, 1, b"")
        .record(RecordType::Params, 1, b"")
        .bytes();
    let mut conn = Connection::new(&Config::new());
    let (events, output) = run(&mut conn, wire).unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3], Event::Abort { id: 1 });
    assert!(output.is_empty());
    assert!(conn.is_aborted(1));
    // The driver answers the abort with END_REQUEST, then frees the id.
    let mut out = BytesMut::new();
    proto::ResponseEncoder::new(1).finish(&mut out, 1);
    assert_eq!(
        &out[out.len() - 16..],
        &end_request(1, 1, ProtocolStatus::RequestComplete)[..]
    );
    assert!(!conn.finish(1, Instant::now()));
    assert!(!conn.is_aborted(1));
}

/// An aborted request that never reached PARAMS can be refused by the driver.
#[test]
fn reject_active_request() {
    let mut conn = Connection::new(&Config::new());
    run(&mut conn, Wire::default().begin(1, RESPONDER, 0).bytes()).unwrap();
    assert!(conn.reject(1, ProtocolStatus::Overloaded, Instant::now()));
    assert_eq!(
        &conn.take_output()[..],
        &end_request(1, 0, ProtocolStatus::Overloaded)[..]
    );
    // An unknown id writes nothing; the answer is still "close".
    assert!(conn.reject(7, ProtocolStatus::Overloaded, Instant::now()));
    assert!(conn.take_output().is_empty());
}

/// B1: version 2 closes the connection, through the connection API too.
#[test]
fn unsupported_version_b1() {
    let wire = Wire::default()
        .raw(b"\x02\x01\x00\x01\x00\x08\x00\x00")
        .bytes();
    assert!(run_default(wire).unwrap_err().is_unsupported_version());
}

/// B2: parameters over the configured byte cap, or more pairs than allowed.
#[test]
fn params_caps_b2() {
    let mut config = Config::new();
    config.max_params_len(20).max_params(2);
    let over = Wire::default()
        .begin(1, RESPONDER, 0)
        .params(1, &[("NAME", "0123456789ABCDEF")])
        .bytes();
    assert!(
        run(&mut Connection::new(&config), over)
            .unwrap_err()
            .is_too_large()
    );
    let many = Wire::default()
        .begin(1, RESPONDER, 0)
        .params(1, &[("A", ""), ("B", ""), ("C", "")])
        .bytes();
    assert!(
        run(&mut Connection::new(&config), many)
            .unwrap_err()
            .is_too_large()
    );
    let fits = Wire::default()
        .begin(1, RESPONDER, 0)
        .params(1, &[("NAME", "0123456789AB")])
        .bytes();
    assert!(run(&mut Connection::new(&config), fits).is_ok());
}

/// B2: the PARAMS stream ends inside a pair.
#[test]
fn truncated_pair_at_params_end_b2() {
    let wire = Wire::default()
        .begin(1, RESPONDER, 0)
        .record(RecordType::Params, 1, b"\x0b\x02SERVER_PORT8")
        .record(RecordType::Params, 1, b"")
        .bytes();
    assert!(run_default(wire).unwrap_err().is_truncated());
}

/// F3: spec example B.2, with the pair split across PARAMS records.
#[test]
fn spec_example_b2_f3() {
    let wire = Wire::default()
        .begin(1, RESPONDER, 0)
        .record(RecordType::Params, 1, b"\x0b\x02SERVER_PORT80\x0b\x0eSER")
        .record(RecordType::Params, 1, b"VER_ADDR199.170.183.42")
        .record(RecordType::Params, 1, b"")
        .bytes();
    let (events, _) = run_default(wire).unwrap();
    let params = params_of(&events);
    assert_eq!(params[0].get(b"SERVER_PORT").unwrap(), b"80");
    assert_eq!(params[0].get(b"SERVER_ADDR").unwrap(), b"199.170.183.42");
}

/// Q8: Apache sends PARAMS in records of up to 16 KiB without padding, and
/// pairs straddle them. Q2: nginx sends empty values.
#[test]
fn apache_and_nginx_params_q2_q8() {
    let mut block = BytesMut::new();
    proto::encode_pair(&mut block, b"CONTENT_LENGTH", b"").unwrap();
    proto::encode_pair(&mut block, b"HTTP_COOKIE", &vec![b'c'; 40_000]).unwrap();
    proto::encode_pair(&mut block, b"CONTENT_TYPE", b"").unwrap();
    let mut wire = Wire::default().begin(1, RESPONDER, 0);
    for chunk in block.chunks(16 * 1024) {
        let mut header = [1u8, 4, 0, 1, 0, 0, 0, 0];
        header[4..6].copy_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        wire = wire.raw(&header).raw(chunk);
    }
    let wire = wire.record(RecordType::Params, 1, b"").bytes();
    let (events, _) = run_default(wire).unwrap();
    let params = params_of(&events)[0];
    assert_eq!(params.len(), 3);
    assert_eq!(params.get(b"CONTENT_LENGTH").unwrap(), b"");
    assert_eq!(params.get(b"HTTP_COOKIE").unwrap().len(), 40_000);
}

/// Q19: cgi-fcgi sends its whole environment; hundreds of pairs are fine.
#[test]
fn whole_environment_as_params_q19() {
    let names: Vec<String> = (0..500).map(|i| format!("VAR_{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "value")).collect();
    let wire = Wire::default()
        .begin(1, RESPONDER, 0)
        .params(1, &pairs)
        .bytes();
    let (events, _) = run_default(wire).unwrap();
    assert_eq!(params_of(&events)[0].len(), 500);
}

/// A whole conversation fed split at every byte boundary, and one byte at a
/// time, gives the same events and the same output as fed at once.
#[test]
fn split_input_everywhere() {
    let wire = Wire::default()
        .get_values(&["FCGI_MPXS_CONNS"])
        .begin(1, RESPONDER, KEEP_CONN)
        .record(RecordType::Params, 1, b"\x0b\x02SERVER_PORT80\x0b\x0eSER")
        .raw(b"\x01\x63\x00\x00\x00\x01\x07\x00z\xaa\xaa\xaa\xaa\xaa\xaa\xaa")
        .record(RecordType::Params, 1, b"VER_ADDR199.170.183.42")
        .record(RecordType::Params, 1, b"")
        .raw(b"\x01\x05\x00\x01\x00\x03\x05\x00abc\x01\x02\x03\x04\x05")
        .begin(2, RESPONDER, 0)
        .record(RecordType::Stdin, 1, b"")
        .bytes();
    let whole = run_default(wire.clone()).unwrap();
    assert_eq!(whole.0.len(), 7);
    assert_eq!(whole.0[2], Event::UnknownManagement { record_type: 0x63 });
    assert_eq!(whole.1.len(), 32 + 16 + 16);

    for cut in 0..=wire.len() {
        let mut conn = Connection::new(&Config::new());
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut events = Vec::new();
        let mut output = BytesMut::new();
        while let Some(event) = conn.next_event(&mut buf).unwrap() {
            events.push(event);
        }
        output.extend_from_slice(&conn.take_output());
        buf.extend_from_slice(&wire[cut..]);
        while let Some(event) = conn.next_event(&mut buf).unwrap() {
            events.push(event);
        }
        output.extend_from_slice(&conn.take_output());
        assert_eq!((events, output), whole, "split at {cut}");
    }

    let mut conn = Connection::new(&Config::new());
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut output = BytesMut::new();
    for byte in wire.iter() {
        buf.extend_from_slice(&[*byte]);
        while let Some(event) = conn.next_event(&mut buf).unwrap() {
            events.push(event);
        }
        assert!(buf.len() < proto::MAX_RECORD_LEN);
        output.extend_from_slice(&conn.take_output());
    }
    assert_eq!((events, output), whole);
}

/// A configuration with a head read timeout of 1 s and an idle timeout of
/// 10 s.
fn timed() -> Config {
    let mut config = Config::new();
    config
        .head_read_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(10));
    config
}

/// Deadlines with the time passed in: a fresh connection owes a request
/// head within the head read timeout of its opening; once a request is
/// under way there is no deadline; after it the idle timeout runs from its
/// end, and the first byte of the next head starts the head read timeout.
/// A head that is late closes at once, an idle connection politely.
#[test]
fn deadlines_with_the_time_passed_in() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut conn = Connection::opened(&timed(), t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + s(1)));
    conn.handle_timeout(t0 + Duration::from_millis(999));
    assert_eq!(conn.poll_close(), None);

    // A request arrives at 0.5 s: no deadline while it is active and
    // complete.
    conn.received(t0 + Duration::from_millis(500));
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .params(1, &[("REQUEST_METHOD", "GET")])
        .bytes();
    run(&mut conn, wire).unwrap();
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(t0 + s(100));
    assert_eq!(conn.poll_close(), None);

    // It ends at 2 s: idle until 12 s.
    assert!(!conn.finish(1, t0 + s(2)));
    assert_eq!(conn.poll_timeout(), Some(t0 + s(12)));
    // A byte at 3 s: the next head is due at 4 s.
    conn.received(t0 + s(3));
    assert_eq!(conn.poll_timeout(), Some(t0 + s(4)));
    conn.handle_timeout(t0 + s(4));
    assert_eq!(conn.poll_close(), Some(Close::Abort));

    // Without that byte, the idle timeout closes politely.
    let mut conn = Connection::opened(&timed(), t0);
    conn.received(t0);
    run(
        &mut conn,
        Wire::default().begin(1, RESPONDER, KEEP_CONN).bytes(),
    )
    .unwrap();
    // A head under way has its own deadline.
    assert_eq!(conn.poll_timeout(), Some(t0 + s(1)));
    let wire = Wire::default().params(1, &[]).bytes();
    run(&mut conn, wire).unwrap();
    assert_eq!(conn.poll_timeout(), None);
    conn.finish(1, t0 + s(2));
    conn.handle_timeout(t0 + s(11));
    assert_eq!(conn.poll_close(), None);
    conn.handle_timeout(t0 + s(12));
    assert_eq!(conn.poll_close(), Some(Close::Graceful));
}

/// Admission: past `max_requests_per_connection`, and once stopped, a new
/// request is refused with FCGI_OVERLOADED, and the connection closes when
/// no request is left.
#[test]
fn admission_cap_and_stop() {
    let now = Instant::now();
    let mut config = Config::new();
    config
        .mpxs_conns(true)
        .max_reqs(4)
        .max_requests_per_connection(Some(1));
    let mut conn = Connection::new(&config);
    let wire = Wire::default().begin(1, RESPONDER, KEEP_CONN).bytes();
    let (events, _) = run(&mut conn, wire).unwrap();
    assert!(matches!(events[0], Event::Begin { id: 1, .. }));
    assert!(conn.is_refusing());
    assert!(!conn.should_close(), "a request is active");
    let wire = Wire::default().begin(2, RESPONDER, KEEP_CONN).bytes();
    let (events, out) = run(&mut conn, wire).unwrap();
    assert_eq!(
        events,
        [Event::Rejected {
            id: 2,
            status: ProtocolStatus::Overloaded
        }]
    );
    assert_eq!(out, end_request(2, 0, ProtocolStatus::Overloaded));
    assert!(conn.finish(1, now));
    assert_eq!(conn.poll_close(), Some(Close::Graceful));

    let mut conn = Connection::new(&Config::new());
    conn.stop();
    let wire = Wire::default().begin(1, RESPONDER, KEEP_CONN).bytes();
    let (events, _) = run(&mut conn, wire).unwrap();
    assert!(matches!(
        events[0],
        Event::Rejected {
            status: ProtocolStatus::Overloaded,
            ..
        }
    ));
    assert_eq!(conn.poll_close(), Some(Close::Graceful));
}

/// A response cut off for a reset: the reset waits for the end of the
/// request's FCGI_STDIN, or for the deadline given, and no request is
/// admitted meanwhile.
#[test]
fn reset_after_the_input_ends() {
    let t0 = Instant::now();
    let wire = || {
        Wire::default()
            .begin(1, RESPONDER, KEEP_CONN)
            .params(1, &[])
            .bytes()
    };
    let mut conn = Connection::new(&Config::new());
    run(&mut conn, wire()).unwrap();
    conn.reset_after_input(1, t0 + Duration::from_secs(2));
    assert_eq!(conn.poll_close(), None);
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    assert!(conn.is_refusing());
    let (events, _) = run(
        &mut conn,
        Wire::default().record(RecordType::Stdin, 1, b"").bytes(),
    )
    .unwrap();
    assert_eq!(events, [Event::StdinEnd { id: 1 }]);
    assert_eq!(conn.poll_close(), Some(Close::Reset));

    let mut conn = Connection::new(&Config::new());
    run(&mut conn, wire()).unwrap();
    conn.reset_after_input(1, t0 + Duration::from_secs(2));
    conn.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(conn.poll_close(), None);
    conn.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(conn.poll_close(), Some(Close::Reset));
}

/// The body read deadline runs while a request's input is due and the
/// caller reads: from the last input, or from when reading resumed. Past
/// it the request's input is handed out once as timed out, later input for
/// it is ignored, and the connection takes no new request (it closes once
/// the request ends).
#[test]
fn body_read_deadline_with_the_time_passed_in() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut config = Config::new();
    config.body_read_timeout(s(5));
    let mut conn = Connection::opened(&config, t0);
    assert_eq!(conn.poll_timeout(), None);
    conn.received(t0);
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .params(1, &[("REQUEST_METHOD", "POST")])
        .record(RecordType::Stdin, 1, b"abc")
        .bytes();
    run(&mut conn, wire).unwrap();
    assert_eq!(conn.poll_timeout(), Some(t0 + s(5)));
    // More input moves it.
    conn.received(t0 + s(2));
    assert_eq!(conn.poll_timeout(), Some(t0 + s(7)));
    // Not while the caller does not read; from the resumption after.
    conn.pause_input();
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(t0 + s(60));
    assert_eq!(conn.next_input_timeout(), None);
    conn.resume_input(t0 + s(60));
    assert_eq!(conn.poll_timeout(), Some(t0 + s(65)));
    conn.handle_timeout(t0 + s(64));
    assert_eq!(conn.next_input_timeout(), None);
    conn.handle_timeout(t0 + s(65));
    assert_eq!(conn.next_input_timeout(), Some(1));
    assert_eq!(conn.next_input_timeout(), None);
    assert_eq!(conn.poll_timeout(), None);
    assert!(conn.is_refusing());
    assert_eq!(conn.poll_close(), None);
    // Late input is ignored; the request still ends normally.
    let (events, _) = run(
        &mut conn,
        Wire::default().record(RecordType::Stdin, 1, b"").bytes(),
    )
    .unwrap();
    assert!(events.is_empty(), "{events:?}");
    assert!(conn.finish(1, t0 + s(66)));
    assert_eq!(conn.poll_close(), Some(Close::Graceful));

    // An ended body has no deadline.
    let mut conn = Connection::opened(&config, t0);
    conn.received(t0);
    let wire = Wire::default()
        .begin(1, RESPONDER, KEEP_CONN)
        .params(1, &[])
        .record(RecordType::Stdin, 1, b"")
        .bytes();
    run(&mut conn, wire).unwrap();
    assert_eq!(conn.poll_timeout(), None);
}

/// The write deadline runs from the first write that would block, is
/// restarted by every write that makes progress, and closes the
/// connection at once when it passes, whatever else is under way.
#[test]
fn write_deadline_with_the_time_passed_in() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut config = timed();
    config.write_timeout(s(3));
    let mut conn = Connection::opened(&config, t0);
    conn.received(t0);
    run(
        &mut conn,
        Wire::default()
            .begin(1, RESPONDER, KEEP_CONN)
            .params(1, &[])
            .record(RecordType::Stdin, 1, b"")
            .bytes(),
    )
    .unwrap();
    assert_eq!(conn.poll_timeout(), None);
    conn.write_blocked(t0 + s(1));
    assert!(conn.is_write_blocked());
    // A second block does not move it.
    conn.write_blocked(t0 + s(2));
    assert_eq!(conn.poll_timeout(), Some(t0 + s(4)));
    // Progress stops it; the next block starts it afresh.
    conn.wrote();
    assert_eq!(conn.poll_timeout(), None);
    conn.write_blocked(t0 + s(5));
    conn.handle_timeout(t0 + s(7));
    assert_eq!(conn.poll_close(), None);
    conn.handle_timeout(t0 + s(8));
    assert_eq!(conn.poll_close(), Some(Close::Abort));
    // With the idle deadline earlier, the earliest wins.
    let mut conn = Connection::opened(&config, t0);
    conn.received(t0);
    conn.write_blocked(t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + s(1)));
}

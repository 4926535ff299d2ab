//! The HTTP/2 streams a connection has open, counted from the frame headers
//! it reads and writes (sans-IO: bytes in, a count out).
//!
//! hyper hands a stream answered `2xx` to an extended CONNECT (RFC 8441,
//! a WebSocket over HTTP/2) to the application and forgets it: no request
//! is in flight any more, yet the stream is open until the application
//! drops it. The connection's idle watch must not close such a connection,
//! and cannot ask hyper whether streams are open; so the connection's
//! stream counts them itself. Only frame headers are looked at (9 bytes per
//! frame, the payloads skipped), plus the last-stream field of a GOAWAY the
//! server sends.
//!
//! A stream opens with the client's HEADERS on a new (odd) stream, and is
//! closed once both sides have ended it (END_STREAM on HEADERS or DATA) or
//! either side reset it (RST_STREAM). After the server's GOAWAY, streams
//! above its last-stream id are never served and not counted.

use std::collections::HashMap;

/// The client connection preface (RFC 9113 §3.4), which tells HTTP/2 with
/// prior knowledge from HTTP/1.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;

/// The client ended its side of the stream.
const CLIENT_DONE: u8 = 1;
/// The server ended its side of the stream.
const SERVER_DONE: u8 = 2;

/// Which side a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Frame boundaries in one direction of the connection.
#[derive(Debug, Default)]
struct Framer {
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
    /// A GOAWAY's payload being read: its first four bytes are wanted.
    goaway: Option<([u8; 4], usize)>,
}

/// A frame header, or a GOAWAY's last-stream id, found in the bytes.
enum Event {
    Frame { kind: u8, flags: u8, stream: u32 },
    GoAway { last: u32 },
}

impl Framer {
    fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(Event)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                if let Some((buf, got)) = &mut self.goaway {
                    let take = (4 - *got).min(n);
                    buf[*got..*got + take].copy_from_slice(&data[..take]);
                    *got += take;
                    if *got == 4 {
                        let last = u32::from_be_bytes(*buf) & 0x7fff_ffff;
                        self.goaway = None;
                        on(Event::GoAway { last });
                    }
                }
                self.skip -= n;
                data = &data[n..];
                if self.skip == 0 {
                    self.goaway = None;
                }
                continue;
            }
            let n = (9 - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 9 {
                self.have = 0;
                let h = self.head;
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                self.skip = len;
                if h[3] == GOAWAY && len >= 4 {
                    self.goaway = Some(([0; 4], 0));
                }
                on(Event::Frame {
                    kind: h[3],
                    flags: h[4],
                    stream,
                });
            }
        }
    }
}

/// Whether the connection turned out to speak HTTP/2.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// This many bytes of the preface seen so far.
    #[default]
    Start,
    Preface(usize),
    Http2,
    /// Not HTTP/2: nothing to count.
    Off,
}

/// The open streams of one connection (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct StreamCounter {
    mode: Mode,
    read: Framer,
    write: Framer,
    /// Open streams and which sides have ended them.
    open: HashMap<u32, u8>,
    /// The highest stream the client opened.
    highest: u32,
    /// The server's GOAWAY: streams above this are never served.
    last_served: Option<u32>,
}

impl StreamCounter {
    /// The number of open streams (0 for a connection that is not HTTP/2).
    pub(crate) fn open(&self) -> usize {
        self.open.len()
    }

    /// Whether the connection is known not to be HTTP/2: nothing to count.
    pub(crate) fn is_off(&self) -> bool {
        self.mode == Mode::Off
    }

    /// Bytes the connection read from the client.
    pub(crate) fn read(&mut self, mut data: &[u8]) {
        loop {
            match self.mode {
                Mode::Off => return,
                Mode::Http2 => break,
                Mode::Start | Mode::Preface(_) => {
                    let at = match self.mode {
                        Mode::Preface(n) => n,
                        _ => 0,
                    };
                    if data.is_empty() {
                        return;
                    }
                    let n = (PREFACE.len() - at).min(data.len());
                    if data[..n] != PREFACE[at..at + n] {
                        self.mode = Mode::Off;
                        return;
                    }
                    data = &data[n..];
                    self.mode = if at + n == PREFACE.len() {
                        Mode::Http2
                    } else {
                        Mode::Preface(at + n)
                    };
                }
            }
        }
        let Self {
            read,
            open,
            highest,
            last_served,
            ..
        } = self;
        read.feed(data, |e| {
            if let Event::Frame {
                kind,
                flags,
                stream,
            } = e
            {
                on_frame(
                    open,
                    highest,
                    *last_served,
                    Side::Client,
                    kind,
                    flags,
                    stream,
                );
            }
        });
    }

    /// Bytes the connection wrote to the client.
    pub(crate) fn wrote(&mut self, data: &[u8]) {
        if self.mode != Mode::Http2 {
            return;
        }
        let Self {
            write,
            open,
            highest,
            last_served,
            ..
        } = self;
        write.feed(data, |e| match e {
            Event::Frame {
                kind,
                flags,
                stream,
            } => on_frame(
                open,
                highest,
                *last_served,
                Side::Server,
                kind,
                flags,
                stream,
            ),
            Event::GoAway { last } => {
                let last = last_served.map_or(last, |l| l.min(last));
                *last_served = Some(last);
                open.retain(|&id, _| id <= last);
            }
        });
    }
}

fn on_frame(
    open: &mut HashMap<u32, u8>,
    highest: &mut u32,
    last_served: Option<u32>,
    side: Side,
    kind: u8,
    flags: u8,
    stream: u32,
) {
    if stream == 0 {
        return;
    }
    let done = match side {
        Side::Client => CLIENT_DONE,
        Side::Server => SERVER_DONE,
    };
    match kind {
        HEADERS | DATA => {
            let state = match open.get_mut(&stream) {
                Some(state) => state,
                None => {
                    // Only the client's HEADERS on a new, odd stream the
                    // server will still serve opens one.
                    if side != Side::Client
                        || kind != HEADERS
                        || stream.is_multiple_of(2)
                        || stream <= *highest
                        || last_served.is_some_and(|l| stream > l)
                    {
                        return;
                    }
                    *highest = stream;
                    open.entry(stream).or_insert(0)
                }
            };
            if flags & END_STREAM != 0 {
                *state |= done;
                if *state == CLIENT_DONE | SERVER_DONE {
                    open.remove(&stream);
                }
            }
        }
        RST_STREAM => {
            open.remove(&stream);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn http2() -> StreamCounter {
        let mut c = StreamCounter::default();
        c.read(PREFACE);
        c.read(&frame(0x4, 0, 0, &[]));
        c
    }

    #[test]
    fn a_request_opens_and_its_response_closes() {
        let mut c = http2();
        c.read(&frame(HEADERS, END_STREAM | 0x4, 1, b"hpack"));
        assert_eq!(c.open(), 1);
        c.wrote(&frame(HEADERS, 0x4, 1, b"head"));
        assert_eq!(c.open(), 1);
        c.wrote(&frame(DATA, END_STREAM, 1, b"body"));
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn a_tunnel_stays_open_until_both_sides_end_it() {
        let mut c = http2();
        // Extended CONNECT: the client's side stays open.
        c.read(&frame(HEADERS, 0x4, 3, b"connect"));
        c.wrote(&frame(HEADERS, 0x4, 3, b"200"));
        c.read(&frame(DATA, 0, 3, &[0; 100]));
        c.wrote(&frame(DATA, 0, 3, &[0; 100]));
        assert_eq!(c.open(), 1);
        c.wrote(&frame(DATA, END_STREAM, 3, &[]));
        assert_eq!(c.open(), 1);
        c.read(&frame(DATA, END_STREAM, 3, &[]));
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn a_reset_from_either_side_closes() {
        let mut c = http2();
        c.read(&frame(HEADERS, 0x4, 1, b"a"));
        c.read(&frame(HEADERS, 0x4, 3, b"b"));
        assert_eq!(c.open(), 2);
        c.read(&frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]));
        c.wrote(&frame(RST_STREAM, 0, 3, &[0, 0, 0, 0]));
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[0; 12]));
        bytes.extend(frame(HEADERS, 0x4, 1, &[7; 40]));
        bytes.extend(frame(DATA, 0, 1, &[9; 300]));
        bytes.extend(frame(HEADERS, END_STREAM | 0x4, 3, &[1; 5]));
        for chunk in 1..=bytes.len() {
            let mut c = StreamCounter::default();
            for piece in bytes.chunks(chunk) {
                c.read(piece);
            }
            assert_eq!(c.open(), 2, "chunks of {chunk}");
            let mut out = frame(DATA, END_STREAM, 3, &[0; 33]);
            out.extend(frame(RST_STREAM, 0, 1, &[0; 4]));
            for piece in out.chunks(chunk) {
                c.wrote(piece);
            }
            assert_eq!(c.open(), 0, "chunks of {chunk}");
        }
    }

    #[test]
    fn http1_is_not_counted() {
        let mut c = StreamCounter::default();
        c.read(b"GET / HTTP/1.1\r\n");
        c.read(&frame(HEADERS, 0x4, 1, b"x"));
        c.wrote(&frame(HEADERS, 0x4, 1, b"x"));
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn streams_past_a_goaway_are_not_counted() {
        let mut c = http2();
        c.read(&frame(HEADERS, 0x4, 1, b"a"));
        c.read(&frame(HEADERS, 0x4, 3, b"b"));
        let mut goaway = 1u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&[0, 0, 0, 0]);
        c.wrote(&frame(GOAWAY, 0, 0, &goaway));
        assert_eq!(c.open(), 1);
        c.read(&frame(HEADERS, 0x4, 5, b"c"));
        assert_eq!(c.open(), 1);
    }

    #[test]
    fn the_server_cannot_open_and_old_ids_do_not_reopen() {
        let mut c = http2();
        c.wrote(&frame(HEADERS, 0x4, 2, b"push"));
        c.read(&frame(HEADERS, END_STREAM | 0x4, 1, b"a"));
        c.wrote(&frame(HEADERS, END_STREAM | 0x4, 1, b"b"));
        c.read(&frame(HEADERS, 0x4, 1, b"again"));
        c.read(&frame(DATA, 0, 7, b"no headers first"));
        assert_eq!(c.open(), 0);
    }
}

//! Arbitrary bytes into the FastCGI name-value pair decoder: it must never
//! panic, must give the same result whole or in pieces, and what it accepts
//! must survive re-encoding.
//!
//! Input layout: byte 0 picks the caps, byte 1 the piece sizes, the rest is
//! the pair stream.

#![no_main]

use bytes::{Bytes, BytesMut};
use gateway_fastcgi::proto::{Params, ParamsDecoder, ProtocolError, decode_pairs, encode_pair};
use libfuzzer_sys::fuzz_target;

fn in_pieces(
    stream: &Bytes,
    sizes: u8,
    max_len: usize,
    max_count: usize,
) -> Result<Params, ProtocolError> {
    let mut decoder = ParamsDecoder::new(max_len, max_count);
    let mut rest = stream.clone();
    let mut step = 0u32;
    while !rest.is_empty() {
        step += 1;
        let size = usize::from(sizes.rotate_left(step % 8)) % 40;
        decoder.push(rest.split_to(size.min(rest.len())))?;
        if size == 0 {
            // An empty piece changes nothing; move on by one byte.
            decoder.push(rest.split_to(1.min(rest.len())))?;
        }
    }
    decoder.finish()
}

fuzz_target!(|data: &[u8]| {
    let [selector, sizes, stream @ ..] = data else {
        return;
    };
    let max_len = match selector & 3 {
        0 => 16,
        1 => 300,
        2 => 1 << 20,
        _ => usize::MAX,
    };
    let max_count = if selector & 4 != 0 { 3 } else { 10_000 };
    let stream = Bytes::copy_from_slice(stream);

    let whole = decode_pairs(stream.clone(), max_len, max_count);
    let pieces = in_pieces(&stream, *sizes, max_len, max_count);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but in pieces {pieces:?}"),
    }

    if let Ok(params) = whole {
        assert!(stream.len() <= max_len);
        assert!(params.len() <= max_count);
        let mut again = BytesMut::new();
        for (name, value) in &params {
            encode_pair(&mut again, name, value).unwrap();
        }
        assert!(again.len() <= stream.len());
        let decoded = decode_pairs(again.freeze(), usize::MAX, usize::MAX).unwrap();
        assert_eq!(decoded, params);
    }
});

//! Management records (spec §4): `FCGI_GET_VALUES` and its result.
//!
//! A web server may ask, on request id 0 and at any time, for the
//! application's limits. The application answers with one
//! `FCGI_GET_VALUES_RESULT` record holding the variables it knows, as decimal
//! strings, and omits the others.

use bytes::{Bytes, BytesMut};

use super::connection::Config;
use super::encode::encode_record;
use super::error::ProtocolError;
use super::params::encode_pair;
use super::record::{
    FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS, FCGI_NULL_REQUEST_ID, RecordType,
};

/// Appends a single management record of this type whose content is the
/// given pairs.
fn encode_pairs_record<I, N, V>(
    dst: &mut BytesMut,
    record_type: RecordType,
    pairs: I,
) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut block = BytesMut::new();
    for (name, value) in pairs {
        encode_pair(&mut block, name.as_ref(), value.as_ref())?;
    }
    encode_record(dst, record_type, FCGI_NULL_REQUEST_ID, &block)
}

/// Appends an `FCGI_GET_VALUES` record asking for these variables (names with
/// empty values), as a web server sends it.
///
/// # Errors
///
/// The names do not fit in one record; nothing is written then.
pub fn encode_get_values<I, N>(dst: &mut BytesMut, names: I) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = N>,
    N: AsRef<[u8]>,
{
    encode_pairs_record(
        dst,
        RecordType::GetValues,
        names.into_iter().map(|name| (name, [])),
    )
}

/// Appends an `FCGI_GET_VALUES_RESULT` record with these variables.
///
/// # Errors
///
/// The pairs do not fit in one record; nothing is written then.
pub fn encode_get_values_result<I, N, V>(dst: &mut BytesMut, pairs: I) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    encode_pairs_record(dst, RecordType::GetValuesResult, pairs)
}

/// The answer to a query: each known name once, in the order first asked,
/// with its value from `config`.
pub(crate) fn get_values_answer(config: &Config, names: &[Bytes]) -> Vec<(&'static [u8], String)> {
    let mut answer: Vec<(&'static [u8], String)> = Vec::new();
    for name in names {
        let (known, value) = match name.as_ref() {
            FCGI_MAX_CONNS => (FCGI_MAX_CONNS, config.max_conns.to_string()),
            FCGI_MAX_REQS => (FCGI_MAX_REQS, config.max_reqs.to_string()),
            FCGI_MPXS_CONNS => (FCGI_MPXS_CONNS, u8::from(config.mpxs_conns).to_string()),
            _ => continue,
        };
        if answer.iter().all(|(n, _)| *n != known) {
            answer.push((known, value));
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Libfcgi's answer (1, 1, 0), byte for byte.
    const LIBFCGI_ANSWER: &[u8] = b"\x01\x0a\x00\x00\x00\x33\x05\x00\
        \x0e\x01FCGI_MAX_CONNS1\
        \x0d\x01FCGI_MAX_REQS1\
        \x0f\x01FCGI_MPXS_CONNS0\
        \x00\x00\x00\x00\x00";

    fn names(list: &[&'static [u8]]) -> Vec<Bytes> {
        list.iter().map(|n| Bytes::from_static(n)).collect()
    }

    #[test]
    fn default_answer_is_libfcgi_vector_f4() {
        let asked = names(&[FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS]);
        let mut out = BytesMut::new();
        encode_get_values_result(&mut out, get_values_answer(&Config::new(), &asked)).unwrap();
        assert_eq!(&out[..], LIBFCGI_ANSWER);
    }

    /// Unknown names are left out, known ones answered once, in the
    /// order asked, from the real configuration.
    #[test]
    fn answer_follows_config_and_order_f4() {
        let mut config = Config::new();
        config.max_conns(10).max_reqs(250).mpxs_conns(true);
        let asked = names(&[
            b"FCGI_MPXS_CONNS",
            b"FCGI_UNKNOWN",
            b"FCGI_MAX_REQS",
            b"FCGI_MPXS_CONNS",
            b"fcgi_max_conns",
        ]);
        let answer = get_values_answer(&config, &asked);
        assert_eq!(
            answer,
            [
                (FCGI_MPXS_CONNS, "1".to_string()),
                (FCGI_MAX_REQS, "250".to_string()),
            ]
        );
        assert!(get_values_answer(&config, &[]).is_empty());
    }

    #[test]
    fn get_values_query_bytes() {
        let mut out = BytesMut::new();
        encode_get_values(&mut out, [FCGI_MAX_CONNS, FCGI_MAX_REQS]).unwrap();
        assert_eq!(
            &out[..],
            b"\x01\x09\x00\x00\x00\x1f\x01\x00\
              \x0e\x00FCGI_MAX_CONNS\x0d\x00FCGI_MAX_REQS\x00"
        );
        let mut out = BytesMut::new();
        let too_many = vec![&b"0123456789"[..]; 6000];
        assert!(
            encode_get_values(&mut out, too_many)
                .unwrap_err()
                .is_too_large()
        );
        assert!(out.is_empty());
    }
}

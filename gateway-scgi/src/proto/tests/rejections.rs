//! Each rejected case, one by one, and the size cap.

use super::*;

#[test]
fn b4_length_with_non_digit() {
    assert_eq!(rejected_as(b"x:,"), Some(Kind::LengthNotDigit));
    assert_eq!(rejected_as(b"+5:"), Some(Kind::LengthNotDigit));
    assert_eq!(rejected_as(b" 5:"), Some(Kind::LengthNotDigit));
    assert_eq!(rejected_as(b":,"), Some(Kind::LengthNotDigit));
}

#[test]
fn b4_length_with_leading_zero() {
    assert_eq!(rejected_as(b"07:"), Some(Kind::LengthLeadingZero));
    assert_eq!(rejected_as(b"00:"), Some(Kind::LengthLeadingZero));
}

#[test]
fn b4_no_colon() {
    assert_eq!(rejected_as(b"24,CONTENT_LENGTH"), Some(Kind::MissingColon));
    assert_eq!(rejected_as(b"2 4:"), Some(Kind::MissingColon));
    assert_eq!(rejected_as(b"0x"), Some(Kind::MissingColon));
}

#[test]
fn b4_no_comma() {
    let mut input = request(&[("CONTENT_LENGTH", "0")]);
    input.pop();
    input.push(b';');
    assert_eq!(rejected_as(&input), Some(Kind::MissingComma));
    // One byte short of the announced length: the comma is not where it must be.
    let input = b"18:CONTENT_LENGTH\x000\x00,x";
    assert_eq!(rejected_as(input), Some(Kind::MissingComma));
}

#[test]
fn b4_block_not_nul_terminated() {
    let input = netstring(b"CONTENT_LENGTH\x000\x00SCGI\x001");
    assert_eq!(rejected_as(&input), Some(Kind::NotNulTerminated));
}

#[test]
fn b4_odd_string_count() {
    let input = netstring(b"CONTENT_LENGTH\x000\x00SCGI\x00");
    assert_eq!(rejected_as(&input), Some(Kind::OddStringCount));
    assert_eq!(rejected_as(&netstring(b"\x00")), Some(Kind::OddStringCount));
}

#[test]
fn b4_first_header_not_content_length() {
    let input = request(&[("SCGI", "1"), ("CONTENT_LENGTH", "0")]);
    assert_eq!(rejected_as(&input), Some(Kind::FirstNotContentLength));
    let input = request(&[("content_length", "0")]);
    assert_eq!(rejected_as(&input), Some(Kind::FirstNotContentLength));
    assert_eq!(rejected_as(b"0:,"), Some(Kind::FirstNotContentLength));
}

#[test]
fn b4_empty_content_length() {
    let input = request(&[("CONTENT_LENGTH", ""), ("SCGI", "1")]);
    assert_eq!(rejected_as(&input), Some(Kind::InvalidContentLength));
}

#[test]
fn b4_non_digit_content_length() {
    for value in ["-1", "+1", " 1", "1 ", "1e3", "0x10", "١"] {
        let input = request(&[("CONTENT_LENGTH", value)]);
        assert_eq!(
            rejected_as(&input),
            Some(Kind::InvalidContentLength),
            "CONTENT_LENGTH={value:?}"
        );
    }
}

#[test]
fn b4_duplicate_name() {
    let input = request(&[("CONTENT_LENGTH", "0"), ("A", "1"), ("B", "2"), ("A", "3")]);
    assert_eq!(rejected_as(&input), Some(Kind::DuplicateName));
    let input = request(&[("CONTENT_LENGTH", "0"), ("CONTENT_LENGTH", "0")]);
    assert_eq!(rejected_as(&input), Some(Kind::DuplicateName));
}

#[test]
fn b4_errors_fall_in_one_group_each() {
    type Group = fn(&ProtocolError) -> bool;
    let cases: [(&[u8], Group); 5] = [
        (b"07:", ProtocolError::is_netstring),
        (b"99999999:", ProtocolError::is_too_large),
        (b"2:A\x00,", ProtocolError::is_header_pairs),
        (b"0:,", ProtocolError::is_content_length),
        (
            b"17:CONTENT_LENGTH\x000\x00,",
            ProtocolError::is_scgi_marker,
        ),
    ];
    let groups: [Group; 5] = cases.map(|(_, group)| group);
    for (input, group) in cases {
        let err = rejection(&strict(), input);
        assert!(err.is_some_and(|err| group(&err)), "{input:?}");
        let hits = groups.iter().filter(|g| err.is_some_and(|e| g(&e))).count();
        assert_eq!(hits, 1, "{input:?} is in {hits} groups");
        let reason = err.map(|err| err.to_string()).unwrap_or_default();
        assert!(
            reason.starts_with("malformed SCGI request header: "),
            "{reason}"
        );
    }
}

// B4 [D]: the size cap.

#[test]
fn b4_cap_default_is_64_kib() -> TestResult {
    // A block of exactly 64 KiB: CONTENT_LENGTH, then one pair padded to fit.
    let head = block(&[(b"CONTENT_LENGTH", b"0")]);
    let pad = vec![b'x'; Config::DEFAULT_MAX_HEADER_LEN - head.len() - "P\0\0".len()];
    let full = [head, block(&[(b"P", &pad)])].concat();
    assert_eq!(full.len(), 65536);
    let (header, _) = parse(&netstring(&full))?;
    assert_eq!(header.get(b"P").map(<[u8]>::len), Some(pad.len()));

    let over = [full, b"\0\0".to_vec()].concat();
    let err = rejection(&Config::new(), &netstring(&over)).ok_or("accepted over the cap")?;
    assert_eq!(err.kind(), Kind::TooLarge);
    assert!(err.is_too_large());
    Ok(())
}

#[test]
fn b4_cap_is_configurable() -> TestResult {
    let mut config = Config::new();
    config.max_header_len(17);
    let (header, _) = parse_with(&config, &request(&[("CONTENT_LENGTH", "0")]))?;
    assert_eq!(header.content_length(), 0);
    let input = request(&[("CONTENT_LENGTH", "10")]);
    let err = rejection(&config, &input).ok_or("accepted over the cap")?;
    assert_eq!(err.kind(), Kind::TooLarge);
    Ok(())
}

#[test]
fn b4_cap_stops_a_long_length_at_its_first_excess_digit() {
    let mut config = Config::new();
    config.max_header_len(100);
    let mut parser = HeaderParser::new(&config);
    let mut buf = BytesMut::from(&b"100"[..]);
    assert_eq!(parser.parse(&mut buf), Ok(None));
    assert!(buf.is_empty(), "length digits are consumed as they arrive");
    buf.extend_from_slice(b"0");
    let err = parser.parse(&mut buf).err().map(|err| err.kind());
    assert_eq!(err, Some(Kind::TooLarge));

    let endless = vec![b'9'; 10_000];
    assert_eq!(rejected_as(&endless), Some(Kind::TooLarge));
}

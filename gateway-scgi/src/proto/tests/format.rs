//! The request format, accepted inputs and their results.

use super::*;

#[test]
fn s1_vector_exact() -> TestResult {
    let (header, body) = parse(S1)?;
    let pairs: Vec<(&[u8], &[u8])> = header.iter().collect();
    assert_eq!(
        pairs,
        [
            (&b"CONTENT_LENGTH"[..], &b"27"[..]),
            (b"SCGI", b"1"),
            (b"REQUEST_METHOD", b"POST"),
            (b"REQUEST_URI", b"/deepthought"),
        ]
    );
    assert_eq!(header.content_length(), 27);
    assert_eq!(header.marker(), Marker::Present);
    assert_eq!(header.wire_len(), "70:".len() + 70 + ",".len());
    assert_eq!(body, b"What is the answer to life?");
    assert_eq!(body.len(), 27);
    // The helpers build the same bytes as the vector.
    let built = request(&[
        ("CONTENT_LENGTH", "27"),
        ("SCGI", "1"),
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", "/deepthought"),
    ]);
    assert_eq!(S1.strip_suffix(&body[..]), Some(&built[..]));
    Ok(())
}

#[test]
fn s1_header_without_body_bytes_leaves_nothing() -> TestResult {
    let (header, rest) = parse(&request(&[("CONTENT_LENGTH", "0"), ("SCGI", "1")]))?;
    assert_eq!(header.content_length(), 0);
    assert!(rest.is_empty());
    Ok(())
}

#[test]
fn s1_incomplete_input_asks_for_more() {
    for end in 0..S1.len() - 27 {
        assert_eq!(
            outcome(&Config::new(), &S1[..end]),
            Ok(None),
            "prefix {end}"
        );
    }
}

#[test]
fn s2_empty_values_are_kept() -> TestResult {
    let (header, _) = parse(&request(&[
        ("CONTENT_LENGTH", "0"),
        ("QUERY_STRING", ""),
        ("SCGI", "1"),
        ("CONTENT_TYPE", ""),
    ]))?;
    assert_eq!(header.get(b"QUERY_STRING"), Some(&b""[..]));
    assert_eq!(header.get(b"CONTENT_TYPE"), Some(&b""[..]));
    assert_eq!(header.iter().len(), 4);
    Ok(())
}

#[test]
fn s2_empty_name_is_rejected() {
    let input = request(&[("CONTENT_LENGTH", "0"), ("", "x")]);
    assert_eq!(rejected_as(&input), Some(Kind::EmptyName));
}

#[test]
fn s3_content_length_zero_is_present_and_first() -> TestResult {
    let (header, _) = parse(&request(&[("CONTENT_LENGTH", "0"), ("SCGI", "1")]))?;
    assert_eq!(names(&header).first(), Some(&&b"CONTENT_LENGTH"[..]));
    assert_eq!(header.get(b"CONTENT_LENGTH"), Some(&b"0"[..]));
    Ok(())
}

#[test]
fn s3_content_length_is_bounded_to_u64() -> TestResult {
    let (header, _) = parse(&request(&[("CONTENT_LENGTH", "18446744073709551615")]))?;
    assert_eq!(header.content_length(), u64::MAX);
    let (header, _) = parse(&request(&[("CONTENT_LENGTH", "0042")]))?;
    assert_eq!(header.content_length(), 42);
    let over = request(&[("CONTENT_LENGTH", "18446744073709551616")]);
    assert_eq!(rejected_as(&over), Some(Kind::InvalidContentLength));
    Ok(())
}

#[test]
fn s3_body_bytes_follow_the_comma_untouched() -> TestResult {
    let mut input = request(&[("CONTENT_LENGTH", "5")]);
    input.extend_from_slice(b"a\x00,b:");
    let (_, body) = parse(&input)?;
    assert_eq!(body, b"a\x00,b:");
    Ok(())
}

#[test]
fn s4_marker_positions_are_all_accepted() -> TestResult {
    let second = request(&[
        ("CONTENT_LENGTH", "0"),
        ("SCGI", "1"),
        ("A", "a"),
        ("B", "b"),
    ]);
    let middle = request(&[
        ("CONTENT_LENGTH", "0"),
        ("A", "a"),
        ("SCGI", "1"),
        ("B", "b"),
    ]);
    let last = request(&[
        ("CONTENT_LENGTH", "0"),
        ("A", "a"),
        ("B", "b"),
        ("SCGI", "1"),
    ]);
    for input in [second, middle, last] {
        let (header, _) = parse_with(&strict(), &input)?;
        assert_eq!(header.marker(), Marker::Present);
    }
    Ok(())
}

#[test]
fn s4_missing_marker_is_reported_unless_strict() -> TestResult {
    let input = request(&[("CONTENT_LENGTH", "0"), ("REQUEST_METHOD", "GET")]);
    let (header, _) = parse(&input)?;
    assert_eq!(header.marker(), Marker::Missing);
    let err = rejection(&strict(), &input).ok_or("strict mode accepted it")?;
    assert_eq!(err.kind(), Kind::MissingMarker);
    assert!(err.is_scgi_marker());
    Ok(())
}

#[test]
fn s4_unexpected_marker_is_reported_unless_strict() -> TestResult {
    for value in ["0", "2", "", "1.0", " 1"] {
        let input = request(&[("CONTENT_LENGTH", "0"), ("SCGI", value)]);
        let (header, _) = parse(&input)?;
        assert_eq!(header.marker(), Marker::Unexpected, "SCGI={value:?}");
        assert_eq!(header.get(b"SCGI"), Some(value.as_bytes()));
        let err = rejection(&strict(), &input).ok_or("strict mode accepted it")?;
        assert_eq!(err.kind(), Kind::InvalidMarker, "SCGI={value:?}");
    }
    Ok(())
}

#[test]
fn s4_marker_name_is_case_sensitive() -> TestResult {
    let (header, _) = parse(&request(&[("CONTENT_LENGTH", "0"), ("scgi", "1")]))?;
    assert_eq!(header.marker(), Marker::Missing);
    Ok(())
}

#[test]
fn s6_header_bytes_stay_raw() -> TestResult {
    let input = netstring(&block(&[
        (b"CONTENT_LENGTH", b"0"),
        (b"HTTP_X_LATIN1", b"caf\xe9"),
        (b"N\xff\x01", b"\xc3\x28\x7f"),
    ]));
    let (header, _) = parse(&input)?;
    assert_eq!(header.get(b"HTTP_X_LATIN1"), Some(&b"caf\xe9"[..]));
    assert_eq!(header.get(b"N\xff\x01"), Some(&b"\xc3\x28\x7f"[..]));
    let pairs = header.into_pairs();
    assert_eq!(
        pairs.get(2).map(|(n, _)| n.as_ref()),
        Some(&b"N\xff\x01"[..])
    );
    Ok(())
}

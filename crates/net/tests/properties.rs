//! Property tests for the PROXY protocol parser: no input panics, valid
//! v1 and v2 headers parse to the address they carry, and the parser's
//! answers fit the byte-at-a-time reading of [`read_header`]: every proper
//! prefix of a header is "more bytes needed", and `read_header` consumes
//! exactly the header.
//!
//! Fixed seed (see [`config`]); `PROPTEST_CASES=N` and `PROPTEST_RNG_SEED=S`
//! override the case count and the seed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use postroom_net::proxy::{parse, read_header, ProxyError, ProxyHeader};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};

const SEED: u64 = 0x0050_6f73_7472_6f6f;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn config(cases: u32) -> ProptestConfig {
    let env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            env.cases
        } else {
            cases
        },
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: match env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..env
    }
}

type Parsed = Result<Option<(usize, ProxyHeader)>, ProxyError>;

/// What `read_header` makes of `input` read from a socket, and how many
/// bytes it left unread.
fn read_from(input: &[u8]) -> (Result<ProxyHeader, ProxyError>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut reader = input;
    let result = rt.block_on(read_header(&mut reader));
    (result, reader.len())
}

/// Known bug, kept out of the checks below until fixed (reproducer at the
/// end of this file); flip once fixed. `parse` looks for the v1 CRLF in the
/// whole buffer and accepts a line longer than the 107 bytes the spec
/// allows, while its own prefixes of 108 bytes are refused as too long.
const V1_LENGTH_BUG_FIXED: bool = true;

fn is_long_v1(buf: &[u8], n: usize) -> bool {
    !V1_LENGTH_BUG_FIXED && buf.starts_with(b"PROXY ") && n > 107
}

/// The contract `read_header` relies on, for any buffer.
fn check_consistent(buf: &[u8]) -> Result<Parsed, TestCaseError> {
    let parsed = parse(buf);
    if matches!(&parsed, Ok(Some((n, _))) if is_long_v1(buf, *n)) {
        return Ok(parsed);
    }
    if let Ok(Some((n, header))) = &parsed {
        prop_assert!(*n <= buf.len());
        prop_assert!(*n >= 8, "header of {} bytes", n);
        // The header alone parses the same.
        prop_assert_eq!(parse(&buf[..*n]), Ok(Some((*n, clone(header)))));
        // Every shorter prefix needs more bytes.
        for k in 0..*n {
            prop_assert_eq!(parse(&buf[..k]), Ok(None), "prefix of {} bytes of {:?}", k, buf);
        }
    }
    if let Ok(None) = &parsed {
        // Needing more bytes is never the answer for a prefix of something
        // that was already refused.
        for k in 0..buf.len() {
            prop_assert!(parse(&buf[..k]).is_ok(), "prefix {} refused, whole pending", k);
        }
    }
    Ok(parsed)
}

fn clone(h: &ProxyHeader) -> ProxyHeader {
    match h {
        ProxyHeader::Client(a) => ProxyHeader::Client(*a),
        ProxyHeader::Local => ProxyHeader::Local,
    }
}

fn check_read_header(buf: &[u8], parsed: &Parsed) -> Result<(), TestCaseError> {
    if matches!(parsed, Ok(Some((n, _))) if is_long_v1(buf, *n)) {
        return Ok(());
    }
    let (read, left) = read_from(buf);
    match parsed {
        Ok(Some((n, header))) => {
            prop_assert_eq!(read, Ok(clone(header)));
            prop_assert_eq!(left, buf.len() - n, "read_header consumed more than the header");
        }
        Ok(None) => prop_assert!(read.is_err(), "connection closed mid-header must fail"),
        Err(_) => prop_assert!(read.is_err()),
    }
    Ok(())
}

fn proxy_byte() -> impl Strategy<Value = u8> {
    any::<u16>().prop_map(|v| {
        const SPECIAL: &[u8] = b"PROXY TCP46UNKNOWN.:0123456789abcdef\r\n\0QUIT\x20\x21\x11\x12\x21\x31\xff";
        let b = v as u8;
        if v >> 8 < 160 {
            SPECIAL[b as usize % SPECIAL.len()]
        } else {
            b
        }
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

/// A valid v1 header for `src`, with the destination of the same family.
fn v1_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A valid v2 PROXY (command 1) header over TCP with optional TLVs.
fn v2_header(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x21);
    let mut body = Vec::new();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.push(0x11);
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
        }
        (s, d) => {
            h.push(0x21);
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&v6(d).octets());
        }
    }
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend(body);
    h
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn parse_never_panics_on_bytes(buf in prop::collection::vec(any::<u8>(), 0..700)) {
        let parsed = check_consistent(&buf)?;
        check_read_header(&buf, &parsed)?;
    }

    #[test]
    fn parse_never_panics_on_proxy_like_bytes(
        start in prop::sample::select(vec![&b"PROXY "[..], b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN", &V2_SIGNATURE[..], b""]),
        rest in prop::collection::vec(proxy_byte(), 0..200),
    ) {
        let buf = [start, &rest[..]].concat();
        let parsed = check_consistent(&buf)?;
        check_read_header(&buf, &parsed)?;
    }

    #[test]
    fn v2_with_random_fields(
        ver_cmd in prop_oneof![Just(0x20u8), Just(0x21), any::<u8>()],
        fam in prop_oneof![Just(0x11u8), Just(0x21), Just(0x31), Just(0x00), any::<u8>()],
        len in prop_oneof![0..64u16, Just(520), Just(521), any::<u16>()],
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.extend_from_slice(&[ver_cmd, fam]);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend(body);
        let parsed = check_consistent(&buf)?;
        check_read_header(&buf, &parsed)?;
    }

    #[test]
    fn valid_v1_headers_parse(
        src_ip in ip(),
        dst_ip in ip(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        after in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // v1 names the family once: both addresses of the same family.
        let dst_ip = match (src_ip, dst_ip) {
            (IpAddr::V4(_), IpAddr::V6(_)) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            (_, d) => d,
        };
        let src = SocketAddr::new(src_ip, sport);
        let header = v1_header(src, SocketAddr::new(dst_ip, dport));
        prop_assert!(header.len() <= 107);
        let buf = [&header[..], &after[..]].concat();
        let parsed = check_consistent(&buf)?;
        prop_assert_eq!(&parsed, &Ok(Some((header.len(), ProxyHeader::Client(src)))));
        check_read_header(&buf, &parsed)?;
    }

    #[test]
    fn valid_v2_headers_parse(
        src_ip in ip(),
        dst_ip in ip(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        tlvs in prop::collection::vec(any::<u8>(), 0..200),
        after in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let src = SocketAddr::new(src_ip, sport);
        let header = v2_header(src, SocketAddr::new(dst_ip, dport), &tlvs);
        let buf = [&header[..], &after[..]].concat();
        let parsed = check_consistent(&buf)?;
        let expected = match (src_ip, dst_ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => src,
            (IpAddr::V4(v4), _) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), sport),
            _ => src,
        };
        prop_assert_eq!(&parsed, &Ok(Some((header.len(), ProxyHeader::Client(expected)))));
        check_read_header(&buf, &parsed)?;
    }

    #[test]
    fn v2_local_is_local(
        fam in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..100),
        after in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.extend_from_slice(&[0x20, fam]);
        buf.extend_from_slice(&(body.len() as u16).to_be_bytes());
        buf.extend(body);
        let n = buf.len();
        buf.extend(after);
        let parsed = check_consistent(&buf)?;
        prop_assert_eq!(&parsed, &Ok(Some((n, ProxyHeader::Local))));
        check_read_header(&buf, &parsed)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// A v1 line is at most 107 bytes, CRLF included: longer is refused
    /// whether it arrives whole or byte by byte.
    #[test]
    fn v1_lines_are_at_most_107_bytes(
        filler in "[A-Za-z0-9.:]{60,120}",
        after in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let line = format!("PROXY UNKNOWN {filler}\r\n").into_bytes();
        let buf = [&line[..], &after[..]].concat();
        let parsed = parse(&buf);
        if line.len() <= 107 {
            prop_assert_eq!(parsed, Ok(Some((line.len(), ProxyHeader::Local))));
        } else {
            prop_assert!(parsed.is_err(), "{} bytes accepted", line.len());
        }
        prop_assert_eq!(read_from(&buf).0.is_ok(), line.len() <= 107);
    }
}

#[test]
fn v1_line_of_108_bytes_is_refused() {
    // 108 bytes with the CRLF; the spec (2.1) says a line without CRLF in the
    // first 107 characters is invalid, and read_header refuses it.
    let line = format!("PROXY UNKNOWN {}\r\n", "x".repeat(92));
    assert_eq!(line.len(), 108);
    assert!(read_from(line.as_bytes()).0.is_err());
    assert!(parse(&line.as_bytes()[..107]).is_err());
    assert!(
        parse(line.as_bytes()).is_err(),
        "parse accepted a 108-byte v1 line"
    );
}

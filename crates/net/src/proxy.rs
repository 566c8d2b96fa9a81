//! The PROXY protocol (HAProxy, versions 1 and 2): a load balancer in front
//! of a listener says who the real client is before the first protocol byte.
//! Pure parsing; [`read_header`] is the async wrapper.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes; a v2 header we accept at most this.
const MAX_HEADER: usize = 536;

#[derive(Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The real client's address.
    Client(SocketAddr),
    /// `UNKNOWN` / `LOCAL`: a health check; use the socket's own peer.
    Local,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ProxyError {
    Invalid(&'static str),
}

/// Parses a header at the start of `buf`. `Ok(None)`: more bytes needed.
pub fn parse(buf: &[u8]) -> Result<Option<(usize, ProxyHeader)>, ProxyError> {
    if buf.len() >= 12 && buf[..12] == V2_SIGNATURE {
        return parse_v2(buf);
    }
    if V2_SIGNATURE.starts_with(buf) && buf.len() < 12 {
        return Ok(None);
    }
    if buf.len() >= 6 && &buf[..6] != b"PROXY " {
        return Err(ProxyError::Invalid("no PROXY header"));
    }
    if buf.len() < 6 {
        return if b"PROXY ".starts_with(buf) {
            Ok(None)
        } else {
            Err(ProxyError::Invalid("no PROXY header"))
        };
    }
    let end = buf.windows(2).position(|w| w == b"\r\n");
    // The spec's limit: 107 bytes, CRLF included.
    if end.is_some_and(|e| e + 2 > 107) {
        return Err(ProxyError::Invalid("v1 header too long"));
    }
    let Some(end) = end else {
        // 107 bytes without a CRLF can no longer end within the limit.
        return if buf.len() >= 107 {
            Err(ProxyError::Invalid("v1 header too long"))
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| ProxyError::Invalid("v1 not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = match parts.as_slice() {
        ["UNKNOWN", ..] => ProxyHeader::Local,
        [proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyError::Invalid("bad source address"))?;
            if (*proto == "TCP4") != ip.is_ipv4() {
                return Err(ProxyError::Invalid("address family mismatch"));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| ProxyError::Invalid("bad source port"))?;
            ProxyHeader::Client(SocketAddr::new(ip, port))
        }
        _ => return Err(ProxyError::Invalid("bad v1 header")),
    };
    Ok(Some((end + 2, header)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(usize, ProxyHeader)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Invalid("bad v2 version"));
    }
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if 16 + len > MAX_HEADER {
        return Err(ProxyError::Invalid("v2 header too long"));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let total = 16 + len;
    match ver_cmd & 0x0f {
        0 => return Ok(Some((total, ProxyHeader::Local))),
        1 => {}
        _ => return Err(ProxyError::Invalid("bad v2 command")),
    }
    let header = match buf[13] >> 4 {
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            ProxyHeader::Client(SocketAddr::new(IpAddr::V4(ip), port))
        }
        2 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            ProxyHeader::Client(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        0 => ProxyHeader::Local,
        _ => return Err(ProxyError::Invalid("unsupported v2 address family")),
    };
    Ok(Some((total, header)))
}

/// Reads a PROXY header from the start of a connection, byte-exact: nothing
/// after the header is consumed, so the protocol reads its first line itself.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, ProxyError> {
    let mut buf = Vec::with_capacity(108);
    loop {
        // v2 carries its length at offset 14; v1 ends at CRLF. Read one byte
        // at a time up to what is known to be needed: headers are short.
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return Err(ProxyError::Invalid("connection closed in PROXY header")),
        }
        if let Some((_, header)) = parse(&buf)? {
            return Ok(header);
        }
        if buf.len() > MAX_HEADER {
            return Err(ProxyError::Invalid("PROXY header too long"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1() {
        let h = b"PROXY TCP4 198.51.100.7 192.0.2.1 4321 25\r\nEHLO x\r\n";
        let (n, header) = parse(h).unwrap().unwrap();
        assert_eq!(&h[n..], b"EHLO x\r\n");
        assert_eq!(header, ProxyHeader::Client("198.51.100.7:4321".parse().unwrap()));
        assert_eq!(parse(b"PROXY TCP4 1.2").unwrap(), None);
        assert!(parse(b"EHLO x\r\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 ::1 1 2\r\n").is_err());
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().1,
            ProxyHeader::Local
        );
    }

    #[test]
    fn v2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 7, 192, 0, 2, 1, 0x10, 0xe1, 0, 25,
        ]);
        let (n, header) = parse(&h).unwrap().unwrap();
        assert_eq!(n, h.len());
        assert_eq!(header, ProxyHeader::Client("198.51.100.7:4321".parse().unwrap()));
        assert_eq!(parse(&h[..20]).unwrap(), None);
    }
}

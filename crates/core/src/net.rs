use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// IPv4-mapped IPv6 peers (`::ffff:192.0.2.1`, seen on dual-stack sockets)
/// become plain IPv4 before any network check, so one list entry matches the
/// client however it connected.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// What per-client limits count by: an IPv4 address, or the /64 of an IPv6
/// one (a single host usually owns a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match normalize_ip(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                ClientKey(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
            }
            v4 => ClientKey(v4),
        }
    }
}

/// A list of networks from the configuration (`trusted_networks`,
/// `connection_limit_exempt`, ...). A bare address means a single host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpNetList(Vec<IpNet>);

impl IpNetList {
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        let mut nets = Vec::with_capacity(items.len());
        for item in items {
            let item = item.as_ref().trim();
            let net = match IpNet::from_str(item) {
                Ok(n) => n,
                Err(_) => match IpAddr::from_str(item) {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(format!("`{item}` is not an IP address or network")),
                },
            };
            nets.push(net);
        }
        Ok(IpNetList(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize_ip(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits a next hop, `host:port` (`[v6]:port` for IPv6); the port
/// defaults to 25. Gateway domains' `relay_to` (checked by the admin
/// service, used by the queue).
pub fn split_host_port(next_hop: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = next_hop.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_string(), p.parse().ok()?),
            None if after.is_empty() => (h.to_string(), 25),
            None => return None,
        }
    } else {
        match next_hop.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()?),
            Some(_) => return None,
            None => (next_hop.to_string(), 25),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod next_hop_tests {
    use super::split_host_port;

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("mx.example:2525"),
            Some(("mx.example".into(), 2525))
        );
        assert_eq!(split_host_port("mx.example"), Some(("mx.example".into(), 25)));
        assert_eq!(split_host_port("[::1]:2525"), Some(("::1".into(), 2525)));
        assert_eq!(split_host_port("127.0.0.1:26"), Some(("127.0.0.1".into(), 26)));
        assert_eq!(split_host_port("::1:25"), None);
        assert_eq!(split_host_port(":25"), None);
        assert_eq!(split_host_port("mx.example:x"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_match_v4_lists() {
        let list = IpNetList::parse(&["127.0.0.0/8", "::1"]).unwrap();
        assert!(list.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(list.contains("::1".parse().unwrap()));
        assert!(!list.contains("10.0.0.1".parse().unwrap()));
        assert!(IpNetList::parse(&["nonsense"]).is_err());
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a = ClientKey::of("2001:db8:1:2:3:4:5:6".parse().unwrap());
        let b = ClientKey::of("2001:db8:1:2:ffff::1".parse().unwrap());
        let c = ClientKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

//! Where mail for a domain goes (RFC 5321 5.1): MX hosts by preference
//! (equal preferences in random order), A/AAAA only when the domain has no
//! MX at all (not on SERVFAIL or a timeout, which defer), and null MX
//! (RFC 7505) means the domain accepts no mail.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Hosts to try in order, each with its addresses.
    Hosts(Vec<(String, Vec<IpAddr>)>),
    /// RFC 7505 null MX: bounce at once (556 5.1.10).
    NullMx,
    /// The domain does not exist: bounce (550 5.1.2).
    NoSuchDomain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempDnsError(pub String);

enum MxAnswer {
    /// (preference, host), without empty host names; none when the domain
    /// has no MX records.
    Records(Vec<(u16, String)>),
    NullMx,
    NoSuchDomain,
}

async fn mx_records(r: &TokioResolver, domain: &str) -> Result<MxAnswer, TempDnsError> {
    let fqdn = format!("{domain}.");
    let mut mx: Vec<(u16, String)> = match r.mx_lookup(fqdn.as_str()).await {
        Ok(l) => l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(m) => Some((
                    m.preference,
                    m.exchange.to_ascii().trim_end_matches('.').to_lowercase(),
                )),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_nx_domain() => return Ok(MxAnswer::NoSuchDomain),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(TempDnsError(format!("MX lookup for {domain} failed: {e}"))),
    };
    // RFC 7505 3: a single MX record with the root as its exchange.
    if mx.len() == 1 && mx[0].1.is_empty() {
        return Ok(MxAnswer::NullMx);
    }
    mx.retain(|(_, h)| !h.is_empty());
    Ok(MxAnswer::Records(mx))
}

pub struct MxResolver {
    resolver: Option<TokioResolver>,
}

impl MxResolver {
    /// `servers`: resolvers as IP or IP:port (53 by default); empty: the
    /// system's. `enabled = false`: no lookups at all (every remote
    /// delivery defers).
    pub fn new(enabled: bool, servers: &[String], timeout: Duration) -> Result<Self, String> {
        if !enabled {
            return Ok(MxResolver { resolver: None });
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("dns: {e}"))?
        } else {
            let mut name_servers = Vec::new();
            for s in servers {
                let addr: SocketAddr = s
                    .parse()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("dns.resolvers: `{s}` is not an address"))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                name_servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
            }
            let cfg = ResolverConfig::from_name_servers(name_servers);
            TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
        };
        Ok(MxResolver {
            resolver: Some(
                builder
                    .with_options(opts)
                    .build()
                    .map_err(|e| format!("dns: {e}"))?,
            ),
        })
    }

    /// The resolver itself, for other lookups that must follow `[dns]`
    /// (the filter's SPF, DKIM, DMARC and blocklists: `postroom_filter::
    /// Deps::dns`); clones share its cache. `None` when lookups are off.
    pub fn resolver(&self) -> Option<&TokioResolver> {
        self.resolver.as_ref()
    }

    pub async fn route(&self, domain: &str) -> Result<Route, TempDnsError> {
        let Some(r) = &self.resolver else {
            return Err(TempDnsError(
                "DNS lookups are turned off (dns.enabled = false)".into(),
            ));
        };
        // Address literals need no lookup.
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = lit
                .strip_prefix("ipv6:")
                .or_else(|| lit.strip_prefix("IPv6:"))
                .unwrap_or(lit);
            return match ip.parse::<IpAddr>() {
                Ok(ip) => Ok(Route::Hosts(vec![(domain.to_string(), vec![ip])])),
                Err(_) => Ok(Route::NoSuchDomain),
            };
        }
        let mut mx = match mx_records(r, domain).await? {
            MxAnswer::Records(mx) => mx,
            MxAnswer::NullMx => return Ok(Route::NullMx),
            MxAnswer::NoSuchDomain => return Ok(Route::NoSuchDomain),
        };
        if mx.is_empty() {
            // RFC 5321 5.1: the domain itself is the implicit MX.
            mx.push((0, domain.to_string()));
        }
        // Sort by preference, shuffling equal ones.
        mx.shuffle(&mut rand::thread_rng());
        mx.sort_by_key(|(p, _)| *p);
        let mut hosts = Vec::new();
        let mut last_err = None;
        for (_, host) in mx {
            match r.lookup_ip(format!("{host}.").as_str()).await {
                Ok(ips) => {
                    let ips: Vec<IpAddr> = ips.iter().collect();
                    if !ips.is_empty() {
                        hosts.push((host, ips));
                    }
                }
                Err(e) => last_err = Some(e.to_string()),
            }
        }
        if hosts.is_empty() {
            return Err(TempDnsError(
                last_err.unwrap_or_else(|| format!("no address for the MX hosts of {domain}")),
            ));
        }
        Ok(Route::Hosts(hosts))
    }

    /// Whether the domain publishes a null MX (RFC 7505): the MX lookup
    /// alone, without the address lookups a delivery needs.
    pub async fn is_null_mx(&self, domain: &str) -> Result<bool, TempDnsError> {
        let Some(r) = &self.resolver else {
            return Err(TempDnsError(
                "DNS lookups are turned off (dns.enabled = false)".into(),
            ));
        };
        if domain.starts_with('[') {
            return Ok(false);
        }
        Ok(matches!(mx_records(r, domain).await?, MxAnswer::NullMx))
    }

    /// The addresses of one host (a gateway domain's `relay_to`): A/AAAA
    /// only, never MX; an IP address needs no lookup.
    pub async fn host_addrs(&self, host: &str) -> Result<Vec<IpAddr>, TempDnsError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let Some(r) = &self.resolver else {
            return Err(TempDnsError(
                "DNS lookups are turned off (dns.enabled = false)".into(),
            ));
        };
        match r.lookup_ip(format!("{host}.").as_str()).await {
            Ok(ips) => {
                let ips: Vec<IpAddr> = ips.iter().collect();
                if ips.is_empty() {
                    Err(TempDnsError(format!("{host} has no address")))
                } else {
                    Ok(ips)
                }
            }
            Err(e) => Err(TempDnsError(format!("address lookup for {host} failed: {e}"))),
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6); the port defaults to 25.
pub use postroom_core::net::split_host_port;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_resolver_is_shared_only_when_lookups_are_on() {
        let off = MxResolver::new(false, &["127.0.0.1:53".into()], Duration::from_secs(1)).unwrap();
        assert!(off.resolver().is_none());
        let on = MxResolver::new(true, &["127.0.0.1:5353".into()], Duration::from_secs(1)).unwrap();
        assert!(on.resolver().is_some());
    }
}

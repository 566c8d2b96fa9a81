//! Sender checks: forward-confirmed rDNS, HELO validity, SPF, DKIM, DMARC,
//! ARC, DNS blocklists, and the Authentication-Results header (RFC 8601).
//!
//! Mail from a logged-in user (`Envelope::auth_user`) or from
//! `[smtp] trusted_networks` skips them all: they judge where anonymous
//! mail comes from. The HELO rules are pure; every
//! other check asks DNS through the `[dns]` resolver (`Deps::dns`), all at
//! once, and stops shortly before the client's deadline so that what was
//! learnt (and the header) is still reported. Without a resolver
//! (`dns.enabled = false`) only the HELO rules run.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use hickory_resolver::TokioResolver;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    IprevOutput, IprevResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use postroom_config::{FilterPolicyConfig, FilterSenderConfig};
use postroom_core::Domain;

use crate::build::Deps;
use crate::check::{Check, Findings, Forced, Scan};

// Symbol names (stable: `[filter.scores]`, `postroom explain` and the
// whitelist logic name them) and their default scores. The scores follow
// rspamd's and SpamAssassin's weights for the same findings.

/// The HELO name is not a host name at all.
pub const HELO_INVALID: &str = "HELO_INVALID";
/// The HELO name has no dot (`server1`).
pub const HELO_NOT_FQDN: &str = "HELO_NOT_FQDN";
/// The HELO name ends in a suffix only meaningful inside one network
/// (`server1.local`, the seed's example).
pub const HELO_LOCAL: &str = "HELO_LOCAL";
/// The HELO names this server (its host name or one of its addresses):
/// forged.
pub const HELO_OURS: &str = "HELO_OURS";
/// An IP address without the brackets RFC 5321 4.1.3 asks for.
pub const HELO_BARE_IP: &str = "HELO_BARE_IP";
/// An address literal that is not the client's own address.
pub const HELO_LITERAL_MISMATCH: &str = "HELO_LITERAL_MISMATCH";
/// The client's address has no PTR record.
pub const RDNS_NONE: &str = "RDNS_NONE";
/// The PTR name does not resolve back to the client's address.
pub const RDNS_UNCONFIRMED: &str = "RDNS_UNCONFIRMED";
pub const RDNS_CONFIRMED: &str = "RDNS_CONFIRMED";
/// The PTR or address lookup got no answer.
pub const RDNS_TEMPERROR: &str = "RDNS_TEMPERROR";
pub const SPF_PASS: &str = "SPF_PASS";
pub const SPF_FAIL: &str = "SPF_FAIL";
pub const SPF_SOFTFAIL: &str = "SPF_SOFTFAIL";
pub const SPF_NEUTRAL: &str = "SPF_NEUTRAL";
pub const SPF_PERMERROR: &str = "SPF_PERMERROR";
pub const SPF_TEMPERROR: &str = "SPF_TEMPERROR";
pub const DKIM_PASS: &str = "DKIM_PASS";
/// A signature whose hash or key does not verify: the message was changed
/// or the signature forged.
pub const DKIM_FAIL: &str = "DKIM_FAIL";
/// A signature that cannot be checked (no key, bad syntax, expired).
pub const DKIM_PERMERROR: &str = "DKIM_PERMERROR";
pub const DKIM_TEMPERROR: &str = "DKIM_TEMPERROR";
pub const ARC_PASS: &str = "ARC_PASS";
pub const ARC_FAIL: &str = "ARC_FAIL";
pub const DMARC_PASS: &str = "DMARC_PASS";
/// DMARC fails and the domain's policy is `p=none`.
pub const DMARC_FAIL: &str = "DMARC_FAIL";
/// DMARC fails and the domain asks for quarantine: scores at the
/// quarantine threshold.
pub const DMARC_QUARANTINE: &str = "DMARC_QUARANTINE";
/// DMARC fails and the domain asks for rejection: `550 5.7.1`.
pub const DMARC_REJECT: &str = "DMARC_REJECT";
pub const DMARC_PERMERROR: &str = "DMARC_PERMERROR";
pub const DMARC_TEMPERROR: &str = "DMARC_TEMPERROR";
/// The client's IP is listed by a DNS blocklist zone (one symbol a zone).
pub const DNSBL_LISTED: &str = "DNSBL_LISTED";
/// A zone refused the query or answered an error code (127.255.255.x):
/// it says nothing about the client.
pub const DNSBL_ERROR: &str = "DNSBL_ERROR";

/// The symbols that mean the sender's domain did not vouch for the
/// message (SPF and DKIM failures, and DMARC's verdict on them). A
/// whitelisted sender whose message carries one of them is not whitelisted:
/// the whitelist names an address anyone can forge.
pub const AUTH_FAILURES: &[&str] = &[
    SPF_FAIL,
    SPF_SOFTFAIL,
    DKIM_FAIL,
    DMARC_FAIL,
    DMARC_QUARANTINE,
    DMARC_REJECT,
];

/// The DKIM signatures of one message that are verified, in order.
pub const MAX_DKIM_SIGNATURES: usize = 5;

/// Built-in scores, by symbol. `DMARC_QUARANTINE` scores the quarantine
/// threshold instead (see [`SenderCheck`]).
pub fn default_score(symbol: &str) -> f64 {
    match symbol {
        HELO_INVALID => 2.0,
        HELO_NOT_FQDN => 1.5,
        HELO_LOCAL => 2.0,
        HELO_OURS => 4.0,
        HELO_BARE_IP => 1.5,
        HELO_LITERAL_MISMATCH => 1.0,
        RDNS_NONE => 1.5,
        RDNS_UNCONFIRMED => 1.0,
        SPF_FAIL => 3.0,
        SPF_SOFTFAIL => 1.0,
        SPF_PERMERROR => 0.5,
        DKIM_FAIL => 2.0,
        DKIM_PERMERROR => 0.5,
        ARC_FAIL => 1.0,
        DMARC_FAIL => 1.5,
        DMARC_REJECT => 10.0,
        DNSBL_LISTED => 3.0,
        _ => 0.0,
    }
}

/// Top-level suffixes that name nothing on the Internet: mDNS's `.local`
/// (RFC 6762), `.localhost` (RFC 6761 6.3), `.internal` (reserved for
/// private use by ICANN in 2024), `.home.arpa` (RFC 8375, by its last
/// label `arpa` being a real TLD, checked apart) and the installers'
/// defaults `.localdomain`, `.lan`, `.home`, `.corp`.
const LOCAL_SUFFIXES: [&str; 7] = [
    "local",
    "localhost",
    "localdomain",
    "lan",
    "internal",
    "home",
    "corp",
];

/// What the HELO rules found: a symbol and its detail.
pub fn helo_findings(
    helo: &str,
    peer: IpAddr,
    hostname: &str,
    addresses: &[IpAddr],
) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let helo = helo.trim();
    if helo.is_empty() {
        found.push((HELO_INVALID, "empty HELO".to_string()));
        return found;
    }
    // RFC 5321 4.1.3: an address is given as a literal in brackets.
    if let Ok(ip) = helo.parse::<IpAddr>() {
        found.push((HELO_BARE_IP, format!("HELO {helo}: an address without brackets")));
        helo_address(ip, helo, peer, addresses, &mut found);
        return found;
    }
    let domain = match Domain::parse(helo) {
        Ok(d) => d,
        Err(e) => {
            found.push((HELO_INVALID, format!("HELO {}: {e}", truncate(helo, 100))));
            return found;
        }
    };
    if domain.is_address_literal() {
        let inner = helo.trim_start_matches('[').trim_end_matches(']');
        let inner = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
            .unwrap_or(inner);
        if let Ok(ip) = inner.parse::<IpAddr>() {
            helo_address(ip, helo, peer, addresses, &mut found);
        }
        return found;
    }
    let name = domain.canonical();
    if name.eq_ignore_ascii_case(hostname.trim_end_matches('.')) {
        found.push((HELO_OURS, format!("HELO {helo} is this server's name")));
        return found;
    }
    let tld = name.rsplit('.').next().unwrap_or(name);
    if LOCAL_SUFFIXES.contains(&tld) || name.ends_with(".home.arpa") {
        found.push((
            HELO_LOCAL,
            format!("HELO {helo}: .{tld} names nothing on the Internet"),
        ));
    } else if !name.contains('.') {
        // RFC 5321 4.1.1.1: the client's fully-qualified domain name.
        found.push((
            HELO_NOT_FQDN,
            format!("HELO {helo} is not a fully-qualified name"),
        ));
    }
    found
}

fn helo_address(
    ip: IpAddr,
    helo: &str,
    peer: IpAddr,
    addresses: &[IpAddr],
    found: &mut Vec<(&'static str, String)>,
) {
    let ip = postroom_core::net::normalize_ip(ip);
    if ip == peer {
        return;
    }
    // Loopback from a client that is not on this host, or one of the
    // listeners' addresses: the client claims to be us.
    if addresses.contains(&ip) || (ip.is_loopback() && !peer.is_loopback()) || ip.is_unspecified() {
        found.push((HELO_OURS, format!("HELO {helo} is this server's address")));
    } else {
        found.push((
            HELO_LITERAL_MISMATCH,
            format!("HELO {helo} but the client is {peer}"),
        ));
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// What one blocklist zone said about an address.
#[derive(Clone, Debug, PartialEq)]
pub enum Listing {
    NotListed,
    /// The answers in 127.0.0.0/8 that list the address.
    Listed(Vec<Ipv4Addr>),
    /// 127.255.255.x: the zone refused the query (Spamhaus' codes for an
    /// open resolver, a public resolver or an over-quota user).
    Refused(Ipv4Addr),
}

/// Reads a zone's A records. Only 127.0.0.0/8 lists (RFC 5782 2.3);
/// anything else is a resolver's or a registrar's wildcard and lists
/// nothing.
pub fn classify_dnsbl(answers: &[Ipv4Addr]) -> Listing {
    let mut listed = Vec::new();
    for a in answers {
        let o = a.octets();
        if o[0] != 127 {
            continue;
        }
        if o[1] == 255 && o[2] == 255 {
            return Listing::Refused(*a);
        }
        listed.push(*a);
    }
    if listed.is_empty() {
        Listing::NotListed
    } else {
        Listing::Listed(listed)
    }
}

/// The name looked up for `ip` under `zone` (RFC 5782 2.1 and 2.4):
/// octets reversed for IPv4, nibbles reversed for IPv6.
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    let mut name = String::with_capacity(80);
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            for b in o.iter().rev() {
                name.push_str(&b.to_string());
                name.push('.');
            }
        }
        IpAddr::V6(v6) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for b in v6.octets().iter().rev() {
                name.push(HEX[(b & 0xf) as usize] as char);
                name.push('.');
                name.push(HEX[(b >> 4) as usize] as char);
                name.push('.');
            }
        }
    }
    name.push_str(zone.trim_end_matches('.'));
    // Fully qualified: no search domain is tried.
    name.push('.');
    name
}

/// The checks `[filter.sender]` asks for.
pub fn checks(
    config: &FilterSenderConfig,
    policy: &FilterPolicyConfig,
    deps: &Deps,
) -> Result<Vec<Box<dyn Check>>, String> {
    // Offline (`postroom filter check`), a file has no SMTP transaction:
    // no client, no HELO, nothing to look up. The settings are still
    // checked.
    let check = SenderCheck::new(config, policy, deps)?;
    if !config.enabled || deps.offline {
        return Ok(Vec::new());
    }
    Ok(vec![Box::new(check)])
}

/// How long before the client's deadline the lookups stop, so the
/// findings still reach the chain (which drops a check at the deadline):
/// an eighth of the time left, at most 250 ms, a few times what building
/// the header and the symbols takes.
fn cutoff(deadline: Instant) -> tokio::time::Instant {
    let now = Instant::now();
    let left = deadline.saturating_duration_since(now);
    let margin = (left / 8).min(Duration::from_millis(250));
    tokio::time::Instant::from_std(deadline.checked_sub(margin).unwrap_or(deadline))
}

pub struct SenderCheck {
    hostname: String,
    addresses: Vec<IpAddr>,
    auth: Option<MessageAuthenticator>,
    /// Lower case, without the final dot.
    zones: Vec<String>,
    quarantine_score: f64,
    spf_fail_rejects: bool,
    trusted: postroom_core::IpNetList,
    /// `[filter.sender] check_local_clients`.
    check_local_clients: bool,
}

impl SenderCheck {
    pub fn new(
        config: &FilterSenderConfig,
        policy: &FilterPolicyConfig,
        deps: &Deps,
    ) -> Result<SenderCheck, String> {
        let mut zones = Vec::with_capacity(config.dnsbl_zones.len());
        for z in &config.dnsbl_zones {
            let zone = z.trim_end_matches('.').to_ascii_lowercase();
            if Domain::parse(&zone).is_err() || !zone.contains('.') {
                return Err(format!("filter.sender.dnsbl_zones: `{z}` is not a DNS zone"));
            }
            zones.push(zone);
        }
        Ok(SenderCheck {
            hostname: deps.hostname.trim_end_matches('.').to_ascii_lowercase(),
            addresses: deps
                .addresses
                .iter()
                .map(|a| postroom_core::net::normalize_ip(*a))
                .collect(),
            auth: deps.dns.clone().map(MessageAuthenticator),
            zones,
            quarantine_score: policy.quarantine_at,
            spf_fail_rejects: config.spf_fail_rejects,
            trusted: deps.trusted_networks.clone(),
            check_local_clients: config.check_local_clients,
        })
    }

    fn resolver(&self) -> Option<&TokioResolver> {
        self.auth.as_ref().map(|a| &a.0)
    }

    async fn dnsbl(&self, peer: IpAddr, zone: &str) -> Result<Listing, String> {
        let Some(r) = self.resolver() else {
            return Ok(Listing::NotListed);
        };
        match r.ipv4_lookup(dnsbl_name(peer, zone).as_str()).await {
            Ok(l) => {
                let answers: Vec<Ipv4Addr> = l
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect();
                Ok(classify_dnsbl(&answers))
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Listing::NotListed),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn temp(what: &str) -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver(format!(
        "{what}: no answer before the client's deadline"
    )))
}

fn error_text(e: &mail_auth::Error) -> String {
    e.to_string()
}

#[async_trait]
impl Check for SenderCheck {
    fn name(&self) -> &'static str {
        "sender"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        let env = scan.envelope;
        // A logged-in user's mail, or a trusted relay's (an application on
        // the provider's own network sending as its customers' domains,
        // which their SPF does not list): not judged by where it comes
        // from.
        if env.auth_user.is_some() || self.trusted.contains(env.peer) {
            return;
        }
        // This machine itself (see `check_local_clients`).
        if env.peer.is_loopback() && !self.check_local_clients {
            return;
        }
        let peer = env.peer;
        for (symbol, detail) in helo_findings(&env.helo, peer, &self.hostname, &self.addresses) {
            out.add(symbol, default_score(symbol), detail);
        }
        let Some(auth) = &self.auth else {
            return;
        };
        let until = cutoff(env.deadline);
        let helo = env.helo.trim();
        // RFC 7208 2.4: with the null reverse-path the identity checked is
        // postmaster@ the HELO name.
        let mail_from = env.mail_from.as_deref().unwrap_or("");
        let mail_from_domain = match mail_from.rsplit_once('@') {
            Some((_, d)) => d,
            None => helo,
        }
        .to_ascii_lowercase();
        let mut message = AuthenticatedMessage::from_parsed(scan.message, scan.raw, true);
        // Each signature costs a key lookup and a verification, one after
        // the other: a peer's message with hundreds of them would spend the
        // whole deadline on them. Legitimate mail carries one to three
        // (author, mailing list, sending service).
        message.dkim_headers.truncate(MAX_DKIM_SIGNATURES);

        let iprev = async {
            if let Some(name) = &env.peer_rdns {
                // The session looked it up and confirmed it already.
                return Some(Ok(name.clone()));
            }
            let r = tokio::time::timeout_at(until, auth.verify_iprev(peer)).await;
            Some(Err(r.unwrap_or_else(|_| IprevOutput {
                result: IprevResult::TempError(temp("PTR")),
                ptr: None,
            })))
        };
        let spf = async {
            let params = if mail_from.is_empty() {
                SpfParameters::verify_ehlo(peer, helo, &self.hostname)
            } else {
                SpfParameters::verify_mail_from(peer, helo, &self.hostname, mail_from)
            };
            tokio::time::timeout_at(until, auth.verify_spf(params))
                .await
                .unwrap_or_else(|_| {
                    SpfOutput::new(mail_from_domain.clone()).with_result(SpfResult::TempError)
                })
        };
        let dkim = async {
            tokio::time::timeout_at(until, auth.verify_dkim(&message))
                .await
                .unwrap_or_else(|_| vec![DkimOutput::temp_err(temp("DKIM key"))])
        };
        let arc = async {
            tokio::time::timeout_at(until, auth.verify_arc(&message))
                .await
                .unwrap_or_else(|_| ArcOutput::default().with_result(DkimResult::TempError(temp("ARC key"))))
        };
        let lists = join_all(self.zones.iter().map(|zone| async move {
            let r = tokio::time::timeout_at(until, self.dnsbl(peer, zone))
                .await
                .unwrap_or_else(|_| Err("no answer before the client's deadline".to_string()));
            (zone, r)
        }));
        let (iprev, spf, dkim, arc, lists) = futures_util::join!(iprev, spf, dkim, arc, lists);
        // DMARC needs the SPF and DKIM results; its own lookup comes last.
        let dmarc = tokio::time::timeout_at(
            until,
            auth.verify_dmarc(DmarcParameters::new(&message, &dkim, &mail_from_domain, &spf)),
        )
        .await
        .unwrap_or_else(|_| {
            DmarcOutput::default()
                .with_spf_result(DmarcResult::TempError(temp("DMARC record")))
                .with_dkim_result(DmarcResult::TempError(temp("DMARC record")))
        });

        // rDNS.
        if let Some(iprev) = &iprev {
            match iprev {
                Ok(name) => out.add(RDNS_CONFIRMED, 0.0, format!("{peer} is {name}")),
                Err(o) => report_iprev(o, peer, out),
            }
        }
        // SPF.
        let spf_symbol = match spf.result() {
            SpfResult::Pass => Some(SPF_PASS),
            SpfResult::Fail => Some(SPF_FAIL),
            SpfResult::SoftFail => Some(SPF_SOFTFAIL),
            SpfResult::Neutral => Some(SPF_NEUTRAL),
            SpfResult::PermError => Some(SPF_PERMERROR),
            SpfResult::TempError => Some(SPF_TEMPERROR),
            SpfResult::None => None,
        };
        let spf_detail = format!("{}: {} for {peer}", spf.domain(), spf.result());
        if let Some(symbol) = spf_symbol {
            out.add(symbol, default_score(symbol), spf_detail.clone());
        }
        // DKIM: one passing signature is enough (RFC 6376 6.1: a failed
        // signature is as if it were absent); otherwise the worst one.
        let passing: Vec<&str> = dkim
            .iter()
            .filter(|d| matches!(d.result(), DkimResult::Pass))
            .filter_map(|d| d.signature().map(|s| s.d.as_str()))
            .collect();
        if !passing.is_empty() {
            out.add(DKIM_PASS, 0.0, format!("d={}", passing.join(",")));
        } else if let Some((symbol, detail)) = worst_dkim(&dkim) {
            out.add(symbol, default_score(symbol), detail);
        }
        // ARC.
        match arc.result() {
            DkimResult::Pass => out.add(ARC_PASS, 0.0, format!("{} sets", arc.sets().len())),
            DkimResult::None => {}
            DkimResult::TempError(_) => {}
            DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e) => {
                out.add(ARC_FAIL, default_score(ARC_FAIL), error_text(e))
            }
        }
        // DMARC with the domain's policy.
        self.report_dmarc(&dmarc, out);
        // SPF fail refused (RFC 7208 8.4: 550 5.7.1), unless a valid
        // signature of the MAIL FROM domain vouches for the message (mail
        // forwarded without SRS keeps its signature).
        if self.spf_fail_rejects && spf.result() == SpfResult::Fail {
            let vouched = passing.iter().any(|d| {
                let d = d.to_ascii_lowercase();
                mail_from_domain == d || mail_from_domain.ends_with(&format!(".{d}"))
            });
            if !vouched {
                out.force(Forced::Reject {
                    symbol: SPF_FAIL.into(),
                    reason: format!("SPF: {} does not allow {peer} to send its mail", spf.domain()),
                });
            }
        }
        // Blocklists.
        for (zone, r) in lists {
            match r {
                Ok(Listing::NotListed) => {}
                Ok(Listing::Listed(codes)) => {
                    let codes: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
                    out.add(
                        DNSBL_LISTED,
                        default_score(DNSBL_LISTED),
                        format!("{peer} listed by {zone}: {}", codes.join(",")),
                    );
                }
                Ok(Listing::Refused(code)) => {
                    out.add(DNSBL_ERROR, 0.0, format!("{zone} refused the query: {code}"))
                }
                Err(e) => out.add(DNSBL_ERROR, 0.0, format!("{zone}: {e}")),
            }
        }

        let mut ar = AuthenticationResults::new(&self.hostname);
        if let Some(Err(o)) = &iprev {
            ar = ar.with_iprev_result(o, peer);
        }
        ar = if mail_from.is_empty() {
            ar.with_spf_ehlo_result(&spf, peer, helo)
        } else {
            ar.with_spf_mailfrom_result(&spf, peer, mail_from, helo)
        };
        let header_from = message.from().to_string();
        ar = ar.with_dkim_results(&dkim, &header_from);
        if !matches!(arc.result(), DkimResult::None) {
            ar = ar.with_arc_result(&arc, peer);
        }
        if !dmarc.domain().is_empty() {
            ar = ar.with_dmarc_result(&dmarc);
        }
        out.add_header("Authentication-Results", ar.to_string());
    }
}

fn report_iprev(o: &IprevOutput, peer: IpAddr, out: &mut Findings) {
    let names = || {
        o.ptr
            .as_ref()
            .map(|p| {
                p.iter()
                    .map(|n| n.trim_end_matches('.'))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    match &o.result {
        IprevResult::Pass => out.add(RDNS_CONFIRMED, 0.0, format!("{peer} is {}", names())),
        IprevResult::Fail(_) => out.add(
            RDNS_UNCONFIRMED,
            default_score(RDNS_UNCONFIRMED),
            format!("{peer} has PTR {} which does not resolve back to it", names()),
        ),
        IprevResult::PermError(_) | IprevResult::None => out.add(
            RDNS_NONE,
            default_score(RDNS_NONE),
            format!("{peer} has no PTR record"),
        ),
        IprevResult::TempError(e) => out.add(RDNS_TEMPERROR, 0.0, format!("{peer}: {e}")),
    }
}

fn worst_dkim(dkim: &[DkimOutput]) -> Option<(&'static str, String)> {
    let mut worst: Option<(u8, &'static str, String)> = None;
    for d in dkim {
        let domain = d.signature().map(|s| s.d.as_str()).unwrap_or("?");
        let (rank, symbol, e) = match d.result() {
            DkimResult::Fail(e) => (3, DKIM_FAIL, e),
            // mail-auth calls a body changed after signing "neutral": it
            // is the failure a DKIM signature exists to show.
            DkimResult::Neutral(
                e @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch),
            ) => (3, DKIM_FAIL, e),
            DkimResult::PermError(e) | DkimResult::Neutral(e) => (2, DKIM_PERMERROR, e),
            DkimResult::TempError(e) => (1, DKIM_TEMPERROR, e),
            DkimResult::Pass | DkimResult::None => continue,
        };
        if worst.as_ref().is_none_or(|w| w.0 < rank) {
            worst = Some((rank, symbol, format!("d={domain}: {e}")));
        }
    }
    worst.map(|(_, s, d)| (s, d))
}

impl SenderCheck {
    fn report_dmarc(&self, dmarc: &DmarcOutput, out: &mut Findings) {
        let domain = dmarc.domain();
        let mut policy = dmarc.policy();
        // DMARCbis t=y (testing): one step milder, reject as quarantine,
        // quarantine as none.
        if dmarc.dmarc_record().is_some_and(|r| r.t) {
            policy = match policy {
                Policy::Reject => Policy::Quarantine,
                _ => Policy::None,
            };
        }
        match dmarc.result() {
            DmarcResult::None => {}
            DmarcResult::Pass => out.add(DMARC_PASS, 0.0, format!("header.from={domain}")),
            DmarcResult::TempError(e) => out.add(DMARC_TEMPERROR, 0.0, format!("{domain}: {e}")),
            DmarcResult::PermError(e) => {
                out.add(DMARC_PERMERROR, 0.0, format!("{domain}: {e}"));
            }
            DmarcResult::Fail(_) => match policy {
                Policy::Reject => {
                    let detail = format!("header.from={domain} fails SPF and DKIM alignment, policy reject");
                    out.add(DMARC_REJECT, default_score(DMARC_REJECT), detail);
                    out.force(Forced::Reject {
                        symbol: DMARC_REJECT.into(),
                        reason: format!("DMARC: {domain} asks to refuse mail it did not authenticate"),
                    });
                }
                Policy::Quarantine => out.add(
                    DMARC_QUARANTINE,
                    self.quarantine_score,
                    format!("header.from={domain} fails SPF and DKIM alignment, policy quarantine"),
                ),
                Policy::None | Policy::Unspecified => out.add(
                    DMARC_FAIL,
                    default_score(DMARC_FAIL),
                    format!("header.from={domain} fails SPF and DKIM alignment, policy none"),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "192.0.2.10";

    /// The symbols the sender check finds for a client naming itself
    /// `server1.local`, with no DNS.
    async fn local_findings(peer: &str, check_local_clients: bool) -> Vec<String> {
        let config = FilterSenderConfig {
            check_local_clients,
            ..Default::default()
        };
        let deps = Deps {
            hostname: "mx.example.net".into(),
            ..Default::default()
        };
        let check = SenderCheck::new(&config, &FilterPolicyConfig::default(), &deps).unwrap();
        let raw = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n";
        let message = mail_parser::MessageParser::default().parse(&raw[..]).unwrap();
        let env = crate::check::Envelope::unauthenticated(
            peer.parse().unwrap(),
            "server1.local",
            Some("a@example.com"),
            Instant::now() + Duration::from_secs(5),
        );
        let scan = Scan {
            envelope: &env,
            raw,
            message: &message,
        };
        let mut out = Findings::default();
        check.check(&scan, &mut out).await;
        out.symbols.iter().map(|s| s.name.to_string()).collect()
    }

    #[tokio::test]
    async fn this_machines_own_mail_is_not_judged_by_where_it_comes_from() {
        assert!(local_findings("127.0.0.1", false).await.is_empty());
        assert!(local_findings("::1", false).await.is_empty());
        assert!(local_findings("127.0.0.1", true)
            .await
            .contains(&HELO_LOCAL.to_string()));
        assert!(local_findings(PEER, false)
            .await
            .contains(&HELO_LOCAL.to_string()));
    }

    fn helo(h: &str) -> Vec<&'static str> {
        helo_findings(
            h,
            PEER.parse().unwrap(),
            "mx.example.net",
            &["198.51.100.1".parse().unwrap()],
        )
        .into_iter()
        .map(|(s, _)| s)
        .collect()
    }

    #[test]
    fn helo_rules() {
        assert!(helo("mail.example.com").is_empty());
        assert!(helo("mail.example.com.").is_empty());
        assert_eq!(helo("server1.local"), [HELO_LOCAL]);
        assert_eq!(helo("SERVER1.LOCAL"), [HELO_LOCAL]);
        assert_eq!(helo("box.localdomain"), [HELO_LOCAL]);
        assert_eq!(helo("router.home.arpa"), [HELO_LOCAL]);
        assert_eq!(helo("server1"), [HELO_NOT_FQDN]);
        assert_eq!(helo("localhost"), [HELO_LOCAL]);
        assert_eq!(helo("mx.example.net"), [HELO_OURS]);
        assert_eq!(helo("MX.Example.NET."), [HELO_OURS]);
        assert_eq!(helo("[198.51.100.1]"), [HELO_OURS]);
        assert_eq!(helo("[127.0.0.1]"), [HELO_OURS]);
        assert!(helo("[192.0.2.10]").is_empty());
        assert_eq!(helo("[192.0.2.99]"), [HELO_LITERAL_MISMATCH]);
        assert_eq!(helo("[IPv6:2001:db8::1]"), [HELO_LITERAL_MISMATCH]);
        assert_eq!(helo("192.0.2.10"), [HELO_BARE_IP]);
        assert_eq!(helo("198.51.100.1"), [HELO_BARE_IP, HELO_OURS]);
        assert_eq!(helo("bad_name!"), [HELO_INVALID]);
        assert_eq!(helo(""), [HELO_INVALID]);
        // A loopback client may name loopback.
        let local = helo_findings("[127.0.0.1]", "127.0.0.1".parse().unwrap(), "mx.example.net", &[]);
        assert!(local.is_empty());
    }

    #[test]
    fn dnsbl_answer_codes() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(classify_dnsbl(&[]), Listing::NotListed);
        assert_eq!(
            classify_dnsbl(&[ip("127.0.0.2")]),
            Listing::Listed(vec![ip("127.0.0.2")])
        );
        assert_eq!(
            classify_dnsbl(&[ip("127.0.0.4"), ip("127.0.0.10")]),
            Listing::Listed(vec![ip("127.0.0.4"), ip("127.0.0.10")])
        );
        // Spamhaus' "query refused" codes list nothing.
        assert_eq!(
            classify_dnsbl(&[ip("127.255.255.254")]),
            Listing::Refused(ip("127.255.255.254"))
        );
        assert_eq!(
            classify_dnsbl(&[ip("127.0.0.2"), ip("127.255.255.252")]),
            Listing::Refused(ip("127.255.255.252"))
        );
        // A wildcard outside 127/8 (a resolver's "search page").
        assert_eq!(classify_dnsbl(&[ip("198.51.100.7")]), Listing::NotListed);
    }

    #[test]
    fn dnsbl_names() {
        assert_eq!(
            dnsbl_name("192.0.2.10".parse().unwrap(), "bl.example."),
            "10.2.0.192.bl.example."
        );
        assert_eq!(
            dnsbl_name("2001:db8::1".parse().unwrap(), "bl.example"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example."
        );
    }

    #[test]
    fn authentication_results_format() {
        let peer: IpAddr = PEER.parse().unwrap();
        let spf = SpfOutput::new("example.com".into()).with_result(SpfResult::Fail);
        let dmarc = DmarcOutput::new("example.com".into())
            .with_spf_result(DmarcResult::Fail(mail_auth::Error::NotAligned))
            .with_dkim_result(DmarcResult::None);
        let ar = AuthenticationResults::new("mx.example.net")
            .with_spf_mailfrom_result(&spf, peer, "a@example.com", "mail.example.com")
            .with_dkim_results(&[], "a@example.com")
            .with_dmarc_result(&dmarc)
            .to_string();
        // RFC 8601 2.2: authserv-id, then method=result with properties.
        assert!(ar.starts_with("mx.example.net;\r\n\tspf=fail"), "{ar}");
        assert!(ar.contains("smtp.mailfrom=a@example.com"), "{ar}");
        assert!(
            ar.contains("dmarc=fail (policy not aligned) header.from=example.com"),
            "{ar}"
        );
        assert!(!ar.contains("\n\n"));
    }

    #[test]
    fn auth_failures_are_emitted_names() {
        for s in AUTH_FAILURES {
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
        assert!(AUTH_FAILURES.contains(&SPF_FAIL) && AUTH_FAILURES.contains(&DKIM_FAIL));
    }

    #[test]
    fn cutoff_is_before_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let c = cutoff(deadline).into_std();
        assert!(c < deadline && deadline - c <= Duration::from_millis(250));
        let past = Instant::now();
        assert!(cutoff(past).into_std() <= past);
    }

    proptest::proptest! {
        #[test]
        fn helo_never_panics(h in "\\PC{0,300}") {
            let _ = helo_findings(&h, "192.0.2.1".parse().unwrap(), "mx.example.net", &[]);
        }
    }
}

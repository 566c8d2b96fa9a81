//! Links: every URL from text and HTML, decoded redirectors, registrable
//! domains, blocklist files that reload while the server runs, and the
//! phishing net.
//!
//! Two checks, because a whitelist skips one and not the other: `phishing`
//! (a link to a phishing-listed site rejects, whitelisted sender or not)
//! and `links` (the spam list and MailScanner's phishing net, which score).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use mail_parser::{MimeHeaders, PartType};
use postroom_config::FilterLinksConfig;

use crate::build::Deps;
use crate::check::{Check, Findings, Forced, Scan};
use crate::html;

/// A link to a phishing-listed site (forces a rejection as well).
pub const PHISHING_BLOCKLIST: &str = "LINK_PHISHING_BLOCKLIST";
/// A link to a spam-listed site: alone it is enough for the Junk folder
/// (the junk threshold is 6), as a URIBL hit is in SpamAssassin's rules.
pub const SPAM_BLOCKLIST: &str = "LINK_SPAM_BLOCKLIST";
/// MailScanner's phishing net: the text shows one site, the link goes to
/// another. Legitimate newsletters do this through their trackers (put
/// those in `safe_sites`), so it scores rather than rejects: 4 leaves a
/// mismatch alone under the junk threshold, and with any other sign of
/// spam over it.
pub const PHISH_MISMATCH: &str = "PHISH_MISMATCH";
/// A link to a numeric IP address: no legitimate sender needs one.
pub const NUMERIC_IP: &str = "LINK_NUMERIC_IP";
/// More links than `max_links`: the rest were not looked at.
pub const TOO_MANY: &str = "LINK_TOO_MANY";

const SCORE_PHISHING_BLOCKLIST: f64 = 10.0;
const SCORE_SPAM_BLOCKLIST: f64 = 6.0;
const SCORE_PHISH_MISMATCH: f64 = 4.0;
const SCORE_NUMERIC_IP: f64 = 2.0;
const SCORE_TOO_MANY: f64 = 1.0;

/// A URL inside another's parameters is followed this deep
/// (`google.com/url?q=` of a safelinks URL of the target is 2).
const MAX_REDIRECT_DEPTH: usize = 3;
/// The longest URL kept: browsers accept 2 MB, but 8 KiB holds every
/// real link with its tracking parameters and bounds the work per link.
const MAX_URL_LEN: usize = 8 * 1024;
/// Parts looked at per message: a real message has a handful; a
/// thousand-part message is not read past its first 100.
const MAX_PARTS: usize = 100;

/// The checks `[filter.links]` asks for.
pub fn checks(
    config: &FilterLinksConfig,
    lists: &Lists,
    _deps: &Deps,
) -> Result<Vec<Box<dyn Check>>, String> {
    let mut checks: Vec<Box<dyn Check>> = Vec::new();
    if !lists.phishing.is_empty() {
        checks.push(Box::new(PhishingCheck {
            lists: lists.clone(),
            max_links: config.max_links,
        }));
    }
    checks.push(Box::new(LinksCheck {
        lists: lists.clone(),
        max_links: config.max_links,
        phishing_net: config.phishing_net,
    }));
    Ok(checks)
}

/// The blocklist and safe-site files, shared by the checks and the
/// rewriter (which disarms what the phishing net finds).
#[derive(Clone, Default)]
pub struct Lists {
    pub phishing: Vec<Arc<HostList>>,
    pub spam: Vec<Arc<HostList>>,
    pub safe: Vec<Arc<HostList>>,
}

impl Lists {
    /// Reads every file `[filter.links]` names; an unreadable one is a
    /// configuration error at startup (later, a bad reread keeps the last
    /// good list).
    pub fn load(config: &FilterLinksConfig) -> Result<Lists, String> {
        let load = |paths: &[PathBuf]| -> Result<Vec<Arc<HostList>>, String> {
            paths
                .iter()
                .map(|p| {
                    HostList::open(p)
                        .map(Arc::new)
                        .map_err(|e| format!("filter.links: {}: {e}", p.display()))
                })
                .collect()
        };
        Ok(Lists {
            phishing: load(&config.phishing_blocklists)?,
            spam: load(&config.spam_blocklists)?,
            safe: load(&config.safe_sites)?,
        })
    }

    pub fn is_safe(&self, host: &str) -> bool {
        self.safe.iter().any(|l| l.matches(host).is_some())
    }
}

/// One file of hosts or domains, reread when it changes on disk.
pub struct HostList {
    path: PathBuf,
    state: RwLock<Loaded>,
}

struct Loaded {
    stamp: Stamp,
    hosts: Arc<HashSet<String>>,
}

/// What says the file changed: a rewrite in place changes the size or
/// the mtime (nanoseconds on ext4/xfs), a write-and-rename the inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> io::Result<Stamp> {
    let meta = fs::metadata(path)?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        ino,
    })
}

/// The largest list file read: MailScanner's phishing.bad.sites has about
/// 30,000 lines (1 MB); 64 MiB is far past any real list.
const MAX_LIST_BYTES: u64 = 64 << 20;

impl HostList {
    pub fn open(path: &Path) -> io::Result<HostList> {
        let (stamp, hosts) = read_list(path)?;
        Ok(HostList {
            path: path.to_owned(),
            state: RwLock::new(Loaded {
                stamp,
                hosts: Arc::new(hosts),
            }),
        })
    }

    /// The list as it is on disk now. A `stat` per message (about a
    /// microsecond) is cheaper than a watcher thread and has no delay; a
    /// file that cannot be reread keeps the last good list.
    pub fn current(&self) -> Arc<HashSet<String>> {
        let now = stamp(&self.path).ok();
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if now.is_none() || now == Some(state.stamp) {
                return state.hosts.clone();
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if now != Some(state.stamp) {
            match read_list(&self.path) {
                Ok((stamp, hosts)) => {
                    tracing::info!(path = %self.path.display(), hosts = hosts.len(), "filter: list reloaded");
                    state.stamp = stamp;
                    state.hosts = Arc::new(hosts);
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "filter: list not reloaded, keeping the last one");
                    if let Some(now) = now {
                        state.stamp = now;
                    }
                }
            }
        }
        state.hosts.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listed name covering `host` (itself or a parent domain).
    pub fn matches(&self, host: &str) -> Option<String> {
        let hosts = self.current();
        listed(&hosts, host).map(str::to_owned)
    }
}

/// `host` or its nearest listed parent domain: listing `evil.example`
/// covers `login.evil.example`.
pub fn listed<'a>(hosts: &HashSet<String>, host: &'a str) -> Option<&'a str> {
    let mut rest = host;
    loop {
        if hosts.contains(rest) {
            return Some(rest);
        }
        match rest.find('.') {
            Some(i) => rest = &rest[i + 1..],
            None => return None,
        }
    }
}

fn read_list(path: &Path) -> io::Result<(Stamp, HashSet<String>)> {
    let before = stamp(path)?;
    if before.len > MAX_LIST_BYTES {
        return Err(io::Error::other(format!("larger than {MAX_LIST_BYTES} bytes")));
    }
    let bytes = fs::read(path)?;
    Ok((before, parse_list(&String::from_utf8_lossy(&bytes))))
}

/// MailScanner's `phishing.bad.sites` format: one host or domain a line,
/// `#` starts a comment; a leading `*.` or `.` and anything after the host
/// (a path) are ignored.
pub fn parse_list(text: &str) -> HashSet<String> {
    let mut hosts = HashSet::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let line = line.trim_start_matches("*.").trim_start_matches('.');
        if line.is_empty() {
            continue;
        }
        if let Some(host) = host_of(line) {
            hosts.insert(host);
        }
    }
    hosts
}

/// Every link in the message: URLs in text parts, `href`/`src` in HTML
/// parts, and the URLs inside redirectors' parameters; and each HTML
/// anchor with its visible text, for the phishing net.
#[derive(Debug, Default)]
pub struct Collected {
    pub urls: Vec<String>,
    pub anchors: Vec<html::Anchor>,
    /// There were more than `max` links.
    pub truncated: bool,
}

pub fn collect(message: &mail_parser::Message<'_>, max: usize) -> Collected {
    let mut out = Collected::default();
    for part in message.parts.iter().take(MAX_PARTS) {
        if part.content_disposition().is_some_and(|d| d.is_attachment()) {
            continue;
        }
        match &part.body {
            PartType::Text(text) => text_urls(text, &mut out.urls, max + 1),
            PartType::Html(text) => {
                let analysis = html::analyze(text, max + 1);
                out.urls.extend(analysis.urls);
                out.anchors.extend(analysis.anchors);
            }
            _ => {}
        }
        if out.urls.len() > max {
            break;
        }
    }
    let mut i = 0;
    let direct = out.urls.len();
    while i < out.urls.len() && out.urls.len() <= max {
        // Only the message's own links and their first targets are
        // followed (depth counted by position in the list).
        let depth = if i < direct { 1 } else { 2 };
        if depth <= MAX_REDIRECT_DEPTH {
            let found = redirect_targets(&out.urls[i]);
            out.urls.extend(found);
        }
        i += 1;
    }
    if out.urls.len() > max {
        out.urls.truncate(max);
        out.truncated = true;
    }
    out
}

/// Messages [`collected`] remembers per thread, and the largest.
const MEMO_MESSAGES: usize = 2;
/// Larger messages are mostly attachments, cheap to collect twice; this
/// bounds what a worker thread keeps to 2 MiB.
const MEMO_MAX_BYTES: usize = 1 << 20;

type Memo = Vec<(Vec<u8>, usize, Arc<Collected>)>;

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`collect`], remembered: the `phishing` and `links` checks read the
/// same links. The key is the raw message, compared byte for byte (the
/// parse is a function of it), so a remembered result is always this
/// message's; the checks of one message run one after the other on one
/// thread.
pub fn collected(raw: &[u8], message: &mail_parser::Message<'_>, max: usize) -> Arc<Collected> {
    if raw.len() > MEMO_MAX_BYTES {
        return Arc::new(collect(message, max));
    }
    MEMO.with(|memo| {
        if let Some((_, _, c)) = memo
            .borrow()
            .iter()
            .find(|(r, m, _)| *m == max && r.as_slice() == raw)
        {
            return c.clone();
        }
        let c = Arc::new(collect(message, max));
        let mut memo = memo.borrow_mut();
        if memo.len() >= MEMO_MESSAGES {
            memo.remove(0);
        }
        memo.push((raw.to_vec(), max, c.clone()));
        c
    })
}

/// URLs in plain text: `http://`, `https://` and `www.` up to the first
/// space, quote or angle bracket, without trailing punctuation.
pub fn text_urls(text: &str, out: &mut Vec<String>, max: usize) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < max {
        let c = b[i];
        if !matches!(c, b'h' | b'H' | b'w' | b'W') {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        let starts = starts_with_ci(rest, b"http://")
            || starts_with_ci(rest, b"https://")
            || (starts_with_ci(rest, b"www.") && (i == 0 || !b[i - 1].is_ascii_alphanumeric()));
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < b.len() && end - i < MAX_URL_LEN && !ends_url(b[end]) {
            end += 1;
        }
        let mut url = &text[i..end];
        url = url.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '\'']);
        if host_of(url).is_some() {
            out.push(url.to_owned());
        }
        i = end.max(i + 1);
    }
}

fn ends_url(c: u8) -> bool {
    c.is_ascii_whitespace()
        || c.is_ascii_control()
        || matches!(c, b'<' | b'>' | b'"' | b'`' | b'{' | b'}' | b'|' | b'\\' | b'^')
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The host of an absolute `http(s)://` URL, a protocol-relative `//host`
/// or a bare `www.` link: lower case, without port, user or trailing dot,
/// international names in their ASCII (punycode) form. `None` for other
/// schemes and relative links.
pub fn host_of(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = if starts_with_ci(url.as_bytes(), b"http://") {
        &url[7..]
    } else if starts_with_ci(url.as_bytes(), b"https://") {
        &url[8..]
    } else if let Some(r) = url.strip_prefix("//") {
        r
    } else if url.contains("://") {
        return None;
    } else {
        // A bare "www.example.com/x" or "example.com:8080"; "mailto:a@b"
        // and "cid:logo" have a scheme, not a host, before their colon.
        let head = url.split(['/', '?', '#']).next().unwrap_or("");
        if head.split(':').next().is_none_or(|h| !h.contains('.')) || head.contains('@') {
            return None;
        }
        url
    };
    // Browsers read a backslash as a slash in http URLs.
    let rest = rest.trim_start_matches(['/', '\\']);
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let inner = v6.split(']').next().unwrap_or("");
        return (!inner.is_empty() && inner.len() <= 64).then(|| format!("[{}]", inner.to_ascii_lowercase()));
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let host: std::borrow::Cow<'_, str> = if host.contains('%') {
        percent_decode(host).into()
    } else {
        host.into()
    };
    if host.is_ascii() {
        let valid = host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'));
        valid.then(|| host.to_ascii_lowercase())
    } else {
        idna::domain_to_ascii(&host).ok().filter(|h| !h.is_empty())
    }
}

/// The registrable domain by the public suffix list (`login.bank.co.uk`
/// → `bank.co.uk`); the host itself when the list does not know it.
pub fn registrable(host: &str) -> &str {
    psl::domain_str(host).unwrap_or(host)
}

/// A numeric host: dotted IPv4, an IPv6 literal, or the integer and hex
/// forms browsers also accept (`http://3232235777/`, `0x7f.1`): a real
/// top-level domain is never numeric.
pub fn is_numeric_host(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    let last = host.rsplit('.').next().unwrap_or("");
    !last.is_empty()
        && (last.bytes().all(|c| c.is_ascii_digit())
            || (last.len() > 2
                && last[..2].eq_ignore_ascii_case("0x")
                && last[2..].bytes().all(|c| c.is_ascii_hexdigit())))
}

/// URLs carried in a URL's query or fragment parameters
/// (`https://www.google.com/url?q=https%3A%2F%2Fevil.example%2F`), percent
/// decoded: what a redirector sends the reader to.
pub fn redirect_targets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Some(q) = url.find(['?', '#']) else {
        return found;
    };
    for pair in url[q + 1..].split(['&', ';', '?', '#']) {
        let value = pair.split_once('=').map(|(_, v)| v).unwrap_or(pair);
        // Only what can decode to "http://": "http" or "%68..." first.
        let b = value.as_bytes();
        if value.len() < 8 || !(starts_with_ci(b, b"http") || b[0] == b'%') {
            continue;
        }
        let decoded = percent_decode(&value.replace('+', " "));
        let decoded = decoded.trim();
        if (starts_with_ci(decoded.as_bytes(), b"http://") || starts_with_ci(decoded.as_bytes(), b"https://"))
            && host_of(decoded).is_some()
        {
            found.push(decoded.chars().take(MAX_URL_LEN).collect());
        }
    }
    found
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the phishing net finds in one anchor.
#[derive(Clone, Debug, PartialEq)]
pub enum Net {
    /// The text names `shown`, the link goes to `real`.
    Mismatch { shown: String, real: String },
    /// The link goes to a numeric address.
    NumericIp { real: String },
}

/// MailScanner's phishing net for one anchor: `None` when the link is
/// honest, goes to a safe site, or is not a web link.
pub fn phishing_net(lists: &Lists, href: &str, text: &str) -> Option<Net> {
    let real = host_of(href)?;
    // Only absolute web links: a bare word in href ("page.html") is
    // relative, not a host.
    let b = href.trim().as_bytes();
    if !(starts_with_ci(b, b"http://") || starts_with_ci(b, b"https://") || b.starts_with(b"//")) {
        return None;
    }
    if lists.is_safe(&real) {
        return None;
    }
    if is_numeric_host(&real) {
        return Some(Net::NumericIp { real });
    }
    let shown = shown_host(text)?;
    if is_numeric_host(&shown) || registrable(&shown) == registrable(&real) {
        return None;
    }
    Some(Net::Mismatch { shown, real })
}

/// The host an anchor's visible text names: a URL in it, or the whole text
/// being a domain name with a known public suffix ("www.mybank.com",
/// "mybank.com"). "Click here" names none.
pub fn shown_host(text: &str) -> Option<String> {
    let text = text.trim();
    let mut urls = Vec::new();
    text_urls(text, &mut urls, 1);
    if let Some(url) = urls.first() {
        return host_of(url);
    }
    let word = text.trim_end_matches(['/', '.']);
    if word.is_empty() || word.len() > 253 || !word.contains('.') || word.contains('@') {
        return None;
    }
    if !word
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
    {
        return None;
    }
    let host = word.to_ascii_lowercase();
    let known = psl::suffix(host.as_bytes()).is_some_and(|s| s.is_known());
    (known && psl::domain_str(&host).is_some()).then_some(host)
}

/// A phishing-listed link rejects the message, whitelisted sender or not.
struct PhishingCheck {
    lists: Lists,
    max_links: usize,
}

#[async_trait]
impl Check for PhishingCheck {
    fn name(&self) -> &'static str {
        "phishing"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        let links = collected(scan.raw, scan.message, self.max_links);
        let lists: Vec<_> = self.lists.phishing.iter().map(|l| (l, l.current())).collect();
        let mut seen = HashSet::new();
        for url in &links.urls {
            let Some(host) = host_of(url) else { continue };
            if !seen.insert(host.clone()) {
                continue;
            }
            for (list, hosts) in &lists {
                if let Some(name) = listed(hosts, &host) {
                    let detail = format!("{host} (listed as {name} in {})", list.path().display());
                    out.add(PHISHING_BLOCKLIST, SCORE_PHISHING_BLOCKLIST, detail.clone());
                    out.force(Forced::Reject {
                        symbol: PHISHING_BLOCKLIST.into(),
                        reason: format!("a link to a known phishing site: {host}"),
                    });
                    return;
                }
            }
        }
    }

    fn whitelist_skips(&self) -> bool {
        false
    }
}

/// The spam lists and the phishing net: they score.
struct LinksCheck {
    lists: Lists,
    max_links: usize,
    phishing_net: bool,
}

#[async_trait]
impl Check for LinksCheck {
    fn name(&self) -> &'static str {
        "links"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        let links = collected(scan.raw, scan.message, self.max_links);
        if links.truncated {
            out.add(
                TOO_MANY,
                SCORE_TOO_MANY,
                format!("more than {} links; the rest not examined", self.max_links),
            );
        }
        if !self.lists.spam.is_empty() {
            let lists: Vec<_> = self.lists.spam.iter().map(|l| l.current()).collect();
            let mut hits: Vec<String> = Vec::new();
            for url in &links.urls {
                let Some(host) = host_of(url) else { continue };
                if hits.contains(&host) || self.lists.is_safe(&host) {
                    continue;
                }
                if lists.iter().any(|hosts| listed(hosts, &host).is_some()) {
                    hits.push(host);
                }
            }
            if !hits.is_empty() {
                out.add(SPAM_BLOCKLIST, SCORE_SPAM_BLOCKLIST, hits.join(", "));
            }
        }
        if self.phishing_net {
            let mut mismatch = None;
            let mut numeric = None;
            for a in &links.anchors {
                match phishing_net(&self.lists, &a.href, &a.text) {
                    Some(Net::Mismatch { shown, real }) if mismatch.is_none() => {
                        mismatch = Some(format!("text shows {shown}, link goes to {real}"))
                    }
                    Some(Net::NumericIp { real }) if numeric.is_none() => {
                        numeric = Some(format!("href to {real}"))
                    }
                    _ => {}
                }
            }
            if numeric.is_none() {
                // Numeric links in plain text are as suspicious as in HTML.
                numeric = links
                    .urls
                    .iter()
                    .filter_map(|u| host_of(u))
                    .find(|h| is_numeric_host(h))
                    .map(|h| format!("link to {h}"));
            }
            if let Some(detail) = mismatch {
                out.add(PHISH_MISMATCH, SCORE_PHISH_MISMATCH, detail);
            }
            if let Some(detail) = numeric {
                out.add(NUMERIC_IP, SCORE_NUMERIC_IP, detail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_as_browsers_read_them() {
        assert_eq!(
            host_of("https://Login.Bank.Example./x").as_deref(),
            Some("login.bank.example")
        );
        assert_eq!(
            host_of("http://user:pw@evil.example:8080/").as_deref(),
            Some("evil.example")
        );
        assert_eq!(
            host_of("http://bank.example@evil.example/").as_deref(),
            Some("evil.example")
        );
        assert_eq!(
            host_of("www.example.com/path").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host_of("http://[2001:db8::1]/").as_deref(), Some("[2001:db8::1]"));
        assert_eq!(
            host_of("https://bücher.example/").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(host_of("mailto:a@example.com"), None);
        assert_eq!(host_of("javascript:alert(1)"), None);
        assert_eq!(host_of("http://"), None);
    }

    #[test]
    fn text_urls_end_at_spaces_and_trailing_punctuation() {
        let mut v = Vec::new();
        text_urls(
            "See https://a.example/x?y=1, and (www.b.example). Also HTTP://C.example",
            &mut v,
            10,
        );
        assert_eq!(
            v,
            ["https://a.example/x?y=1", "www.b.example", "HTTP://C.example"]
        );
    }

    #[test]
    fn redirectors_are_followed() {
        let t = redirect_targets("https://www.google.com/url?sa=t&q=https%3A%2F%2Fevil.example%2Flogin&x=1");
        assert_eq!(t, ["https://evil.example/login"]);
        assert!(redirect_targets("https://a.example/?id=12345678").is_empty());
    }

    #[test]
    fn numeric_hosts() {
        for h in ["203.0.113.7", "3232235777", "0x7f.1", "[::1]"] {
            assert!(is_numeric_host(h), "{h}");
        }
        for h in ["example.com", "1.example.com", "a1"] {
            assert!(!is_numeric_host(h), "{h}");
        }
    }

    #[test]
    fn the_phishing_net() {
        let lists = Lists::default();
        let net = |href, text| phishing_net(&lists, href, text);
        assert_eq!(
            net(
                "http://mybank.example.evil.ru/login",
                "https://www.mybank.com/login"
            ),
            Some(Net::Mismatch {
                shown: "www.mybank.com".into(),
                real: "mybank.example.evil.ru".into()
            })
        );
        assert_eq!(net("https://secure.mybank.com/", "www.mybank.com"), None);
        assert_eq!(net("https://track.example.net/c/1", "Click here"), None);
        assert_eq!(
            net("http://198.51.100.9/paypal", "PayPal"),
            Some(Net::NumericIp {
                real: "198.51.100.9".into()
            })
        );
        assert_eq!(net("mailto:a@b.example", "a@b.example"), None);
        let lists = Lists {
            safe: vec![Arc::new(HostList {
                path: "x".into(),
                state: RwLock::new(Loaded {
                    stamp: Stamp {
                        modified: None,
                        len: 0,
                        ino: 0,
                    },
                    hosts: Arc::new(parse_list("example.net\n")),
                }),
            })],
            ..Default::default()
        };
        assert_eq!(
            phishing_net(&lists, "https://track.example.net/c/1", "www.shop.com"),
            None
        );
    }

    #[test]
    fn list_files_in_mailscanner_format() {
        let set = parse_list(
            "# comment\nevil.example\n  *.bad.example  # trailing\n.worse.example\nHTTP://Path.Example/x\n\n",
        );
        assert!(set.contains("evil.example"));
        assert!(set.contains("bad.example"));
        assert!(set.contains("worse.example"));
        assert!(set.contains("path.example"));
        assert_eq!(listed(&set, "login.evil.example"), Some("evil.example"));
        assert_eq!(listed(&set, "notevil.example"), None);
    }

    #[test]
    fn a_list_file_reloads_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("postroom-links-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.sites");
        fs::write(&path, "one.example\n").unwrap();
        let list = HostList::open(&path).unwrap();
        assert!(list.matches("one.example").is_some());
        assert!(list.matches("two.example").is_none());
        // A write-and-rename, as list updaters do: a new inode.
        let tmp = dir.join("bad.sites.new");
        fs::write(&tmp, "one.example\ntwo.example\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        assert!(list.matches("two.example").is_some());
        // A file that disappears keeps the last good list.
        fs::remove_file(&path).unwrap();
        assert!(list.matches("two.example").is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}

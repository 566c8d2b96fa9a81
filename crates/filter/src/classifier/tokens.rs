//! The tokenizer: a message's words, word pairs, link hosts and selected
//! header facts, each as a 64-bit hash (FNV-1a over a kind byte and the
//! lower-cased text). The hashes are what the store keeps, so the function
//! must never change without a new model (the training would no longer
//! match): [`HASH_VERSION`].
//!
//! One pass over the parse the chain already made, no allocation per
//! token; every size is bounded ([`MAX_TEXT`], [`MAX_TOKENS`], [`MAX_DEPTH`])
//! so a hostile message costs what a large ordinary one does.

use mail_parser::{Message, MimeHeaders, PartType};

/// Bumped whenever a token's hash changes; a store trained with another
/// version must be trained again.
pub const HASH_VERSION: u32 = 1;

/// Text read per message (all parts together): 256 KiB holds every body
/// of the SpamAssassin corpus but its largest 0.5%; spam says what it is
/// in its first screen.
pub const MAX_TEXT: usize = 256 * 1024;

/// Distinct tokens kept per message: the corpus' median message has about
/// 600, its 99th percentile 6,000.
pub const MAX_TOKENS: usize = 10_000;

/// Nested messages (message/rfc822) read into: a forward of a forward.
pub const MAX_DEPTH: usize = 3;

/// Header values read for words: the rest of a long `References:` says
/// nothing more.
const MAX_HEADER_VALUE: usize = 1000;

/// Fields whose values are read elsewhere (parsed: Subject, From, ...)
/// or are noise (dates, ids, signatures).
const UNREAD_VALUES: &[&str] = &[
    "subject",
    "from",
    "reply-to",
    "date",
    "message-id",
    "references",
    "in-reply-to",
    "dkim-signature",
    "domainkey-signature",
    "arc-seal",
    "arc-message-signature",
    "x-mailer",
    "user-agent",
];

/// Longer words are not words (base64, hashes): they become one token by
/// first letter and length, as SpamBayes' "skip" tokens.
const MAX_WORD: usize = 24;
const MIN_WORD: usize = 3;

/// What a token is, hashed in front of its text, so `free` in a subject
/// and `free` in a body are two tokens.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Kind {
    Word = b'w',
    Pair = b'p',
    Subject = b's',
    SubjectPair = b'S',
    Skip = b'k',
    UrlHost = b'u',
    UrlDomain = b'U',
    Header = b'h',
    HeaderWord = b'H',
    Fact = b'f',
    Tag = b't',
    Attachment = b'a',
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[derive(Clone, Copy)]
struct Hasher(u64);

impl Hasher {
    fn new(kind: Kind) -> Hasher {
        Hasher(FNV_OFFSET).byte(kind as u8)
    }
    #[inline]
    fn byte(self, b: u8) -> Hasher {
        Hasher((self.0 ^ b as u64).wrapping_mul(FNV_PRIME))
    }
    fn bytes(mut self, s: &[u8]) -> Hasher {
        for &b in s {
            self = self.byte(b);
        }
        self
    }
    /// Lower-cased: ASCII directly, other letters through `to_lowercase`.
    fn lower(mut self, s: &str) -> Hasher {
        for c in s.chars() {
            if c.is_ascii() {
                self = self.byte(c.to_ascii_lowercase() as u8);
            } else {
                for l in c.to_lowercase() {
                    let mut buf = [0u8; 4];
                    self = self.bytes(l.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        self
    }
    fn finish(self) -> u64 {
        // FNV's low bits mix poorly; a final avalanche (splitmix64's)
        // spreads them, so the model's hash map needs no hasher of its own.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn hash(kind: Kind, text: &str) -> u64 {
    Hasher::new(kind).lower(text).finish()
}

#[cfg(test)]
fn pair(kind: Kind, a: u64, b: u64) -> u64 {
    Hasher::new(kind)
        .bytes(&a.to_le_bytes())
        .bytes(&b.to_le_bytes())
        .finish()
}

/// A message's tokens: distinct, in no particular order.
#[derive(Debug, Default)]
pub struct Tokens {
    list: Vec<u64>,
    text_left: usize,
}

impl Tokens {
    pub fn as_slice(&self) -> &[u64] {
        &self.list
    }
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn push(&mut self, t: u64) {
        // Duplicates are removed at the end; the bound holds before that
        // (a message repeating one word a million times stops here too).
        if self.list.len() < MAX_TOKENS * 4 {
            self.list.push(t);
        }
    }

    fn finish(mut self) -> Tokens {
        self.list.sort_unstable();
        self.list.dedup();
        self.list.truncate(MAX_TOKENS);
        self
    }

    /// Words and word pairs of `text` (at most what is left of
    /// [`MAX_TEXT`]).
    /// Words only. Word pairs (`pairs`) are supported but not used for
    /// bodies: they are not independent of their words, and chi-square
    /// combining counted them twice; on a split of the corpus' training
    /// half they cost 2 points of recall (87.8% without, 85.9% with, at
    /// 0.29% and 0.39% false positives).
    fn text(&mut self, text: &str, word: Kind, pairs: Option<Kind>) {
        self.text_with(text, Hasher::new(word), pairs.map(Hasher::new));
    }

    /// Words (hashed after `word`) and, with `pairs`, word pairs.
    fn text_with(&mut self, text: &str, word: Hasher, pairs: Option<Hasher>) {
        let text = self.take_text(text);
        let hash = |_: Kind, w: &str| word.lower(w).finish();
        let pair = |_: Kind, a: u64, b: u64| match pairs {
            Some(p) => p.bytes(&a.to_le_bytes()).bytes(&b.to_le_bytes()).finish(),
            None => 0,
        };
        let pair_kind = Kind::Pair;
        let mut prev: Option<u64> = None;
        for raw in text.split(|c: char| c.is_whitespace()) {
            let w = raw.trim_matches(|c: char| {
                matches!(
                    c,
                    '.' | ','
                        | ';'
                        | ':'
                        | '('
                        | ')'
                        | '['
                        | ']'
                        | '{'
                        | '}'
                        | '"'
                        | '\''
                        | '<'
                        | '>'
                        | '*'
                        | '`'
                        | '|'
                        | '='
                )
            });
            if w.is_empty() {
                prev = None;
                continue;
            }
            if let Some(host) = url_host(w) {
                self.host(host);
                prev = None;
                continue;
            }
            let n = w.chars().count();
            if n < MIN_WORD {
                // Short words carry little alone but keep pairs going
                // ("to you", "of $").
                let h = hash(Kind::Word, w);
                if let (Some(p), true) = (prev, pairs.is_some()) {
                    self.push(pair(pair_kind, p, h));
                }
                prev = Some(h);
                continue;
            }
            if n > MAX_WORD {
                let first = w.chars().next().unwrap_or(' ');
                let mut buf = [0u8; 4];
                self.push(
                    Hasher::new(Kind::Skip)
                        .bytes(first.encode_utf8(&mut buf).as_bytes())
                        .byte((n / 10).min(255) as u8)
                        .finish(),
                );
                prev = None;
                continue;
            }
            let h = hash(Kind::Word, w);
            self.push(h);
            if let (Some(p), true) = (prev, pairs.is_some()) {
                self.push(pair(pair_kind, p, h));
            }
            prev = Some(h);
        }
    }

    fn take_text<'t>(&mut self, text: &'t str) -> &'t str {
        let mut n = text.len().min(self.text_left);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        self.text_left -= n;
        &text[..n]
    }

    /// A link's host and its last two labels (`www.example.com` and
    /// `example.com`); a numeric host is one token for all.
    fn host(&mut self, host: &str) {
        let host = host.trim_end_matches('.');
        if host.is_empty() {
            return;
        }
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') || host.starts_with('[') {
            self.push(hash(Kind::Fact, "url-numeric-host"));
            return;
        }
        self.push(hash(Kind::UrlHost, host));
        let mut dots = host.rmatch_indices('.');
        if let (Some(_), Some((i, _))) = (dots.next(), dots.next()) {
            self.push(hash(Kind::UrlDomain, &host[i + 1..]));
        } else {
            self.push(hash(Kind::UrlDomain, host));
        }
    }

    /// HTML: the text between tags as words, the tags' names, and the
    /// hosts of `href`/`src` links.
    fn html(&mut self, html: &str) {
        let html = self.take_text(html);
        let mut text = String::with_capacity(html.len().min(64 * 1024));
        let mut rest = html;
        while let Some(lt) = rest.find('<') {
            text.push_str(&rest[..lt]);
            text.push(' ');
            let after = &rest[lt + 1..];
            let end = after.find('>').unwrap_or(after.len());
            let tag = &after[..end];
            self.tag(tag);
            rest = after.get(end + 1..).unwrap_or("");
        }
        text.push_str(rest);
        // The budget was taken already: words of the text only.
        let left = self.text_left;
        self.text_left = usize::MAX;
        self.text(&decode_entities(&text), Kind::Word, None);
        self.text_left = left;
    }

    fn tag(&mut self, tag: &str) {
        let name_end = tag
            .find(|c: char| c.is_whitespace() || c == '/' && !tag.starts_with('/'))
            .unwrap_or(tag.len());
        let name = &tag[..name_end];
        if name.is_empty() || name.starts_with('!') || name.len() > 16 {
            return;
        }
        self.push(hash(Kind::Tag, name));
        let lower_attrs = &tag[name_end..];
        for key in ["href", "src", "action"] {
            let mut from = 0;
            while let Some(i) = find_ascii_ci(&lower_attrs[from..], key) {
                let at = from + i + key.len();
                from = at;
                let v = lower_attrs[at..].trim_start();
                let Some(v) = v.strip_prefix('=') else { continue };
                let v = v.trim_start().trim_start_matches(['"', '\'']);
                if let Some(host) = url_host(v) {
                    self.host(host);
                }
            }
        }
    }
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// The few entities that hide words (`&nbsp;`, `&amp;`); the rest stay as
/// they are (they are tokens of their own, spam's obfuscation).
fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    s.replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .into()
}

/// The host of a URL-looking word (`http://`, `https://`, `www.`).
pub fn url_host(w: &str) -> Option<&str> {
    let lower_start =
        |p: &str| w.len() >= p.len() && w.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    let rest = if lower_start("http://") {
        &w[7..]
    } else if lower_start("https://") {
        &w[8..]
    } else if lower_start("www.") {
        w
    } else {
        return None;
    };
    let end = rest
        .find(|c: char| {
            matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | ')' | '\\') || c.is_whitespace()
        })
        .unwrap_or(rest.len());
    let mut host = &rest[..end];
    if let Some(at) = host.rfind('@') {
        host = &host[at + 1..];
    }
    if let Some(colon) = host.rfind(':') {
        if !host.ends_with(']') {
            host = &host[..colon];
        }
    }
    (!host.is_empty() && host.len() <= 255).then_some(host)
}

/// Header fields that our own server or other filters add: their tokens
/// would teach the classifier its own verdicts (a message moved to Junk
/// carries our `X-Spam-*`) or the path it took here, not what it is.
fn ignored_header(name: &str) -> bool {
    let n = name.as_bytes();
    let starts = |p: &str| n.len() >= p.len() && n[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    starts("x-spam")
        || starts("x-postroom")
        || starts("x-filter")
        || name.eq_ignore_ascii_case("return-path")
        || name.eq_ignore_ascii_case("delivered-to")
        || name.eq_ignore_ascii_case("authentication-results")
        || name.eq_ignore_ascii_case("x-original-to")
        || name.eq_ignore_ascii_case("status")
        || name.eq_ignore_ascii_case("x-status")
        || name.eq_ignore_ascii_case("x-keywords")
        || name.eq_ignore_ascii_case("x-uid")
}

/// The tokens of a parsed message.
pub fn tokens(message: &Message<'_>) -> Tokens {
    let mut t = Tokens {
        list: Vec::with_capacity(1024),
        text_left: MAX_TEXT,
    };
    headers(&mut t, message);
    body(&mut t, message, 0);
    t.finish()
}

fn headers(t: &mut Tokens, m: &Message<'_>) {
    // Which fields are there at all (a mailer's fingerprint), except the
    // ones added on the way here.
    for (name, value) in m.headers_raw().take(100) {
        if ignored_header(name) || name.len() > 40 {
            continue;
        }
        // Our own trace line (added to each delivered copy) would tell
        // a message trained from a mailbox from one being scored.
        if name.eq_ignore_ascii_case("received") && value.contains("(Postroom)") {
            continue;
        }
        t.push(hash(Kind::Header, name));
        if !UNREAD_VALUES.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            let mut end = value.len().min(MAX_HEADER_VALUE);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            let base = Hasher::new(Kind::HeaderWord).byte(b':').lower(name).byte(b':');
            t.text_with(&value[..end], base, None);
        }
    }
    if let Some(subject) = m.subject() {
        t.text(subject, Kind::Subject, Some(Kind::SubjectPair));
        let letters = subject.chars().filter(|c| c.is_alphabetic()).count();
        if letters >= 8 && !subject.chars().any(|c| c.is_lowercase()) {
            t.push(hash(Kind::Fact, "subject-all-caps"));
        }
    } else {
        t.push(hash(Kind::Fact, "no-subject"));
    }
    let from_domain = address(
        t,
        "from",
        m.from().and_then(|a| a.first()).and_then(|a| a.address()),
    );
    let reply_domain = address(
        t,
        "reply-to",
        m.reply_to().and_then(|a| a.first()).and_then(|a| a.address()),
    );
    if let (Some(f), Some(r)) = (from_domain, reply_domain) {
        if !f.eq_ignore_ascii_case(r) {
            t.push(hash(Kind::Fact, "reply-to-elsewhere"));
        }
    }
    if let Some(name) = m.from().and_then(|a| a.first()).and_then(|a| a.name()) {
        t.text(name, Kind::Header, None);
    }
    let to = m.to().map(|a| a.iter().count()).unwrap_or(0) + m.cc().map(|a| a.iter().count()).unwrap_or(0);
    t.push(
        Hasher::new(Kind::Fact)
            .bytes(b"recipients")
            .byte(match to {
                0 => 0,
                1 => 1,
                2..=5 => 2,
                _ => 3,
            })
            .finish(),
    );
    match m.message_id().and_then(|id| id.rsplit_once('@')) {
        Some((_, domain)) => t.push(hash(Kind::Fact, &format!("message-id@{}", tail(domain)))),
        None => t.push(hash(Kind::Fact, "message-id-odd")),
    }
    if m.date().is_none() {
        t.push(hash(Kind::Fact, "no-date"));
    }
    for name in ["x-mailer", "user-agent"] {
        if let Some(v) = m.header_raw(name) {
            t.text(v, Kind::Header, None);
        }
    }
    if let Some(ct) = m.content_type() {
        t.push(hash(
            Kind::Fact,
            &format!("type:{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
        ));
        if let Some(cs) = ct.attribute("charset") {
            t.push(hash(Kind::Fact, &format!("charset:{cs}")));
        }
    }
}

/// The last two labels of a domain.
fn tail(domain: &str) -> &str {
    let d = domain.trim_end_matches(['>', ' ', '.']);
    let mut dots = d.rmatch_indices('.');
    match (dots.next(), dots.next()) {
        (Some(_), Some((i, _))) => &d[i + 1..],
        _ => d,
    }
}

fn address<'m>(t: &mut Tokens, field: &str, addr: Option<&'m str>) -> Option<&'m str> {
    let addr = addr?;
    t.push(
        Hasher::new(Kind::Header)
            .bytes(field.as_bytes())
            .lower(addr)
            .finish(),
    );
    let domain = addr.rsplit_once('@').map(|(_, d)| d)?;
    t.push(
        Hasher::new(Kind::Header)
            .bytes(field.as_bytes())
            .byte(b'@')
            .lower(tail(domain))
            .finish(),
    );
    Some(domain)
}

fn body(t: &mut Tokens, m: &Message<'_>, depth: usize) {
    for part in m.parts.iter().take(200) {
        match &part.body {
            PartType::Text(text) => t.text(text, Kind::Word, None),
            PartType::Html(html) => t.html(html),
            PartType::Binary(_) | PartType::InlineBinary(_) => {
                if let Some(ct) = part.content_type() {
                    t.push(
                        Hasher::new(Kind::Attachment)
                            .lower(ct.ctype())
                            .byte(b'/')
                            .lower(ct.subtype().unwrap_or(""))
                            .finish(),
                    );
                }
                if let Some(ext) = part
                    .attachment_name()
                    .and_then(|n| n.rsplit_once('.'))
                    .map(|(_, e)| e)
                {
                    if ext.len() <= 8 {
                        t.push(Hasher::new(Kind::Attachment).byte(b'.').lower(ext).finish());
                    }
                }
            }
            PartType::Message(inner) => {
                if depth < MAX_DEPTH {
                    body(t, inner, depth + 1);
                }
            }
            PartType::Multipart(_) => {}
        }
        if part.is_encoding_problem {
            t.push(hash(Kind::Fact, "encoding-problem"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(raw: &[u8]) -> Tokens {
        let m = mail_parser::MessageParser::default().parse(raw).unwrap();
        tokens(&m)
    }

    #[test]
    fn words_pairs_hosts_and_headers() {
        let t = toks(
            b"From: Win <win@lottery.example>\r\nSubject: You WON\r\nReply-To: x@elsewhere.example\r\n\r\nClaim your prize at http://www.claim.lottery.example/now today!\r\n",
        );
        let has = |h: u64| t.as_slice().contains(&h);
        assert!(has(hash(Kind::Word, "claim")));
        assert!(has(hash(Kind::Word, "CLAIM")), "lower-cased");
        assert!(
            !has(pair(
                Kind::Pair,
                hash(Kind::Word, "claim"),
                hash(Kind::Word, "your")
            )),
            "no body pairs"
        );
        assert!(has(pair(
            Kind::SubjectPair,
            hash(Kind::Subject, "you"),
            hash(Kind::Subject, "won")
        )));
        assert!(has(hash(Kind::UrlHost, "www.claim.lottery.example")));
        assert!(has(hash(Kind::UrlDomain, "lottery.example")));
        assert!(has(hash(Kind::Subject, "won")));
        assert!(
            !has(hash(Kind::Word, "won")),
            "subject words are their own tokens"
        );
        assert!(has(hash(Kind::Fact, "reply-to-elsewhere")));
        assert!(has(hash(Kind::Word, "today!")));
    }

    #[test]
    fn html_text_tags_and_links() {
        let t = toks(
            b"Content-Type: text/html\r\n\r\n<html><body><font color=red>Cheap&nbsp;pills</font> <a HREF=\"https://pharma.example/x\">here</a></body></html>\r\n",
        );
        let has = |h: u64| t.as_slice().contains(&h);
        assert!(has(hash(Kind::Word, "cheap")));
        assert!(has(hash(Kind::Word, "pills")));
        assert!(has(hash(Kind::Tag, "font")));
        assert!(has(hash(Kind::UrlHost, "pharma.example")));
        assert!(!has(hash(Kind::Word, "color=red")), "attributes are not words");
    }

    #[test]
    fn our_own_headers_are_not_tokens() {
        let a = toks(b"Subject: hi\r\n\r\nhello there\r\n");
        let b = toks(b"Received: from x by mx.example (Postroom) with ESMTP id Q1\r\nX-Spam-Status: Yes\r\nReturn-Path: <a@b>\r\nDelivered-To: c@d\r\nSubject: hi\r\n\r\nhello there\r\n");
        assert_eq!(a.as_slice(), b.as_slice());
    }

    #[test]
    fn the_hash_is_stable() {
        // The store keeps these numbers: a change needs HASH_VERSION moved.
        assert_eq!(HASH_VERSION, 1);
        assert_eq!(hash(Kind::Word, "viagra"), hash(Kind::Word, "ViAgRa"));
        assert_eq!(hash(Kind::Word, "viagra"), 598_025_098_808_768_901);
    }

    #[test]
    fn bounded() {
        let mut raw = b"Subject: x\r\n\r\n".to_vec();
        for i in 0..200_000 {
            raw.extend_from_slice(format!("w{i} ").as_bytes());
        }
        let t = toks(&raw);
        assert!(t.len() <= MAX_TOKENS);
    }
}

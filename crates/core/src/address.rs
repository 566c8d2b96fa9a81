//! Mail addresses as RFC 5321 4.1.2 (and RFC 6531 3.3 for UTF-8) writes them,
//! each with a display form (as the peer wrote it) and a canonical form (what
//! lookups compare): the domain lower-cased in its IDNA ASCII form, the local
//! part unquoted, NFC-normalised and case-folded.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// RFC 5321 4.5.3.1.1: 64 octets of local part.
pub const MAX_LOCAL_LEN: usize = 64;
/// RFC 5321 4.5.3.1.2: 255 octets of domain.
pub const MAX_DOMAIN_LEN: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    Empty,
    NoAt,
    BadLocalPart,
    LocalPartTooLong,
    BadDomain,
    DomainTooLong,
    /// Non-ASCII where the peer did not ask for SMTPUTF8 (RFC 6531 3.5).
    NeedsUtf8,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Empty => "empty address",
            AddressError::NoAt => "address has no domain",
            AddressError::BadLocalPart => "bad local part",
            AddressError::LocalPartTooLong => "local part longer than 64 octets",
            AddressError::BadDomain => "bad domain",
            AddressError::DomainTooLong => "domain longer than 255 octets",
            AddressError::NeedsUtf8 => "non-ASCII address without SMTPUTF8",
        })
    }
}

impl std::error::Error for AddressError {}

/// A domain name, or an address literal such as `[192.0.2.1]`.
#[derive(Clone, Debug)]
pub struct Domain {
    display: String,
    canonical: String,
}

impl Domain {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::BadDomain);
        }
        if s.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::DomainTooLong);
        }
        if s.starts_with('[') {
            return parse_address_literal(s);
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        for label in trimmed.split('.') {
            if !valid_label(label) {
                return Err(AddressError::BadDomain);
            }
        }
        let canonical = idna::domain_to_ascii(trimmed).map_err(|_| AddressError::BadDomain)?;
        if canonical.is_empty() || canonical.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::BadDomain);
        }
        // RFC 1035 2.3.4: 63 octets a label, counted in the ASCII (A-label)
        // form, which is what goes on the wire.
        // IDNA mapping can turn look-alikes (fullwidth `＠`, NBSP, soft
        // hyphens) into other ASCII: the result must still be a host name,
        // letters, digits and inner hyphens only (RFC 5321 4.1.2 Ldh-str).
        let ldh = |l: &str| {
            l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if canonical
            .split('.')
            .any(|l| l.is_empty() || l.len() > 63 || !ldh(l))
        {
            return Err(AddressError::BadDomain);
        }
        Ok(Domain {
            display: s.to_string(),
            canonical,
        })
    }

    /// The form every lookup compares: lower-case IDNA ASCII.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn is_ascii(&self) -> bool {
        self.display.is_ascii()
    }

    pub fn is_address_literal(&self) -> bool {
        self.canonical.starts_with('[')
    }

    /// A name with at least one dot that is not an address literal and not
    /// under a suffix that only means something inside one network.
    pub fn is_fully_qualified(&self) -> bool {
        const INTERNAL: [&str; 7] = [
            "local",
            "localdomain",
            "lan",
            "internal",
            "home",
            "corp",
            "localhost",
        ];
        let c = &self.canonical;
        if self.is_address_literal() || !c.contains('.') {
            return false;
        }
        let tld = c.rsplit('.').next().unwrap_or("");
        !INTERNAL.contains(&tld)
    }
}

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for Domain {}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

fn valid_label(label: &str) -> bool {
    // RFC 5321 sub-domain = Let-dig [Ldh-str]; RFC 6531 allows U-labels,
    // which IDNA conversion checks further.
    if label.is_empty() {
        return false;
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control());
    label.chars().all(ok_char) && !label.starts_with('-') && !label.ends_with('-')
}

fn parse_address_literal(s: &str) -> Result<Domain, AddressError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(AddressError::BadDomain)?;
    // RFC 5321 4.1.3: the `IPv6:` tag is case-insensitive (RFC 5234 2.3).
    let tag = inner
        .as_bytes()
        .get(..5)
        .is_some_and(|t| t.eq_ignore_ascii_case(b"IPv6:"));
    let valid = if tag {
        inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        inner.parse::<std::net::Ipv4Addr>().is_ok()
    };
    if !valid {
        return Err(AddressError::BadDomain);
    }
    Ok(Domain {
        display: s.to_string(),
        canonical: s.to_ascii_lowercase(),
    })
}

/// A mailbox (`local@domain`) with display and canonical forms.
#[derive(Clone, Debug)]
pub struct Address {
    local_display: String,
    local_canonical: String,
    domain: Domain,
}

impl Address {
    /// Parses `local@domain` (no angle brackets). `utf8` is whether the peer
    /// announced SMTPUTF8; without it only ASCII is accepted.
    pub fn parse(s: &str, utf8: bool) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if !utf8 && !s.is_ascii() {
            return Err(AddressError::NeedsUtf8);
        }
        let (local_display, local_content, rest) = split_local(s)?;
        let domain_str = rest.strip_prefix('@').ok_or(AddressError::NoAt)?;
        if local_display.len() > MAX_LOCAL_LEN {
            return Err(AddressError::LocalPartTooLong);
        }
        let domain = Domain::parse(domain_str)?;
        Ok(Address {
            local_canonical: canonical_local(&local_content),
            local_display: local_display.to_string(),
            domain,
        })
    }

    /// The local part as lookups compare it.
    pub fn local_canonical(&self) -> &str {
        &self.local_canonical
    }

    pub fn local_display(&self) -> &str {
        &self.local_display
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// `local@domain` in canonical form: the key of every lookup.
    pub fn canonical(&self) -> String {
        format!("{}@{}", self.local_canonical, self.domain.canonical())
    }

    pub fn is_ascii(&self) -> bool {
        self.local_display.is_ascii() && self.domain.is_ascii()
    }

    /// The same address with another local part (used for subaddress
    /// stripping and domain aliases); the new part is given unquoted.
    pub fn with_local(&self, local: &str) -> Address {
        Address {
            local_display: local.to_string(),
            local_canonical: canonical_local(local),
            domain: self.domain.clone(),
        }
    }

    pub fn with_domain(&self, domain: Domain) -> Address {
        Address {
            local_display: self.local_display.clone(),
            local_canonical: self.local_canonical.clone(),
            domain,
        }
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Self) -> bool {
        self.local_canonical == other.local_canonical && self.domain == other.domain
    }
}

impl Eq for Address {}

impl std::hash::Hash for Address {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.local_canonical.hash(state);
        self.domain.canonical().hash(state);
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_display, self.domain.display())
    }
}

/// Case-folds and NFC-normalises a local part. Local parts are
/// case-sensitive in theory (RFC 5321 2.4) but no hosted mailbox system
/// treats them so, and users expect `John@` to reach `john@`.
pub fn canonical_local(content: &str) -> String {
    // Lower-case first, then normalise: lower-casing can produce combining
    // marks (`İ` → `i` + U+0307) that NFC must then order and compose.
    content.chars().flat_map(char::to_lowercase).nfc().collect()
}

fn is_atext(c: char) -> bool {
    // RFC 5322 3.2.3 atext, extended by RFC 6531 3.3 with UTF8-non-ascii.
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

/// Splits the local part off `s`. Returns (as written, unquoted content, rest).
fn split_local(s: &str) -> Result<(&str, String, &str), AddressError> {
    if let Some(body) = s.strip_prefix('"') {
        // Quoted-string: qtextSMTP / quoted-pairSMTP (RFC 5321 4.1.2).
        let mut content = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    let end = 1 + i + 1;
                    return Ok((&s[..end], content, &s[end..]));
                }
                '\\' => match chars.next() {
                    Some((_, q)) if (' '..='~').contains(&q) => content.push(q),
                    _ => return Err(AddressError::BadLocalPart),
                },
                c if (c as u32) >= 32 && c != '\x7f' => content.push(c),
                _ => return Err(AddressError::BadLocalPart),
            }
        }
        return Err(AddressError::BadLocalPart);
    }
    let end = s.rfind('@').ok_or(AddressError::NoAt)?;
    let local = &s[..end];
    // Dot-string = Atom *("." Atom)
    if local.is_empty()
        || local
            .split('.')
            .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return Err(AddressError::BadLocalPart);
    }
    Ok((local, local.to_string(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_compare_equal() {
        let a = Address::parse("John.Doe@Example.COM", false).unwrap();
        let b = Address::parse("john.doe@example.com", false).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.canonical(), "john.doe@example.com");
        assert_eq!(a.to_string(), "John.Doe@Example.COM");
    }

    #[test]
    fn idna_and_nfc() {
        let a = Address::parse("JOSÉ@Bücher.example", true).unwrap();
        assert_eq!(a.domain().canonical(), "xn--bcher-kva.example");
        // e + combining acute is the same as precomposed é after NFC.
        let b = Address::parse("jose\u{301}@xn--bcher-kva.example", true).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            Address::parse("josé@bücher.example", false),
            Err(AddressError::NeedsUtf8)
        );
    }

    #[test]
    fn quoted_local_parts() {
        let a = Address::parse("\"john doe\"@example.com", false).unwrap();
        assert_eq!(a.local_canonical(), "john doe");
        let b = Address::parse("\"john\"@example.com", false).unwrap();
        assert_eq!(b, Address::parse("john@example.com", false).unwrap());
        assert!(Address::parse("\"unterminated@example.com", false).is_err());
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "",
            "a",
            "@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a@",
            "a@-example.com",
            "a@exa mple.com",
            "a b@example.com",
            "a@[999.1.1.1]",
        ] {
            assert!(Address::parse(bad, true).is_err(), "{bad:?}");
        }
        assert!(Address::parse("a@[192.0.2.1]", false).is_ok());
        assert!(Address::parse("a@[IPv6:2001:db8::1]", false).is_ok());
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Address::parse(&long, false), Err(AddressError::LocalPartTooLong));
    }

    #[test]
    fn fully_qualified_names() {
        assert!(Domain::parse("mail.richweb.com").unwrap().is_fully_qualified());
        assert!(!Domain::parse("server1.local").unwrap().is_fully_qualified());
        assert!(!Domain::parse("localhost").unwrap().is_fully_qualified());
    }
}

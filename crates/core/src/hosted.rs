//! Which names may be hosted: the one check behind `domain add` (also with
//! `--alias-of` and `--relay-to`) and `import virtual`. Stricter than
//! [`Domain::parse`], which must accept whatever a peer may legitimately
//! write in an envelope: a hosted domain becomes part of every address
//! under it, so a name that cannot be a public mail domain, or that only
//! looks like another one, is refused when it is added.

use std::fmt;

use icu_properties::props::{GeneralCategory, Script};
use icu_properties::{CodePointMapData, PropertyNamesLong};

use crate::address::{AddressError, Domain};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostedDomainError {
    Syntax(AddressError),
    /// `example.com.`: refused rather than silently kept (users would become
    /// `u@example.com.`) or silently changed.
    TrailingDot,
    IpAddress,
    Localhost,
    SingleLabel,
    /// The server's own `server.hostname`.
    OwnHostName,
    /// Not a valid name under IDNA2008 (RFC 5890-5893); says why.
    NotIdna2008(String),
    /// A label mixing scripts (Latin with Cyrillic, ...): a homograph.
    MixedScript {
        label: String,
        scripts: Vec<String>,
    },
}

impl fmt::Display for HostedDomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostedDomainError::Syntax(e) => write!(f, "{e}"),
            HostedDomainError::TrailingDot => {
                f.write_str("ends with a dot: give the domain without the trailing dot")
            }
            HostedDomainError::IpAddress => f.write_str("is an IP address, not a domain name"),
            HostedDomainError::Localhost => {
                f.write_str("is a localhost name, which only ever means this machine (RFC 6761 6.3)")
            }
            HostedDomainError::SingleLabel => {
                f.write_str("is a single label: a hosted domain has at least two (e.g. example.com)")
            }
            HostedDomainError::OwnHostName => f.write_str(
                "is this server's own host name (server.hostname): host the domain, not the server's name",
            ),
            HostedDomainError::NotIdna2008(why) => {
                write!(
                    f,
                    "is not a valid internationalised domain name (IDNA2008): {why}"
                )
            }
            HostedDomainError::MixedScript { label, scripts } => write!(
                f,
                "label `{label}` mixes {} letters, as look-alikes of other names do",
                scripts.join(" and ")
            ),
        }
    }
}

impl std::error::Error for HostedDomainError {}

impl Domain {
    /// A name this server may host. `own_hostname` is the configured
    /// `server.hostname`, which is refused (its mail is the server's own).
    ///
    /// The rules, in order: no trailing dot; not an IP address (or a
    /// numeric last label, which no top-level domain is, RFC 3696 2);
    /// [`Domain::parse`] syntax; at least two labels; not `localhost` or a
    /// name under it; not the server's own name; valid under IDNA2008; and
    /// each label in one script, except the combinations UTS #39 5.2
    /// ("Highly Restrictive") allows: Latin with Han and Hiragana/Katakana,
    /// Bopomofo or Hangul.
    pub fn parse_hosted(s: &str, own_hostname: &str) -> Result<Domain, HostedDomainError> {
        if s.ends_with('.') {
            return Err(HostedDomainError::TrailingDot);
        }
        if s.starts_with('[') || s.parse::<std::net::IpAddr>().is_ok() {
            return Err(HostedDomainError::IpAddress);
        }
        let d = Domain::parse(s).map_err(HostedDomainError::Syntax)?;
        let c = d.canonical();
        let last = c.rsplit('.').next().unwrap_or("");
        if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HostedDomainError::IpAddress);
        }
        if !c.contains('.') {
            return Err(if c == "localhost" {
                HostedDomainError::Localhost
            } else {
                HostedDomainError::SingleLabel
            });
        }
        if c.ends_with(".localhost") {
            return Err(HostedDomainError::Localhost);
        }
        if Domain::parse(own_hostname).is_ok_and(|own| own == d) {
            return Err(HostedDomainError::OwnHostName);
        }
        check_idna2008(s, c)?;
        Ok(d)
    }
}

fn check_idna2008(given: &str, canonical: &str) -> Result<(), HostedDomainError> {
    // UTS #46 non-transitional processing with STD3 rules, hyphen checks
    // (RFC 5891 4.2.3.1), the bidi rule (RFC 5893) and DNS lengths: the
    // IDNA2008-compatible profile. It must give the same A-labels as the
    // lookup form, or the name means two different things.
    match idna::domain_to_ascii_strict(given) {
        Ok(a) if a == canonical => {}
        Ok(a) => {
            return Err(HostedDomainError::NotIdna2008(format!(
                "it converts to {a}, not {canonical}"
            )))
        }
        Err(_) => {
            return Err(HostedDomainError::NotIdna2008(
                "a label breaks the hyphen, bidi or joiner rules".into(),
            ))
        }
    }
    let (unicode, checked) = idna::domain_to_unicode(canonical);
    if checked.is_err() {
        return Err(HostedDomainError::NotIdna2008("a label does not decode".into()));
    }
    // IDNA2008 has no mapping step (RFC 5891 5.2): a name must be given in
    // the form it is, apart from upper case. UTS #46 would quietly map
    // fullwidth letters to ASCII and drop soft hyphens, so that
    // `ex\u{AD}ample.com` became a second, invisible spelling of
    // example.com, kept as its display form.
    let lower = given.to_lowercase();
    if lower != canonical && lower != unicode {
        return Err(HostedDomainError::NotIdna2008(format!(
            "it holds characters that stand for others (write it as {unicode})"
        )));
    }
    let categories = CodePointMapData::<GeneralCategory>::new();
    let scripts = CodePointMapData::<Script>::new();
    let names = PropertyNamesLong::<Script>::new();
    for label in unicode.split('.') {
        for ch in label.chars() {
            if ch.is_ascii() {
                // Already LDH (Domain::parse).
                continue;
            }
            // RFC 5892 2.1 LetterDigits: lower-case and other letters,
            // modifier letters, combining marks and decimal digits are the
            // only characters a U-label may hold (symbols such as emoji,
            // punctuation and spaces are DISALLOWED). Upper case is mapped
            // away by UTS #46 before this point.
            let ok = matches!(
                categories.get(ch),
                GeneralCategory::LowercaseLetter
                    | GeneralCategory::OtherLetter
                    | GeneralCategory::ModifierLetter
                    | GeneralCategory::NonspacingMark
                    | GeneralCategory::SpacingMark
                    | GeneralCategory::DecimalNumber
            );
            if !ok {
                return Err(HostedDomainError::NotIdna2008(format!(
                    "U+{:04X} `{ch}` is not allowed in a domain name (RFC 5892)",
                    ch as u32
                )));
            }
        }
        // In order of first use, so the message reads as the label does.
        let mut used: Vec<Script> = Vec::new();
        for s in label.chars().map(|c| scripts.get(c)) {
            if s != Script::Common && s != Script::Inherited && !used.contains(&s) {
                used.push(s);
            }
        }
        if !single_script(&used) {
            return Err(HostedDomainError::MixedScript {
                label: label.to_string(),
                scripts: used
                    .iter()
                    .map(|s| names.get(*s).unwrap_or("another").to_string())
                    .collect(),
            });
        }
    }
    Ok(())
}

/// UTS #39 5.2 "Highly Restrictive": one script, or Latin with one of the
/// CJK writing systems that are mixed in ordinary use.
fn single_script(used: &[Script]) -> bool {
    if used.len() <= 1 {
        return true;
    }
    let allowed: [&[Script]; 3] = [
        &[Script::Latin, Script::Han, Script::Hiragana, Script::Katakana],
        &[Script::Latin, Script::Han, Script::Bopomofo],
        &[Script::Latin, Script::Han, Script::Hangul],
    ];
    allowed.iter().any(|set| used.iter().all(|s| set.contains(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "mx.test.example";

    fn refused(s: &str) -> HostedDomainError {
        match Domain::parse_hosted(s, OWN) {
            Ok(d) => panic!("{s:?} accepted as {}", d.canonical()),
            Err(e) => e,
        }
    }

    #[test]
    fn ordinary_and_international_names_are_accepted() {
        for ok in [
            "example.com",
            "Esoomllub.COM",
            "mail.customer.example",
            "bücher.example",
            "xn--bcher-kva.example",
            "пример.рф",
            "παράδειγμα.ελ",
            "例え.テスト",
            "日本語abc.example",
            "test.example",
            "a-b.example",
        ] {
            assert!(
                Domain::parse_hosted(ok, OWN).is_ok(),
                "{ok}: {:?}",
                Domain::parse_hosted(ok, OWN)
            );
        }
    }

    #[test]
    fn what_cannot_be_a_hosted_domain_is_refused() {
        assert_eq!(refused("dot.test."), HostedDomainError::TrailingDot);
        assert_eq!(refused("127.0.0.1"), HostedDomainError::IpAddress);
        assert_eq!(refused("[127.0.0.1]"), HostedDomainError::IpAddress);
        assert_eq!(refused("::1"), HostedDomainError::IpAddress);
        assert_eq!(refused("10.1.2"), HostedDomainError::IpAddress);
        assert_eq!(refused("localhost"), HostedDomainError::Localhost);
        assert_eq!(refused("LocalHost"), HostedDomainError::Localhost);
        assert_eq!(refused("a.localhost"), HostedDomainError::Localhost);
        assert_eq!(refused("intranet"), HostedDomainError::SingleLabel);
        assert_eq!(refused("MX.test.example"), HostedDomainError::OwnHostName);
        assert!(matches!(refused("a..b"), HostedDomainError::Syntax(_)));
        assert!(matches!(refused(""), HostedDomainError::Syntax(_)));
    }

    #[test]
    fn names_invalid_under_idna2008_are_refused() {
        for bad in [
            "☃.example",          // symbol (So)
            "i❤.example",         // symbol
            "💩.example",         // emoji
            "ab--cd.example",     // hyphens in positions 3 and 4 (RFC 5891 4.2.3.1)
            "xn--a.example",      // not Punycode of anything valid
            "a\u{200d}b.example", // joiner outside its context (RFC 5892 A.2)
            "\u{301}a.example",   // leading combining mark (RFC 5891 4.2.3.2)
            "ｅｘａｍｐｌｅ.com", // fullwidth letters, mapped by UTS #46
            "ex\u{AD}ample.com",  // soft hyphen, dropped by UTS #46
        ] {
            assert!(
                matches!(
                    refused(bad),
                    HostedDomainError::NotIdna2008(_) | HostedDomainError::Syntax(_)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn mixed_script_homographs_are_refused() {
        // Cyrillic а (U+0430) and о (U+043E) in a Latin name.
        let e = refused("p\u{430}ypal.example");
        assert!(
            matches!(&e, HostedDomainError::MixedScript { scripts, .. } if scripts.contains(&"Latin".to_string())
                && scripts.contains(&"Cyrillic".to_string())),
            "{e:?}"
        );
        assert!(e.to_string().contains("Latin and Cyrillic"), "{e}");
        // Greek omicron in a Latin label.
        assert!(matches!(
            refused("g\u{3bf}\u{3bf}gle.example"),
            HostedDomainError::MixedScript { .. }
        ));
        // The same homograph given as its A-label.
        let a = idna::domain_to_ascii("p\u{430}ypal.example").unwrap();
        assert!(matches!(refused(&a), HostedDomainError::MixedScript { .. }));
        // Scripts may differ between labels.
        assert!(Domain::parse_hosted("пример.example", OWN).is_ok());
    }
}

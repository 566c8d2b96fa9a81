//! `postroom import virtual`: Postfix virtual alias maps
//! (`/etc/postfix/virtual/addresses` in the seed) into aliases.
//!
//! Each line is `pattern targets`: the pattern `user@domain`, `@domain`
//! (catch-all) or a bare domain (a virtual alias domain declaration); the
//! targets separated by commas or spaces. Bare local names on either side
//! are qualified with the `--origin` domain, as Postfix's `myorigin` does.
//!
//! The import is all or nothing: [`read_virtual`] reads the file with caps
//! on its size and line length, [`parse_virtual_lines`] checks every
//! pattern and target, and [`plan_import`] checks every domain and alias
//! against the directory as the whole file would leave it; only then does
//! the caller save the plan in one transaction
//! (`Db::import_aliases`). Errors name the line.

use std::fmt;
use std::io::{BufRead, Read};

use postroom_core::{Address, Domain};
use postroom_store::directory::ImportedAlias;

use crate::resolve::{Directory, Origin, Pending};

/// The largest map accepted: the seed's biggest is under 1 MiB; 64 MiB is
/// room for ~1 million aliases and refuses `/dev/zero` after 64 MiB read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// The longest physical line: 64 KiB holds ~1,500 targets; longer lists
/// continue on indented lines, as Postfix allows.
pub const MAX_LINE_BYTES: usize = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtualEntry {
    /// A domain declared as hosted.
    Domain(String),
    /// `pattern` is `user@domain` or `@domain`.
    Alias { pattern: String, targets: Vec<String> },
}

#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

fn error(line: usize, message: String) -> ParseError {
    ParseError { line, message }
}

/// Reads a map: UTF-8 text, at most [`MAX_FILE_BYTES`], lines of at most
/// [`MAX_LINE_BYTES`]. Stops at the first line over a limit, so an endless
/// input (`/dev/zero`) is refused after one line.
pub fn read_virtual(input: impl Read) -> Result<String, ParseError> {
    let mut reader = std::io::BufReader::new(input.take(MAX_FILE_BYTES + 1));
    let mut text = String::new();
    let mut raw = Vec::new();
    let mut total = 0u64;
    for n in 1.. {
        raw.clear();
        let got = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|e| error(n, format!("read failed: {e}")))?;
        if got == 0 {
            break;
        }
        total += got as u64;
        if total > MAX_FILE_BYTES {
            return Err(error(
                n,
                format!("the file is larger than {} MiB", MAX_FILE_BYTES >> 20),
            ));
        }
        let content = raw.strip_suffix(b"\n").unwrap_or(&raw);
        if content.len() > MAX_LINE_BYTES {
            return Err(error(n, format!("line longer than {MAX_LINE_BYTES} bytes")));
        }
        let line = std::str::from_utf8(&raw).map_err(|e| {
            error(
                n,
                format!("not UTF-8 text (byte {} of the line)", e.valid_up_to() + 1),
            )
        })?;
        if line.contains('\0') {
            return Err(error(n, "NUL byte: not a text file".into()));
        }
        text.push_str(line);
    }
    Ok(text)
}

/// The entries of a map, without their line numbers.
pub fn parse_virtual(text: &str, origin: Option<&str>) -> Result<Vec<VirtualEntry>, ParseError> {
    Ok(parse_virtual_lines(text, origin)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// The entries of a map with the line each starts on. Every pattern and
/// target is checked here: a bad local part or domain is refused with its
/// line, before anything is imported.
pub fn parse_virtual_lines(
    text: &str,
    origin: Option<&str>,
) -> Result<Vec<(usize, VirtualEntry)>, ParseError> {
    let mut entries = Vec::new();
    let qualify = |name: &str, line: usize| -> Result<String, ParseError> {
        if name.contains('@') {
            Ok(name.to_string())
        } else {
            match origin {
                Some(o) => Ok(format!("{name}@{o}")),
                None => Err(error(
                    line,
                    format!("`{name}` has no domain: pass --origin DOMAIN"),
                )),
            }
        }
    };
    // Postfix continues a logical line on lines that start with white space.
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            if let Some((_, prev)) = logical.last_mut() {
                prev.push(' ');
                prev.push_str(line.trim());
                continue;
            }
        }
        logical.push((i + 1, line.trim().to_string()));
    }
    for (n, line) in logical {
        let mut parts = line.splitn(2, [' ', '\t']);
        let pattern = parts.next().unwrap_or("").trim();
        let rest = parts.next().unwrap_or("").trim();
        if rest.is_empty() {
            return Err(error(n, format!("`{pattern}` has no targets")));
        }
        if !pattern.contains('@') && pattern.contains('.') {
            Domain::parse(pattern).map_err(|e| error(n, format!("domain `{pattern}`: {e}")))?;
            entries.push((n, VirtualEntry::Domain(pattern.to_string())));
            continue;
        }
        let pattern = qualify(pattern, n)?;
        check_pattern(&pattern).map_err(|m| error(n, m))?;
        let targets = rest
            .split([',', ' ', '\t'])
            .filter(|t| !t.is_empty())
            .map(|t| {
                let full = qualify(t, n)?;
                Address::parse(&full, true)
                    .map(|a| a.to_string())
                    .map_err(|e| error(n, format!("target `{t}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        entries.push((n, VirtualEntry::Alias { pattern, targets }));
    }
    Ok(entries)
}

/// `@domain` or `local@domain`, as (domain, canonical local, local as written).
fn split_pattern(pattern: &str) -> Result<(Domain, String, String), String> {
    if let Some(d) = pattern.strip_prefix('@') {
        let d = Domain::parse(d).map_err(|e| format!("`{pattern}`: {e}"))?;
        return Ok((d, String::new(), String::new()));
    }
    let a = Address::parse(pattern, true).map_err(|e| format!("`{pattern}`: {e}"))?;
    Ok((
        a.domain().clone(),
        a.local_canonical().to_string(),
        a.local_display().to_string(),
    ))
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    split_pattern(pattern).map(|_| ())
}

/// What an import will do, checked as a whole.
#[derive(Debug, Default)]
pub struct ImportPlan {
    /// New domains (canonical, display).
    pub domains: Vec<(String, String)>,
    pub aliases: Vec<ImportedAlias>,
    /// One line per alias for the operator: `alias PATTERN -> TARGETS`.
    pub lines: Vec<String>,
    /// Warnings worth printing (catch-alls forwarding outside), by line.
    pub warnings: Vec<(usize, String)>,
}

/// Checks every entry against the directory as the whole file would leave
/// it: domains it would create must be hostable
/// ([`Domain::parse_hosted`], against `own_hostname`), aliases must not live
/// in an alias domain, and no alias may close a cycle (the same
/// [`Directory::check_targets`] as `alias add`).
pub async fn plan_import(
    dir: &Directory,
    entries: &[(usize, VirtualEntry)],
    own_hostname: &str,
) -> Result<ImportPlan, ParseError> {
    let store = |n: usize| move |e: postroom_store::StoreError| error(n, e.to_string());
    let mut plan = ImportPlan::default();
    let mut pending = Pending::default();
    // Alias keys in file order, with their line, for the cycle check.
    let mut checks: Vec<(usize, String, postroom_store::DomainId, String)> = Vec::new();
    for (n, entry) in entries {
        let n = *n;
        match entry {
            VirtualEntry::Domain(name) => {
                let d = Domain::parse_hosted(name, own_hostname)
                    .map_err(|e| error(n, format!("`{name}` {e}")))?;
                if dir
                    .meta()
                    .domain(d.canonical())
                    .await
                    .map_err(store(n))?
                    .is_none()
                    && pending.domain(d.canonical()).is_none()
                {
                    pending.add_domain(d.canonical(), d.display());
                    plan.domains
                        .push((d.canonical().to_string(), d.display().to_string()));
                }
            }
            VirtualEntry::Alias { pattern, targets } => {
                let (domain, local, display) = split_pattern(pattern).map_err(|m| error(n, m))?;
                let row = match dir.meta().domain(domain.canonical()).await.map_err(store(n))? {
                    Some(row) => {
                        if let Some(target) = row.alias_of {
                            let t = dir
                                .meta()
                                .domain_by_id(target)
                                .await
                                .map_err(store(n))?
                                .map_or_else(|| "another domain".to_string(), |t| t.display);
                            return Err(error(
                                n,
                                format!("{} is an alias of {t}: give its aliases there", row.display),
                            ));
                        }
                        row
                    }
                    None => match pending.domain(domain.canonical()) {
                        Some(row) => row.clone(),
                        None => {
                            let d = Domain::parse_hosted(domain.display(), own_hostname)
                                .map_err(|e| error(n, format!("`{domain}` {e}")))?;
                            plan.domains
                                .push((d.canonical().to_string(), d.display().to_string()));
                            pending.add_domain(d.canonical(), d.display())
                        }
                    },
                };
                // Mailboxes are looked up before aliases: an alias on a
                // mailbox's address would be imported and never used
                // (Postfix's virtual maps would take it first). Pending
                // domains (negative ids) have no mailboxes.
                if !local.is_empty()
                    && row.id.get() > 0
                    && dir
                        .meta()
                        .account(row.id, &local)
                        .await
                        .map_err(store(n))?
                        .is_some()
                {
                    return Err(error(
                        n,
                        format!(
                            "{pattern} is a mailbox: an alias there would never be used; forward the \
                             mailbox instead (postroom user forward {pattern} ...), then import the rest"
                        ),
                    ));
                }
                if local.is_empty()
                    && targets
                        .iter()
                        .any(|t| !t.to_lowercase().ends_with(&format!("@{}", row.name)))
                {
                    plan.warnings.push((
                        n,
                        format!(
                            "a catch-all that forwards outside sends every spam for {} onward, and gets this \
                             server blocklisted",
                            row.display
                        ),
                    ));
                }
                pending.add_alias_targets(row.id, &local, targets);
                plan.lines
                    .push(format!("alias {pattern} -> {}", targets.join(",")));
                plan.aliases.push(ImportedAlias {
                    domain: row.name.clone(),
                    local: local.clone(),
                    display,
                    targets: targets.clone(),
                });
                checks.push((n, row.name.clone(), row.id, local));
            }
        }
    }
    let after = dir.with_pending(pending);
    for (n, name, id, local) in checks {
        let Some(row) = after.domain(&name).await.map_err(store(n))? else {
            continue;
        };
        debug_assert_eq!(row.id, id);
        let targets = after
            .alias_targets(id, &local)
            .await
            .map_err(store(n))?
            .unwrap_or_default();
        if let Some(why) = after
            .check_targets(
                Origin::Alias {
                    domain: &row,
                    local: &local,
                },
                &targets,
            )
            .await
            .map_err(store(n))?
        {
            return Err(error(n, format!("refused: {why}")));
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example() {
        let text = "# comment\nexample.org anything\ndev@abc.com dbrooks,testman@example.com,kent\n@abc.com catchall\n\
                    sales@abc.com a@abc.com,\n  b@abc.com\n";
        let e = parse_virtual(text, Some("abc.com")).unwrap();
        assert_eq!(e[0], VirtualEntry::Domain("example.org".into()));
        assert_eq!(
            e[1],
            VirtualEntry::Alias {
                pattern: "dev@abc.com".into(),
                targets: vec![
                    "dbrooks@abc.com".into(),
                    "testman@example.com".into(),
                    "kent@abc.com".into()
                ]
            }
        );
        assert_eq!(
            e[2],
            VirtualEntry::Alias {
                pattern: "@abc.com".into(),
                targets: vec!["catchall@abc.com".into()]
            }
        );
        assert_eq!(
            e[3],
            VirtualEntry::Alias {
                pattern: "sales@abc.com".into(),
                targets: vec!["a@abc.com".into(), "b@abc.com".into()]
            }
        );
        assert!(parse_virtual("dev kent\n", None).is_err());
        assert!(parse_virtual("dev@abc.com\n", None).is_err());
    }

    #[test]
    fn bad_local_parts_domains_and_targets_name_their_line() {
        let e =
            parse_virtual("ok@abc.com kent@abc.com\nbad..local@abc.com kent@abc.com\n", None).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("bad local part"), "{}", e.message);
        let e = parse_virtual("# c\n\nx@bad_domain.com kent@abc.com\n", None).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("bad domain"), "{}", e.message);
        let e = parse_virtual("x@abc.com kent@abc.com,a@@b\n", None).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("target `a@@b`"), "{}", e.message);
        let e = parse_virtual(
            "x@abc.com a\nexa mple.com x\nbad_dom.example anything\n",
            Some("abc.com"),
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{}", e.message);
    }

    #[test]
    fn reading_is_capped_and_wants_utf8() {
        assert_eq!(
            read_virtual(&b"a@b.com c@d.com\n"[..]).unwrap(),
            "a@b.com c@d.com\n"
        );
        let e = read_virtual(&b"a@b.com c@d.com\nx@b.com \xff\xfe\n"[..]).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        // An endless input (/dev/zero) stops at the first line.
        let e = read_virtual(std::io::repeat(0)).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("longer than"), "{}", e.message);
        let e = read_virtual(std::io::repeat(b'\n')).unwrap_err();
        assert!(e.message.contains("larger than 64 MiB"), "{}", e.message);
        let e = read_virtual(&b"a@b.com\0 c@d.com\n"[..]).unwrap_err();
        assert!(e.message.contains("NUL"), "{}", e.message);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5669_7274),
            ..Default::default()
        })]

        /// No input panics, and an error always names a line of the input.
        #[test]
        fn any_bytes_are_read_and_parsed_without_panic(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"@.,# \t\nabcx-_\\\"".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..400,
            ),
            origin in proptest::option::of(proptest::sample::select(vec!["abc.com", "b\u{fc}cher.example"])),
        ) {
            let lines = bytes.split(|b| *b == b'\n').count();
            match read_virtual(&bytes[..]) {
                Err(e) => proptest::prop_assert!(e.line >= 1 && e.line <= lines, "{:?}", e),
                Ok(text) => {
                    if let Err(e) = parse_virtual_lines(&text, origin) {
                        proptest::prop_assert!(e.line >= 1 && e.line <= lines, "{:?}", e);
                    }
                }
            }
        }
    }

    mod plan {
        use super::super::*;
        use postroom_store::Store;

        async fn setup() -> (tempfile::TempDir, Directory) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let db = store.meta();
            let d = db.add_domain("abc.com", "abc.com", None).await.unwrap();
            db.add_domain("abc.net", "abc.net", Some("abc.com"))
                .await
                .unwrap();
            db.add_account(d.id, "kent", "kent", None, None).await.unwrap();
            db.add_alias_targets(d.id, "a", "a", &["b@abc.com".into()])
                .await
                .unwrap();
            (dir, Directory::new(store.meta_handle(), None))
        }

        async fn plan(d: &Directory, text: &str) -> Result<ImportPlan, ParseError> {
            plan_import(d, &parse_virtual_lines(text, Some("abc.com"))?, "mx.abc.com").await
        }

        #[tokio::test]
        async fn an_alias_on_a_mailbox_is_refused_with_its_line() {
            let (_t, d) = setup().await;
            let e = plan(&d, "sales kent\nKent@abc.com kent@elsewhere.example\n")
                .await
                .unwrap_err();
            assert_eq!(e.line, 2, "{}", e.message);
            assert!(e.message.contains("is a mailbox"), "{}", e.message);
            // A new domain's addresses are no mailboxes yet.
            plan(&d, "kent@new.example kent@abc.com\n").await.unwrap();
        }

        #[tokio::test]
        async fn cycles_through_the_file_and_the_store_are_refused_with_their_line() {
            let (_t, d) = setup().await;
            // b -> a exists in the store as a -> b.
            let e = plan(&d, "x kent\nb a\n").await.unwrap_err();
            assert_eq!(e.line, 2, "{}", e.message);
            assert!(e.message.contains("refers back"), "{}", e.message);
            // Within the file, the later line closes it, but the first
            // checked is reported: all or nothing either way.
            let e = plan(&d, "p q\nq p\n").await.unwrap_err();
            assert!(e.message.contains("refers back"), "{}", e.message);
            // Nothing was written.
            assert!(d
                .meta()
                .alias(postroom_store::DomainId(1), "x")
                .await
                .unwrap()
                .is_none());
        }

        #[tokio::test]
        async fn domains_are_checked_as_domain_add_checks_them() {
            let (_t, d) = setup().await;
            for (text, why) in [
                ("mail.localhost anything\n", "localhost"),
                ("x@intranet kent@abc.com\n", "single label"),
                ("mx.abc.com anything\n", "own host name"),
                ("x@127.0.0.1 kent@abc.com\n", "IP address"),
                ("x@abc.net kent@abc.com\n", "alias of abc.com"),
            ] {
                let e = plan(&d, &format!("ok kent\n{text}")).await.unwrap_err();
                assert_eq!(e.line, 2, "{text}");
                assert!(e.message.contains(why), "{text}: {}", e.message);
            }
            let p = plan(
                &d,
                "new.example anything\nx@new.example kent@abc.com\n@other.example kent@abc.com\n",
            )
            .await
            .unwrap();
            assert_eq!(
                p.domains,
                [
                    ("new.example".to_string(), "new.example".to_string()),
                    ("other.example".to_string(), "other.example".to_string())
                ]
            );
            assert_eq!(p.aliases.len(), 2);
        }
    }
}

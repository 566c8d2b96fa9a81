//! `postroom import virtual`: Postfix virtual alias maps
//! (`/etc/postfix/virtual/addresses` in the seed) into aliases.
//!
//! Each line is `pattern targets`: the pattern `user@domain`, `@domain`
//! (catch-all) or a bare domain (a virtual alias domain declaration); the
//! targets separated by commas or spaces. Bare local names on either side
//! are qualified with the `--origin` domain, as Postfix's `myorigin` does.

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

pub fn parse_virtual(text: &str, origin: Option<&str>) -> Result<Vec<VirtualEntry>, ParseError> {
    let mut entries = Vec::new();
    let qualify = |name: &str, line: usize| -> Result<String, ParseError> {
        if name.contains('@') {
            Ok(name.to_string())
        } else {
            match origin {
                Some(o) => Ok(format!("{name}@{o}")),
                None => Err(ParseError {
                    line,
                    message: format!("`{name}` has no domain: pass --origin DOMAIN"),
                }),
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
            return Err(ParseError {
                line: n,
                message: format!("`{pattern}` has no targets"),
            });
        }
        if !pattern.contains('@') && pattern.contains('.') {
            entries.push(VirtualEntry::Domain(pattern.to_string()));
            continue;
        }
        let pattern = qualify(pattern, n)?;
        let targets = rest
            .split([',', ' ', '\t'])
            .filter(|t| !t.is_empty())
            .map(|t| qualify(t, n))
            .collect::<Result<Vec<_>, _>>()?;
        entries.push(VirtualEntry::Alias { pattern, targets });
    }
    Ok(entries)
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
}

//! Folder roles: where a delivery goes, named by what the folder is for
//! (RFC 6154 special use) rather than by its English name, so a user who
//! renames "Junk" to "Spam" still gets filtered mail there, and one who
//! deletes it gets it in INBOX instead of a failed delivery. The one place
//! that names the roles; `directory::DEFAULT_FOLDERS` gives them names.

/// An RFC 6154 2 special-use attribute that a delivery can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Junk,
    Trash,
    Archive,
}

impl SpecialUse {
    /// The attribute as IMAP LIST shows it and the store keeps it.
    pub const fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// The role an attribute names (case-insensitive, RFC 6154 2: the
    /// attributes are atoms, compared as IMAP flags are).
    pub fn from_attribute(s: &str) -> Option<SpecialUse> {
        [
            SpecialUse::Sent,
            SpecialUse::Drafts,
            SpecialUse::Junk,
            SpecialUse::Trash,
            SpecialUse::Archive,
        ]
        .into_iter()
        .find(|u| u.attribute().eq_ignore_ascii_case(s))
    }
}

/// The folder a local copy is committed into, resolved inside the commit
/// (so a folder renamed or deleted meanwhile cannot fail it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderTarget {
    /// INBOX (RFC 9051 5.1: every account has one; it cannot be deleted).
    Inbox,
    /// The account's folder with this special use; INBOX when it has none
    /// (the user deleted it, or took the attribute off). Filtered mail and
    /// the server's Sent copy are never refused for a missing folder.
    Role(SpecialUse),
    /// A folder by its name (APPEND-like cases: the client named it). A
    /// missing one fails the delivery: the client is told so.
    Named(String),
}

impl FolderTarget {
    /// The form kept in the store for a held local delivery
    /// (`outbound.local_folder`): `INBOX`, the attribute (`\Junk`), or
    /// `=name`.
    pub fn encode(&self) -> String {
        match self {
            FolderTarget::Inbox => "INBOX".into(),
            FolderTarget::Role(u) => u.attribute().into(),
            FolderTarget::Named(n) => format!("={n}"),
        }
    }

    /// The target [`encode`](Self::encode) wrote; anything else is INBOX,
    /// the one folder every account has.
    pub fn decode(s: &str) -> FolderTarget {
        if let Some(name) = s.strip_prefix('=') {
            return FolderTarget::Named(name.to_string());
        }
        match SpecialUse::from_attribute(s) {
            Some(u) => FolderTarget::Role(u),
            None => FolderTarget::Inbox,
        }
    }
}

impl std::fmt::Display for FolderTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FolderTarget::Inbox => f.write_str("INBOX"),
            FolderTarget::Role(u) => f.write_str(u.attribute()),
            FolderTarget::Named(n) => write!(f, "folder {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip() {
        for t in [
            FolderTarget::Inbox,
            FolderTarget::Role(SpecialUse::Junk),
            FolderTarget::Role(SpecialUse::Sent),
            FolderTarget::Named("Lists/rust".into()),
            FolderTarget::Named("\\Junk".into()),
        ] {
            assert_eq!(FolderTarget::decode(&t.encode()), t);
        }
        assert_eq!(FolderTarget::decode("nonsense"), FolderTarget::Inbox);
        assert_eq!(SpecialUse::from_attribute("\\junk"), Some(SpecialUse::Junk));
    }
}

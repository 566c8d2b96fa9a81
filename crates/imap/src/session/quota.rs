//! GETQUOTA and GETQUOTAROOT (RFC 9208).

use std::fmt::Write as _;

use imap_codec::imap_types::mailbox::Mailbox;

use super::Session;
use crate::format::{mailbox as write_mailbox, Lossless};

impl Session {
    /// The account's quota as a QUOTA response, or nothing without a quota.
    pub(super) fn quota_line(&self) -> String {
        let id = self.account_id();
        let used = self.store.db.usage(id).unwrap_or(0);
        match self
            .store
            .db
            .account_by_id(id)
            .ok()
            .flatten()
            .and_then(|a| a.quota)
        {
            // RFC 9208 5.1: STORAGE in units of 1024 octets.
            Some(l) => format!("* QUOTA \"\" (STORAGE {} {})\r\n", (used + 1023) / 1024, l / 1024),
            None => String::new(),
        }
    }

    pub(super) fn quota_root(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = self.mailbox_name(mailbox);
        if self.folder(&name).is_none() {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        }
        let quota = self.quota_line();
        let mut out = b"* QUOTAROOT ".to_vec();
        write_mailbox(&mut out, &name, self.utf8 || self.rev2);
        // Without a quota the mailbox has no quota root (RFC 9208 4.3.3).
        if !quota.is_empty() {
            out.extend_from_slice(b" \"\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(quota.as_bytes());
        let _ = write!(Lossless(&mut out), "{tag} OK GETQUOTAROOT completed\r\n");
        self.send(out);
    }
}

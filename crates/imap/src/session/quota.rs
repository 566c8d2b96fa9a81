//! GETQUOTA and GETQUOTAROOT (RFC 9208).

use crate::wait::wait;
use std::fmt::Write as _;

use imap_codec::imap_types::mailbox::Mailbox;

use postroom_store::StoreError;

use super::Session;
use crate::format::{mailbox as write_mailbox, Lossless};

impl Session {
    /// The account's quota as a QUOTA response, or nothing without a quota.
    pub(super) fn quota_line(&self) -> Result<String, StoreError> {
        let id = self.account_id();
        // An account deleted meanwhile has no quota (and stores nothing).
        let Some(limit) = wait(self.store.meta().account_by_id(id))?.and_then(|a| a.quota) else {
            return Ok(String::new());
        };
        let used = wait(self.store.meta().usage(id))?;
        // RFC 9208 5.1: STORAGE in units of 1024 octets.
        Ok(format!(
            "* QUOTA \"\" (STORAGE {} {})\r\n",
            (used + 1023) / 1024,
            limit / 1024
        ))
    }

    pub(super) fn quota_root(&mut self, tag: &str, mailbox: &Mailbox<'_>) -> Result<(), StoreError> {
        let name = self.mailbox_name(mailbox);
        if self.folder(&name)?.is_none() {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return Ok(());
        }
        let quota = self.quota_line()?;
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
        Ok(())
    }
}

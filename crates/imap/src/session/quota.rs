//! GETQUOTA and GETQUOTAROOT (RFC 9208): the first commands done the
//! sans-IO way ([`crate::storage`]): the dispatch asks the store for the
//! quota, and these format the answer.

use std::fmt::Write as _;

use imap_codec::imap_types::mailbox::Mailbox;

use super::{Asked, Session};
use crate::format::{mailbox as write_mailbox, Lossless};
use crate::storage::Query;

/// The account's quota as a QUOTA response, or nothing without a quota.
fn quota_line(quota: Option<(i64, i64)>) -> String {
    match quota {
        // RFC 9208 5.1: STORAGE in units of 1024 octets.
        Some((used, limit)) => format!(
            "* QUOTA \"\" (STORAGE {} {})\r\n",
            (used + 1023) / 1024,
            limit / 1024
        ),
        None => String::new(),
    }
}

impl Session {
    /// GETQUOTA: the quota is asked of the store ([`Query::Quota`]).
    pub(super) fn quota(&mut self, tag: String, root: String) {
        let query = Query::Quota {
            account_id: self.account_id(),
            folder: None,
        };
        self.ask(Asked::GetQuota { tag, root }, query);
    }

    /// GETQUOTAROOT: the quota and the mailbox are asked of the store.
    pub(super) fn quota_root(&mut self, tag: String, mailbox: &Mailbox<'_>) {
        let name = self.mailbox_name(mailbox);
        let query = Query::Quota {
            account_id: self.account_id(),
            folder: Some(name.clone()),
        };
        self.ask(Asked::GetQuotaRoot { tag, name }, query);
    }

    /// GETQUOTA: the one quota root is `""`, and only with a quota.
    pub(super) fn get_quota(&mut self, tag: &str, root: &str, quota: Option<(i64, i64)>) {
        let line = quota_line(quota);
        if root.is_empty() && !line.is_empty() {
            self.send(line.into_bytes());
            self.tagged(tag, "OK", "GETQUOTA completed");
        } else {
            self.tagged(tag, "NO", "[NONEXISTENT] No such quota root");
        }
    }

    pub(super) fn get_quota_root(&mut self, tag: &str, name: &str, exists: bool, quota: Option<(i64, i64)>) {
        if !exists {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        }
        let quota = quota_line(quota);
        let mut out = b"* QUOTAROOT ".to_vec();
        write_mailbox(&mut out, name, self.utf8 || self.rev2);
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

#[cfg(test)]
mod tests {
    use super::quota_line;

    #[test]
    fn quota_in_kibibytes_rounded_up() {
        assert_eq!(quota_line(None), "");
        assert_eq!(
            quota_line(Some((0, 1 << 20))),
            "* QUOTA \"\" (STORAGE 0 1024)\r\n"
        );
        assert_eq!(quota_line(Some((1, 4096))), "* QUOTA \"\" (STORAGE 1 4)\r\n");
    }
}

//! APPEND (RFC 9051 6.3.12), with UIDPLUS's APPENDUID (RFC 4315): the
//! message is handed to the store ([`Query::Append`]); [`Session::appended`]
//! answers.

use std::fmt::Write as _;

use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

use super::{flag_bits, Asked, Session, State, Then};
use crate::format::Lossless;
use crate::storage::{Appended, Message, Query};

impl Session {
    pub(super) fn append(
        &mut self,
        tag: String,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<i64>,
        message: Message,
    ) {
        if message.len_and_head().0 == 0 {
            self.tagged(&tag, "NO", "Empty message");
            return;
        }
        let (flags, keywords) = flag_bits(flags);
        let query = Query::Append {
            account_id: self.account_id(),
            name: self.mailbox_name(mailbox),
            flags,
            keywords: keywords.join(" "),
            date,
            message,
        };
        self.ask(Asked::Append { tag }, query);
    }

    /// APPEND's answer: OK with APPENDUID (RFC 4315 3), after announcing
    /// the new message when it went to the selected mailbox.
    pub(super) fn appended(&mut self, tag: &str, appended: Appended) {
        let (folder_id, uidvalidity, uid) = match appended {
            Appended::NoSuchFolder => {
                self.tagged(tag, "NO", "[TRYCREATE] No such mailbox");
                return;
            }
            Appended::OverQuota => {
                self.tagged(tag, "NO", "[OVERQUOTA] Quota exceeded");
                return;
            }
            Appended::Stored {
                folder_id,
                uidvalidity,
                uid,
            } => (folder_id, uidvalidity, uid),
        };
        if matches!(&self.state, State::Selected(s) if s.folder_id == folder_id) {
            // The message is stored: APPEND succeeded whatever the refresh
            // does. Announcing it here is a courtesy (RFC 9051 6.3.12 lets
            // the server wait); when the read fails, the next command's
            // refresh announces it, so the failure is logged, not answered.
            let then = Then::Appended {
                tag: tag.to_string(),
                uidvalidity,
                uid,
            };
            if self.ask_refresh(false, then) {
                return;
            }
        }
        self.append_ok(tag, Vec::new(), uidvalidity, uid);
    }

    /// APPEND's OK, after `out` (the new message announced).
    pub(super) fn append_ok(
        &mut self,
        tag: &str,
        mut out: Vec<u8>,
        uidvalidity: i64,
        uid: postroom_store::Uid,
    ) {
        let _ = write!(
            Lossless(&mut out),
            "{tag} OK [APPENDUID {uidvalidity} {uid}] APPEND completed\r\n"
        );
        self.send(out);
    }
}

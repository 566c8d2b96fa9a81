//! APPEND (RFC 9051 6.3.12), with UIDPLUS's APPENDUID (RFC 4315).

use crate::wait::wait;
use std::fmt::Write as _;

use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use postroom_store::folders::Upload;
use postroom_store::mailbox::FolderRow;
use postroom_store::{StoreError, Uid};

use super::{flag_bits, Session, State};
use crate::format::Lossless;

/// An APPEND's message: in memory, or written to a file as it arrived.
pub(super) enum Body {
    Bytes(Vec<u8>),
    Upload(Upload),
}

impl Session {
    pub(super) fn append(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<i64>,
        body: Body,
    ) -> Result<(), StoreError> {
        let name = self.mailbox_name(mailbox);
        let Some(f) = self.folder(&name)? else {
            self.tagged(tag, "NO", "[TRYCREATE] No such mailbox");
            return Ok(());
        };
        let (len, head) = match &body {
            Body::Bytes(d) => (d.len() as u64, &d[..]),
            Body::Upload(w) => (w.len(), w.head()),
        };
        if len == 0 {
            self.tagged(tag, "NO", "Empty message");
            return Ok(());
        }
        if let Some(uid) = self.server_sent_copy(&f, head)? {
            // The server saved this message at submission already; the
            // client's copy would be a duplicate (the issue's "move a copy to
            // Sent" done once). Its UID is the APPENDUID (RFC 4315 3).
            self.appended(tag, &f, uid);
            return Ok(());
        }
        let id = self.account_id();
        if let Some(quota) = wait(self.store.meta().account_by_id(id))?.and_then(|a| a.quota) {
            let used = wait(self.store.meta().usage(id))?;
            if used.saturating_add(i64::try_from(len).unwrap_or(i64::MAX)) > quota {
                self.tagged(tag, "NO", "[OVERQUOTA] Quota exceeded");
                return Ok(());
            }
        }
        let (bits, keywords) = flag_bits(flags);
        let keywords = keywords.join(" ");
        let result = match body {
            Body::Bytes(data) => wait(self.store.append(&f, &data, bits, &keywords, date)),
            Body::Upload(w) => wait(self.store.append_upload(&f, w, bits, &keywords, date)),
        };
        self.appended(tag, &f, result?);
        Ok(())
    }

    /// APPEND's OK with APPENDUID (RFC 4315 3), after announcing the new
    /// message when it went to the selected mailbox.
    pub(super) fn appended(&mut self, tag: &str, f: &FolderRow, uid: Uid) {
        let mut out = Vec::new();
        if matches!(&self.state, State::Selected(s) if s.folder_id == f.id) {
            // The message is stored: APPEND succeeded whatever this does.
            // Announcing it here is a courtesy (RFC 9051 6.3.12 lets the
            // server wait); when the read fails, the next command's
            // refresh announces it, so the failure is logged, not answered.
            if let Err(e) = self.refresh(false, &mut out) {
                self.log_store_error("APPEND", &e);
            }
        }
        let _ = write!(
            Lossless(&mut out),
            "{tag} OK [APPENDUID {} {uid}] APPEND completed\r\n",
            f.uidvalidity
        );
        self.send(out);
    }

    /// The server-side Sent copy of this message, when `folder` is the
    /// \Sent folder and one was made in the last few minutes.
    pub(super) fn server_sent_copy(
        &self,
        folder: &FolderRow,
        data: &[u8],
    ) -> Result<Option<Uid>, StoreError> {
        if folder.special_use.as_deref() != Some("\\Sent") {
            return Ok(None);
        }
        let Some(message_id) = postroom_core::header::header_value(data, "message-id") else {
            return Ok(None);
        };
        wait(self.store.meta().recent_sent_copy(folder.id, &message_id))
    }
}

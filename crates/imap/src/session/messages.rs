//! The selected state's message commands: FETCH, STORE, SEARCH, COPY,
//! MOVE, EXPUNGE, CLOSE and UNSELECT.

use crate::wait::wait;
use std::fmt::Write as _;

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use postroom_store::folders::FlagOp;
use postroom_store::{StoreError, Uid};

use super::{flag_bits, Session, State};
use crate::fetch;
use crate::format::{uid_list, uid_set, Lossless};
use crate::search;
use crate::selected::Selected;
use crate::sequence::{modseq_arg, resolve_seq, resolve_uid};

impl Session {
    /// CLOSE: expunges silently (unless read-only) and deselects
    /// (RFC 9051 6.4.1).
    /// When the expunge fails the mailbox stays selected (and its
    /// messages stay), so the client can try again.
    pub(super) fn close(&mut self, tag: &str) -> Result<(), StoreError> {
        if let State::Selected(sel) = &self.state {
            if !sel.read_only {
                let deleted = deleted_uids(sel);
                wait(self.store.expunge(sel.folder_id, &deleted))?;
            }
        }
        self.state = State::Authenticated;
        self.tagged(tag, "OK", "CLOSE completed");
        Ok(())
    }

    /// UNSELECT: deselects without expunging (RFC 3691).
    pub(super) fn unselect(&mut self, tag: &str) {
        self.state = State::Authenticated;
        self.tagged(tag, "OK", "UNSELECT completed");
    }

    pub(super) fn expunge(
        &mut self,
        tag: &str,
        uids: Option<imap_codec::imap_types::sequence::SequenceSet>,
    ) -> Result<(), StoreError> {
        let mut out = Vec::new();
        let State::Selected(sel) = &mut self.state else {
            return Ok(());
        };
        if sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return Ok(());
        }
        let mut deleted = deleted_uids(sel);
        if let Some(set) = uids {
            let allowed = resolve_uid(&set, sel);
            deleted.retain(|u| allowed.contains(u));
        }
        wait(self.store.expunge(sel.folder_id, &deleted))?;
        sel.remove(&deleted, &mut out);
        // The expunge is done and announced: a failure to read what else
        // changed fails the command, with the EXPUNGEs sent first.
        if let Err(e) = self.refresh(true, &mut out) {
            self.send(out);
            return Err(e);
        }
        let hms = match &self.state {
            State::Selected(s) if s.condstore => format!("[HIGHESTMODSEQ {}] ", s.highestmodseq),
            _ => String::new(),
        };
        let _ = write!(Lossless(&mut out), "{tag} OK {hms}EXPUNGE completed\r\n");
        self.send(out);
        Ok(())
    }

    pub(super) fn search(
        &mut self,
        tag: &str,
        criteria: &[imap_codec::imap_types::search::SearchKey<'_>],
        uid: bool,
        return_opts: Option<&[String]>,
    ) -> Result<(), StoreError> {
        self.announce(uid)?;
        let mut out = Vec::new();
        let State::Selected(sel) = &self.state else {
            return Ok(());
        };
        let store = self.store.clone();
        let folder_id = sel.folder_id;
        let content = criteria.iter().any(search::needs_content);
        let body = criteria.iter().any(search::needs_body);
        // Header keys only: every message's header block at once, mostly
        // from the server-wide cache, instead of each whole message.
        let heads: Vec<Option<std::sync::Arc<[u8]>>> = if content && !body {
            let uids: Vec<Uid> = sel.msgs().iter().map(|m| m.uid).collect();
            wait(store.header_blocks(folder_id, &uids))?
        } else {
            Vec::new()
        };
        let msgs = sel.msgs();
        // The first failed read: a message that cannot be read is not one
        // that does not match, so the search fails instead.
        let failed: std::cell::RefCell<Option<StoreError>> = std::cell::RefCell::new(None);
        let load = |i: usize| -> Option<std::sync::Arc<[u8]>> {
            if !body {
                return heads.get(i).cloned().flatten();
            }
            let read = wait(store.meta().message(folder_id, msgs.get(i)?.uid))
                .and_then(|row| row.map(|row| store.message_bytes(&row)).transpose());
            match read {
                Ok(bytes) => bytes.map(Into::into),
                Err(e) => {
                    failed.borrow_mut().get_or_insert(e);
                    None
                }
            }
        };
        // UIDs or message numbers: both 32-bit (RFC 9051 2.3.1).
        let mut hits: Vec<u32> = Vec::new();
        let mut max_modseq = postroom_store::ModSeq::default();
        let uses_modseq = criteria.iter().any(has_modseq);
        for i in 0..sel.msgs().len() {
            let mut raw = None;
            if criteria
                .iter()
                .all(|k| search::matches(k, sel, i, &load, &mut raw))
            {
                let m = &sel.msgs()[i];
                max_modseq = max_modseq.max(m.modseq);
                hits.push(if uid { m.uid.get() } else { i as u32 + 1 });
            }
            if failed.borrow().is_some() {
                break;
            }
        }
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        let w = &mut Lossless(&mut out);
        if self.rev2 || return_opts.is_some() {
            // RFC 4731 / RFC 9051 7.3.4: ESEARCH, with the asked-for parts
            // (RETURN () means ALL).
            let opts = return_opts.unwrap_or(&[]);
            let want = |o: &str| opts.iter().any(|x| x == o) || (opts.is_empty() && o == "ALL");
            let _ = write!(w, "* ESEARCH (TAG \"{tag}\")");
            if uid {
                let _ = write!(w, " UID");
            }
            if let (true, Some(min)) = (want("MIN"), hits.iter().min()) {
                let _ = write!(w, " MIN {min}");
            }
            if let (true, Some(max)) = (want("MAX"), hits.iter().max()) {
                let _ = write!(w, " MAX {max}");
            }
            if want("COUNT") {
                let _ = write!(w, " COUNT {}", hits.len());
            }
            if want("ALL") && !hits.is_empty() {
                let _ = write!(w, " ALL {}", crate::format::number_set(&hits));
            }
            if uses_modseq && !hits.is_empty() {
                let _ = write!(w, " MODSEQ {max_modseq}");
            }
            let _ = write!(w, "\r\n");
        } else {
            let _ = write!(w, "* SEARCH");
            for h in &hits {
                let _ = write!(w, " {h}");
            }
            if uses_modseq && !hits.is_empty() {
                let _ = write!(w, " (MODSEQ {max_modseq})");
            }
            let _ = write!(w, "\r\n");
        }
        let _ = write!(w, "{tag} OK SEARCH completed\r\n");
        self.send(out);
        Ok(())
    }

    /// Folds in what changed elsewhere and sends it at once, ahead of the
    /// command's own responses (so that no early answer can lose it).
    fn announce(&mut self, allow_expunge: bool) -> Result<(), StoreError> {
        let mut out = Vec::new();
        self.refresh(allow_expunge, &mut out)?;
        self.send(out);
        Ok(())
    }

    /// The indices a sequence set names; `None` (answered BAD) for a
    /// message number past the last.
    fn targets(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        uid: bool,
    ) -> Option<Vec<usize>> {
        let State::Selected(sel) = &self.state else {
            return None;
        };
        if uid {
            return Some(crate::sequence::resolve_uid_indices(set, sel));
        }
        let found = resolve_seq(set, sel.msgs().len());
        if found.is_none() {
            self.bad(tag, "Invalid message sequence number");
        }
        found
    }

    pub(super) fn fetch(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        items: imap_codec::imap_types::fetch::MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[imap_codec::imap_types::command::FetchModifier],
    ) -> Result<(), StoreError> {
        self.announce(uid)?;
        let Some(targets) = self.targets(tag, set, uid) else {
            return Ok(());
        };
        let mut out = Vec::new();
        let changed_since = modifiers.iter().find_map(|m| match m {
            imap_codec::imap_types::command::FetchModifier::ChangedSince(v) => Some(modseq_arg(v.get())),
            _ => None,
        });
        let State::Selected(sel) = &mut self.state else {
            return Ok(());
        };
        if changed_since.is_some() {
            sel.condstore = true;
            self.condstore = true;
        }
        let mut ctx = fetch::FetchContext {
            store: &self.store,
            utf8: self.utf8 || self.rev2,
            rev2: self.rev2,
        };
        match fetch::run(&mut ctx, sel, &targets, items, uid, changed_since, &mut out) {
            Ok(()) => {
                let _ = write!(Lossless(&mut out), "{tag} OK FETCH completed\r\n");
            }
            Err(fetch::FetchError::UnknownCte) => {
                let _ = write!(
                    Lossless(&mut out),
                    "{tag} NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n"
                );
            }
            Err(fetch::FetchError::Store(e)) => {
                // The messages before the one that failed are answered;
                // that one is not, never with an empty or cut body.
                self.send(out);
                return Err(e);
            }
        }
        self.send(out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_cmd(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[imap_codec::imap_types::command::StoreModifier],
    ) -> Result<(), StoreError> {
        self.announce(uid)?;
        let Some(targets) = self.targets(tag, set, uid) else {
            return Ok(());
        };
        let mut out = Vec::new();
        let State::Selected(sel) = &mut self.state else {
            return Ok(());
        };
        if sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return Ok(());
        }
        let unchanged_since = modifiers
            .iter()
            .map(|m| match m {
                imap_codec::imap_types::command::StoreModifier::UnchangedSince(v) => modseq_arg(*v),
            })
            .next();
        if unchanged_since.is_some() {
            sel.condstore = true;
            self.condstore = true;
        }
        let (bits, keywords) = flag_bits(flags);
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let uids: Vec<Uid> = targets.iter().map(|i| sel.msgs()[*i].uid).collect();
        let (changed, refused) =
            wait(
                self.store
                    .meta()
                    .store_flags(sel.folder_id, &uids, op, bits, &keywords, unchanged_since),
            )?;
        let adopted = wait(self.store.note_flag_changes(sel.folder_id, &changed))
            .is_some_and(|(old, new)| sel.adopt(&old, &new));
        for c in changed.iter().filter(|_| !adopted) {
            if let Some(i) = sel.index_of(c.uid) {
                let m = &mut sel.msgs_mut()[i];
                m.flags = c.flags;
                m.keywords = c.keywords.clone();
                m.modseq = c.modseq;
            }
        }
        if op != FlagOp::Remove {
            sel.learn_keywords(keywords.iter().map(String::as_str), &mut out);
        }
        // Report every target's flags (unless .SILENT); with CONDSTORE, a
        // silent STORE still reports MODSEQ (RFC 7162 3.1.3).
        // Sets, not scans: `STORE 1:* ...` on a large mailbox stays linear.
        let refused_set: std::collections::HashSet<Uid> = refused.iter().copied().collect();
        let changed_set: std::collections::HashSet<Uid> = changed.iter().map(|c| c.uid).collect();
        for &i in &targets {
            let m = &sel.msgs()[i];
            if refused_set.contains(&m.uid) {
                continue;
            }
            let was_changed = changed_set.contains(&m.uid);
            match response {
                StoreResponse::Answer => out.extend_from_slice(sel.flags_response(i + 1, m, uid).as_bytes()),
                StoreResponse::Silent if sel.condstore && was_changed => {
                    let _ = write!(Lossless(&mut out), "* {} FETCH (", i + 1);
                    if uid {
                        let _ = write!(Lossless(&mut out), "UID {} ", m.uid);
                    }
                    let _ = write!(Lossless(&mut out), "MODSEQ ({}))\r\n", m.modseq);
                }
                StoreResponse::Silent => {}
            }
        }
        if let Some(hm) = changed.iter().map(|c| c.modseq).max() {
            sel.highestmodseq = sel.highestmodseq.max(hm);
        }
        if refused.is_empty() {
            let _ = write!(Lossless(&mut out), "{tag} OK STORE completed\r\n");
        } else {
            let set = if uid {
                uid_set(&refused)
            } else {
                let seqs: Vec<u32> = refused
                    .iter()
                    .filter_map(|u| sel.index_of(*u))
                    .map(|i| i as u32 + 1)
                    .collect();
                crate::format::number_set(&seqs)
            };
            let _ = write!(
                Lossless(&mut out),
                "{tag} OK [MODIFIED {set}] Conditional STORE failed for some\r\n"
            );
        }
        self.send(out);
        Ok(())
    }

    pub(super) fn copy(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        moving: bool,
    ) -> Result<(), StoreError> {
        self.announce(uid)?;
        let Some(targets) = self.targets(tag, set, uid) else {
            return Ok(());
        };
        let mut out = Vec::new();
        let name = self.mailbox_name(mailbox);
        let Some(dst) = self.folder(&name)? else {
            self.tagged(tag, "NO", "[TRYCREATE] No such mailbox");
            return Ok(());
        };
        let State::Selected(sel) = &mut self.state else {
            return Ok(());
        };
        if moving && sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return Ok(());
        }
        let uids: Vec<Uid> = targets.iter().map(|i| sel.msgs()[*i].uid).collect();
        let (uidvalidity, pairs) = wait(self.store.meta().copy_messages(sel.folder_id, &uids, dst.id))?;
        let verb = if moving { "MOVE" } else { "COPY" };
        if pairs.is_empty() {
            let _ = write!(Lossless(&mut out), "{tag} OK {verb} completed\r\n");
            self.send(out);
            return Ok(());
        }
        let src: Vec<Uid> = pairs.iter().map(|p| p.0).collect();
        let new: Vec<Uid> = pairs.iter().map(|p| p.1).collect();
        let copyuid = format!("COPYUID {uidvalidity} {} {}", uid_list(&src), uid_list(&new));
        if moving {
            // RFC 6851 4.3: COPYUID in an untagged OK, then the expunges.
            let _ = write!(Lossless(&mut out), "* OK [{copyuid}] Moved\r\n");
            if let Err(e) = wait(self.store.expunge(sel.folder_id, &src)) {
                // The copies exist (COPYUID says where) but the originals
                // stay: announcing their EXPUNGE would be false. The client
                // sees a COPY and a failed MOVE, and may expunge itself.
                self.send(out);
                return Err(e);
            }
            sel.remove(&src, &mut out);
            let _ = write!(Lossless(&mut out), "{tag} OK MOVE completed\r\n");
        } else {
            let _ = write!(Lossless(&mut out), "{tag} OK [{copyuid}] COPY completed\r\n");
        }
        self.send(out);
        Ok(())
    }
}

fn deleted_uids(sel: &Selected) -> Vec<Uid> {
    sel.msgs()
        .iter()
        .filter(|m| m.flags & crate::format::DELETED != 0)
        .map(|m| m.uid)
        .collect()
}

fn has_modseq(k: &imap_codec::imap_types::search::SearchKey<'_>) -> bool {
    use imap_codec::imap_types::search::SearchKey;
    match k {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(v) => v.as_ref().iter().any(has_modseq),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::Not(a) => has_modseq(a),
        _ => false,
    }
}

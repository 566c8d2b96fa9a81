//! A selected mailbox as one session sees it: message sequence numbers, each
//! message's flags and MODSEQ, and which messages are \Recent to it. Changes
//! made elsewhere (deliveries, other sessions, POP3) are folded in by
//! [`Selected::refresh`], which writes the untagged responses that announce
//! them — EXPUNGE only where RFC 9051 7.5.1 allows it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use postroom_store::cache::FolderSnapshot;
use postroom_store::folders::MessageMeta;
use postroom_store::{FolderId, ModSeq, Uid};

use crate::format::flag_list;

/// One message as a selected mailbox shows it. Whether it is \Recent is the
/// session's own business ([`Selected::is_recent`]), so the list itself can
/// be shared.
pub type Msg = MessageMeta;

#[derive(Debug)]
pub struct Selected {
    pub folder_id: FolderId,
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highestmodseq: ModSeq,
    /// By UID. Shared with the server-wide folder cache (and so with every
    /// other session on the folder) until this session changes it: a
    /// selected 10,000-message mailbox costs a session a pointer, not
    /// 640 KB.
    msgs: Arc<Vec<Msg>>,
    /// The folder MODSEQ `msgs` was last brought up to date with (changes
    /// this session made itself may be in it already).
    synced_modseq: ModSeq,
    /// UIDs that are \Recent to this session, ascending.
    recent: Vec<Uid>,
    /// UIDs expunged elsewhere but not yet announced (no EXPUNGE may be sent
    /// during FETCH, STORE and SEARCH).
    pending_expunge: Vec<Uid>,
    /// Show \Recent (IMAP4rev1 sessions; IMAP4rev2 dropped it).
    pub show_recent: bool,
    /// Include MODSEQ in unsolicited FETCH responses (CONDSTORE enabled).
    pub condstore: bool,
    /// QRESYNC enabled: VANISHED instead of EXPUNGE.
    pub qresync: bool,
    /// Keywords this session was told of in FLAGS and PERMANENTFLAGS
    /// (RFC 3501 7.2.6, RFC 9051 7.3.5): a client learns the flags a mailbox
    /// uses from FLAGS, so a keyword is announced before any FETCH shows it.
    keywords: BTreeSet<String>,
}

impl Selected {
    /// The folder as `snap` has it; messages above `recent_above` are
    /// \Recent to this session (RFC 3501 2.3.2).
    pub fn new(
        name: String,
        read_only: bool,
        snap: &FolderSnapshot,
        recent_above: i64,
        show_recent: bool,
    ) -> Self {
        let recent = match snap.msgs.partition_point(|m| m.uid.as_i64() <= recent_above) {
            i if i < snap.msgs.len() => snap.msgs[i..].iter().map(|m| m.uid).collect(),
            _ => Vec::new(),
        };
        Selected {
            folder_id: snap.folder_id,
            name,
            read_only,
            uidvalidity: snap.uidvalidity,
            uidnext: snap.uidnext,
            highestmodseq: snap.highestmodseq,
            msgs: Arc::clone(&snap.msgs),
            synced_modseq: snap.highestmodseq,
            recent,
            pending_expunge: Vec::new(),
            show_recent,
            condstore: false,
            qresync: false,
            // Worked out once per snapshot, not at every SELECT.
            keywords: snap.keywords().clone(),
        }
    }

    pub fn msgs(&self) -> &[Msg] {
        &self.msgs
    }

    /// The list for changing: copied first if it is shared.
    pub fn msgs_mut(&mut self) -> &mut Vec<Msg> {
        Arc::make_mut(&mut self.msgs)
    }

    /// Takes `new` as the list when the list is exactly `old` (shared, not
    /// changed here, nothing pending): `new` is `old` plus a change this
    /// session just made. Spares copying the list to change it in place.
    pub fn adopt(&mut self, old: &FolderSnapshot, new: &FolderSnapshot) -> bool {
        if !Arc::ptr_eq(&self.msgs, &old.msgs)
            || self.synced_modseq != old.highestmodseq
            || !self.pending_expunge.is_empty()
        {
            return false;
        }
        self.msgs = Arc::clone(&new.msgs);
        self.synced_modseq = new.highestmodseq;
        self.highestmodseq = self.highestmodseq.max(new.highestmodseq);
        true
    }

    /// The index of a UID, if present.
    pub fn index_of(&self, uid: Uid) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn is_recent(&self, uid: Uid) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    pub fn recent_count(&self) -> usize {
        self.recent
            .iter()
            .filter(|&&u| self.index_of(u).is_some())
            .count()
    }

    /// `* FLAGS` with the system flags and the keywords in use, and the
    /// PERMANENTFLAGS that may be stored (`\*`: new keywords too).
    pub fn announce_flags(&self, out: &mut Vec<u8>) {
        let mut list = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
        for k in &self.keywords {
            list.push(' ');
            list.push_str(k);
        }
        let _ = write!(Lossy(&mut *out), "* FLAGS ({list})\r\n");
        if self.read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            let _ = write!(
                Lossy(&mut *out),
                "* OK [PERMANENTFLAGS ({list} \\*)] Flags permitted\r\n"
            );
        }
    }

    /// Announces keywords the session has not been told of yet (before
    /// the FETCH responses that show them).
    pub fn learn_keywords<'a>(&mut self, keywords: impl IntoIterator<Item = &'a str>, out: &mut Vec<u8>) {
        let mut new = false;
        for k in keywords {
            if !k.is_empty() && !self.keywords.contains(k) {
                self.keywords.insert(k.to_string());
                new = true;
            }
        }
        if new {
            self.announce_flags(out);
        }
    }

    /// `* seq FETCH (FLAGS ...)` for a flag change; with CONDSTORE always
    /// with UID and MODSEQ (RFC 7162 3.1), else with UID when `uid`.
    pub fn flags_response(&self, seq: usize, m: &Msg, uid: bool) -> String {
        let mut s = format!("* {seq} FETCH (");
        if uid || self.condstore {
            let _ = write!(s, "UID {} ", m.uid);
        }
        let _ = write!(
            s,
            "FLAGS {}",
            flag_list(m.flags, &m.keywords, self.show_recent && self.is_recent(m.uid))
        );
        if self.condstore {
            let _ = write!(s, " MODSEQ ({})", m.modseq);
        }
        s.push_str(")\r\n");
        s
    }

    /// Brings the list up to date with `snap` (the folder now) and writes
    /// what changed: FETCH for changed flags, then EXPUNGE/VANISHED when
    /// `allow_expunge` (RFC 9051 7.5.1), then EXISTS (and RECENT) for new
    /// messages. New messages above `new_recent` are \Recent to this
    /// session. When everything has been announced the list is the
    /// snapshot's again (shared, not copied).
    pub fn sync(
        &mut self,
        snap: &Arc<FolderSnapshot>,
        allow_expunge: bool,
        new_recent: i64,
        out: &mut Vec<u8>,
    ) {
        self.uidnext = self.uidnext.max(snap.uidnext);
        self.highestmodseq = self.highestmodseq.max(snap.highestmodseq);
        let unchanged = snap.highestmodseq == self.synced_modseq || Arc::ptr_eq(&snap.msgs, &self.msgs);
        if unchanged && (self.pending_expunge.is_empty() || !allow_expunge) {
            return;
        }
        self.synced_modseq = snap.highestmodseq;
        let unknown: Vec<String> = snap.keywords().difference(&self.keywords).cloned().collect();
        self.learn_keywords(unknown.iter().map(String::as_str), out);
        let (old, new) = (&self.msgs, &snap.msgs);
        let last_uid = old.last().map_or(0, |m| m.uid.get());
        let mut gone: Vec<Uid> = Vec::new();
        let mut added = 0usize;
        // A UID below our highest that we do not have (never had, or
        // expunged here already): left out of the list.
        let mut left_out = false;
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) if a.uid == b.uid => {
                    // Every change takes a new MODSEQ (this session's own
                    // changes included): an equal MODSEQ is the same state,
                    // which spares comparing 10,000 keyword strings.
                    if a.modseq != b.modseq && (a.flags != b.flags || a.keywords != b.keywords) {
                        out.extend_from_slice(self.flags_response(i + 1, b, true).as_bytes());
                    }
                    i += 1;
                    j += 1;
                }
                (Some(a), b) if b.is_none_or(|b| a.uid < b.uid) => {
                    gone.push(a.uid);
                    i += 1;
                }
                (_, Some(b)) => {
                    if b.uid.get() > last_uid {
                        added += 1;
                    } else {
                        left_out = true;
                    }
                    j += 1;
                }
                _ => break,
            }
        }
        let fresh: Vec<Uid> = new[new.len() - added..]
            .iter()
            .map(|m| m.uid)
            .filter(|&u| u.as_i64() > new_recent)
            .collect();
        if gone.is_empty() || allow_expunge {
            self.announce_expunges(&gone, out);
            self.msgs = if left_out {
                let keep: Vec<Msg> = new
                    .iter()
                    .filter(|m| m.uid.get() > last_uid || old.binary_search_by_key(&m.uid, |o| o.uid).is_ok())
                    .cloned()
                    .collect();
                Arc::new(keep)
            } else {
                Arc::clone(new)
            };
            self.pending_expunge.clear();
            if !gone.is_empty() {
                let msgs = &self.msgs;
                self.recent
                    .retain(|u| msgs.binary_search_by_key(u, |m| m.uid).is_ok());
            }
        } else {
            // Keep the expunged messages (as last seen) until they may be
            // announced: message numbers must not move before then.
            let mut merged: Vec<Msg> = Vec::with_capacity(new.len() + gone.len());
            let mut g = gone.iter().peekable();
            let mut k = 0;
            for m in new.iter() {
                if m.uid.get() <= last_uid && old.binary_search_by_key(&m.uid, |o| o.uid).is_err() {
                    continue;
                }
                while let Some(&&u) = g.peek() {
                    if u > m.uid {
                        break;
                    }
                    while old[k].uid < u {
                        k += 1;
                    }
                    merged.push(old[k].clone());
                    g.next();
                }
                merged.push(m.clone());
            }
            for &u in g {
                while old[k].uid < u {
                    k += 1;
                }
                merged.push(old[k].clone());
            }
            self.msgs = Arc::new(merged);
            self.pending_expunge = gone;
        }
        self.recent.extend(fresh);
        if added > 0 {
            let _ = write!(Lossy(out), "* {} EXISTS\r\n", self.msgs.len());
            if self.show_recent {
                let _ = write!(Lossy(out), "* {} RECENT\r\n", self.recent_count());
            }
        }
    }

    /// EXPUNGE (highest first, so each number is valid when it is sent) or
    /// VANISHED for these UIDs of the current list.
    fn announce_expunges(&self, uids: &[Uid], out: &mut Vec<u8>) {
        if uids.is_empty() {
            return;
        }
        if self.qresync {
            let _ = write!(Lossy(out), "* VANISHED {}\r\n", crate::format::uid_set(uids));
            return;
        }
        let mut idx: Vec<usize> = uids.iter().filter_map(|u| self.index_of(*u)).collect();
        idx.sort_unstable_by(|a, b| b.cmp(a));
        for i in idx {
            let _ = write!(Lossy(out), "* {} EXPUNGE\r\n", i + 1);
        }
    }

    /// Removes messages this session expunged, announcing each.
    pub fn remove(&mut self, uids: &[Uid], out: &mut Vec<u8>) {
        let present: Vec<Uid> = uids
            .iter()
            .copied()
            .filter(|u| self.index_of(*u).is_some())
            .collect();
        if present.is_empty() {
            return;
        }
        self.announce_expunges(&present, out);
        let mut sorted = present;
        sorted.sort_unstable();
        self.msgs_mut().retain(|m| sorted.binary_search(&m.uid).is_err());
        self.pending_expunge.retain(|u| sorted.binary_search(u).is_err());
        self.recent.retain(|u| sorted.binary_search(u).is_err());
    }
}

struct Lossy<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Lossy<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, flags: i64, modseq: i64) -> MessageMeta {
        MessageMeta {
            uid: Uid(uid),
            flags,
            keywords: String::new(),
            modseq: ModSeq(modseq),
            size: 10,
            internal_date: 0,
        }
    }

    fn snap(msgs: Vec<MessageMeta>, uidnext: i64, hms: i64) -> Arc<FolderSnapshot> {
        Arc::new(FolderSnapshot {
            folder_id: FolderId(1),
            uidvalidity: 1,
            uidnext,
            highestmodseq: ModSeq(hms),
            msgs: Arc::new(msgs),
            keywords: Default::default(),
        })
    }

    /// SELECT takes the folder's keywords from the shared snapshot, where
    /// they are worked out once, instead of reading every message's
    /// (issue #9: that made SELECT of a 100,000-message INBOX 2.3 times
    /// slower than of a small one). A snapshot whose set is already known
    /// is used as it is.
    #[test]
    fn select_reads_the_keywords_once_per_snapshot() {
        let mut with_kw = meta(2, 0, 1);
        with_kw.keywords = "$Work".into();
        let s = snap(vec![meta(1, 0, 1), with_kw], 3, 1);
        assert_eq!(s.keywords().iter().collect::<Vec<_>>(), ["$Work"]);
        let known = snap(vec![meta(1, 0, 1)], 2, 1);
        known
            .keywords
            .set(["$Known".to_string()].into_iter().collect())
            .unwrap();
        let sel = Selected::new("INBOX".into(), false, &known, i64::MAX, false);
        let mut out = Vec::new();
        sel.announce_flags(&mut out);
        let flags = String::from_utf8(out).unwrap();
        assert!(flags.contains("$Known"), "{flags}");
    }

    #[test]
    fn expunges_wait_until_allowed_then_count_down() {
        let first = snap((1..=4).map(|u| meta(u, 0, 1)).collect(), 5, 1);
        let mut s = Selected::new("INBOX".into(), false, &first, i64::MAX, false);
        let mut out = Vec::new();
        let later = snap(vec![meta(1, 0, 1), meta(3, 1, 2), meta(5, 0, 3)], 6, 3);
        s.sync(&later, false, 4, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n* 5 EXISTS\r\n"
        );
        assert_eq!(s.msgs().len(), 5);
        assert!(s.is_recent(Uid(5)) && !s.is_recent(Uid(4)));
        out.clear();
        s.sync(&later, true, 4, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n");
        assert_eq!(
            s.msgs().iter().map(|m| m.uid.get()).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        // Everything announced: the list is the snapshot's again.
        assert!(Arc::ptr_eq(&s.msgs, &later.msgs));
    }

    #[test]
    fn own_changes_are_not_announced_again() {
        let first = snap((1..=3).map(|u| meta(u, 0, 1)).collect(), 4, 1);
        let mut s = Selected::new("INBOX".into(), false, &first, 0, true);
        assert_eq!(s.recent_count(), 3);
        s.msgs_mut()[1].flags = 1;
        s.msgs_mut()[1].modseq = ModSeq(2);
        let later = snap(vec![meta(1, 0, 1), meta(2, 1, 2), meta(3, 4, 3)], 4, 3);
        let mut out = Vec::new();
        s.sync(&later, true, i64::MAX, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Recent))\r\n"
        );
    }
}

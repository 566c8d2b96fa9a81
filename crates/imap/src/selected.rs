//! A selected mailbox as one session sees it: message sequence numbers, each
//! message's flags and MODSEQ, and which messages are \Recent to it. Changes
//! made elsewhere (deliveries, other sessions, POP3) are folded in by
//! [`Selected::refresh`], which writes the untagged responses that announce
//! them — EXPUNGE only where RFC 9051 7.5.1 allows it.

use std::fmt::Write as _;

use postroom_store::folders::{FolderChanges, MessageMeta};

use crate::format::flag_list;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub uid: i64,
    pub flags: i64,
    pub keywords: String,
    pub modseq: i64,
    pub size: i64,
    pub internal_date: i64,
    pub recent: bool,
}

impl Msg {
    pub fn from_meta(m: MessageMeta, recent: bool) -> Self {
        Msg {
            uid: m.uid,
            flags: m.flags,
            keywords: m.keywords,
            modseq: m.modseq,
            size: m.size,
            internal_date: m.internal_date,
            recent,
        }
    }
}

#[derive(Debug)]
pub struct Selected {
    pub folder_id: i64,
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highestmodseq: i64,
    pub msgs: Vec<Msg>,
    /// UIDs expunged elsewhere but not yet announced (no EXPUNGE may be sent
    /// during FETCH, STORE and SEARCH).
    pending_expunge: Vec<i64>,
    /// Show \Recent (IMAP4rev1 sessions; IMAP4rev2 dropped it).
    pub show_recent: bool,
    /// Include MODSEQ in unsolicited FETCH responses (CONDSTORE enabled).
    pub condstore: bool,
    /// QRESYNC enabled: VANISHED instead of EXPUNGE.
    pub qresync: bool,
}

impl Selected {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        folder_id: i64,
        name: String,
        read_only: bool,
        uidvalidity: i64,
        uidnext: i64,
        highestmodseq: i64,
        msgs: Vec<Msg>,
        show_recent: bool,
    ) -> Self {
        Selected {
            folder_id,
            name,
            read_only,
            uidvalidity,
            uidnext,
            highestmodseq,
            msgs,
            pending_expunge: Vec::new(),
            show_recent,
            condstore: false,
            qresync: false,
        }
    }

    /// The index of a UID, if present.
    pub fn index_of(&self, uid: i64) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn recent_count(&self) -> usize {
        self.msgs.iter().filter(|m| m.recent).count()
    }

    pub fn flags_response(&self, seq: usize, m: &Msg, uid: bool) -> String {
        let mut s = format!("* {seq} FETCH (");
        if uid {
            let _ = write!(s, "UID {} ", m.uid);
        }
        let _ = write!(
            s,
            "FLAGS {}",
            flag_list(m.flags, &m.keywords, self.show_recent && m.recent)
        );
        if self.condstore {
            let _ = write!(s, " MODSEQ ({})", m.modseq);
        }
        s.push_str(")\r\n");
        s
    }

    /// Folds in what changed. `allow_expunge`: EXPUNGE responses may be sent
    /// now. `new_recent`: UIDs above this are \Recent to this session.
    pub fn apply(&mut self, changes: FolderChanges, allow_expunge: bool, new_recent: i64, out: &mut Vec<u8>) {
        let mut grew = false;
        for c in changes.changed {
            match self.index_of(c.uid) {
                Some(i) => {
                    let m = &mut self.msgs[i];
                    let same = m.flags == c.flags && m.keywords == c.keywords;
                    m.modseq = c.modseq;
                    if !same {
                        m.flags = c.flags;
                        m.keywords = c.keywords;
                        let m = self.msgs[i].clone();
                        out.extend_from_slice(self.flags_response(i + 1, &m, true).as_bytes());
                    }
                }
                None if c.uid >= self.uidnext || self.msgs.last().is_none_or(|l| c.uid > l.uid) => {
                    let recent = c.uid > new_recent;
                    self.msgs.push(Msg::from_meta(c, recent));
                    grew = true;
                }
                // Expunged here already, or a UID we never had: ignore.
                None => {}
            }
        }
        for uid in changes.expunged {
            if self.index_of(uid).is_some() && !self.pending_expunge.contains(&uid) {
                self.pending_expunge.push(uid);
            }
        }
        if allow_expunge {
            self.flush_expunges(out);
        }
        if grew {
            let _ = write!(Lossy(out), "* {} EXISTS\r\n", self.msgs.len());
            if self.show_recent {
                let _ = write!(Lossy(out), "* {} RECENT\r\n", self.recent_count());
            }
        }
        self.uidnext = self.uidnext.max(changes.uidnext);
        self.highestmodseq = self.highestmodseq.max(changes.highestmodseq);
    }

    /// Announces and removes messages expunged by others.
    pub fn flush_expunges(&mut self, out: &mut Vec<u8>) {
        let uids = std::mem::take(&mut self.pending_expunge);
        self.remove(&uids, out);
    }

    /// Removes messages this session expunged, announcing each.
    pub fn remove(&mut self, uids: &[i64], out: &mut Vec<u8>) {
        if uids.is_empty() {
            return;
        }
        if self.qresync {
            let present: Vec<i64> = uids
                .iter()
                .copied()
                .filter(|u| self.index_of(*u).is_some())
                .collect();
            self.msgs.retain(|m| !present.contains(&m.uid));
            if !present.is_empty() {
                let _ = write!(Lossy(out), "* VANISHED {}\r\n", crate::format::uid_set(&present));
            }
            return;
        }
        // Highest first, so each number is valid when it is sent.
        let mut idx: Vec<usize> = uids.iter().filter_map(|u| self.index_of(*u)).collect();
        idx.sort_unstable_by(|a, b| b.cmp(a));
        for i in idx {
            self.msgs.remove(i);
            let _ = write!(Lossy(out), "* {} EXPUNGE\r\n", i + 1);
        }
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

    fn meta(uid: i64, flags: i64, modseq: i64) -> MessageMeta {
        MessageMeta {
            uid,
            flags,
            keywords: String::new(),
            modseq,
            size: 10,
            internal_date: 0,
        }
    }

    #[test]
    fn expunges_wait_until_allowed_then_count_down() {
        let msgs = (1..=4).map(|u| Msg::from_meta(meta(u, 0, 1), false)).collect();
        let mut s = Selected::new(1, "INBOX".into(), false, 1, 5, 1, msgs, false);
        let mut out = Vec::new();
        let changes = FolderChanges {
            highestmodseq: 3,
            uidnext: 6,
            changed: vec![meta(3, 1, 2), meta(5, 0, 3)],
            expunged: vec![2, 4],
        };
        s.apply(changes, false, 4, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n* 5 EXISTS\r\n"
        );
        assert_eq!(s.msgs.len(), 5);
        out.clear();
        s.flush_expunges(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n");
        assert_eq!(s.msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 3, 5]);
    }
}

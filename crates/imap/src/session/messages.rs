//! The selected state's message commands: FETCH, STORE, SEARCH, COPY,
//! MOVE, EXPUNGE, CLOSE and UNSELECT.
//!
//! Each asks the store through [`Query`] and goes on when the answer comes
//! ([`Session::answered`]), a step at a time where it needs several: the
//! refresh before the command (`Session::command`), then the command's own
//! questions. The selected view cannot change in between (input waits
//! while a question is open), so the message indices a step computed stay
//! valid for the next.

use std::fmt::Write as _;
use std::sync::Arc;

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::search::SearchKey;
use postroom_store::folders::FlagOp;
use postroom_store::{FolderId, ModSeq, StoreError, Uid};

use super::{flag_bits, Asked, Session, State, Then};
use crate::fetch::{self, FetchJob};
use crate::format::{uid_list, uid_set, Lossless};
use crate::search;
use crate::selected::Selected;
use crate::sequence::{modseq_arg, resolve_seq, resolve_uid};
use crate::storage::{Answer, FlagsStored, Query};

/// Whole messages asked of the store at once (FETCH of bodies, SEARCH
/// BODY/TEXT): at most this many, and no more than [`BODY_OCTETS_PER_QUERY`]
/// by their sizes (at least one), so that a FETCH 1:* BODY[] of a large
/// mailbox holds a few messages at a time, not the mailbox.
pub const BODIES_PER_QUERY: usize = 32;
/// 4 MiB: a few typical attachments; a bigger message goes alone.
pub const BODY_OCTETS_PER_QUERY: i64 = 4 << 20;

/// The next few of `indices` to read whole: their UIDs.
fn body_batch(sel: &Selected, indices: impl Iterator<Item = usize>) -> Vec<Uid> {
    let mut uids = Vec::new();
    let mut octets = 0i64;
    for idx in indices.take(BODIES_PER_QUERY) {
        let m = &sel.msgs()[idx];
        if !uids.is_empty() && octets.saturating_add(m.size) > BODY_OCTETS_PER_QUERY {
            break;
        }
        octets = octets.saturating_add(m.size);
        uids.push(m.uid);
    }
    uids
}

/// A SEARCH under way.
#[derive(Debug)]
pub(super) struct SearchJob {
    tag: String,
    criteria: Vec<SearchKey<'static>>,
    uid: bool,
    return_opts: Option<Vec<String>>,
    uses_modseq: bool,
    /// The tagged OK's response code (HIGHESTMODSEQ, RFC 7162 3.1).
    code: String,
    /// UIDs or message numbers: both 32-bit (RFC 9051 2.3.1).
    hits: Vec<u32>,
    max_modseq: ModSeq,
    /// The next message index to look at.
    next: usize,
}

/// A STORE waiting for the store.
#[derive(Debug)]
pub(super) struct StoreJob {
    tag: String,
    targets: Vec<usize>,
    response: StoreResponse,
    uid: bool,
    op: FlagOp,
    keywords: Vec<String>,
    first_condstore: bool,
}

/// A COPY or MOVE under way.
#[derive(Debug)]
pub(super) struct CopyJob {
    tag: String,
    moving: bool,
    uids: Vec<Uid>,
    out: Vec<u8>,
    copyuid: String,
    /// The source UIDs copied.
    src: Vec<Uid>,
}

impl CopyJob {
    fn verb(&self) -> &'static str {
        if self.moving {
            "MOVE"
        } else {
            "COPY"
        }
    }
}

/// An answer that does not fit the question: the glue's mistake, never
/// the client's. Logged; the command fails as if the store had.
fn misfit(what: &str, answer: &Answer) -> StoreError {
    tracing::error!(target: "imap", command = what, ?answer, "store answer does not fit the query");
    StoreError::Invalid("store answer does not fit the query".into())
}

impl Session {
    /// CLOSE: expunges silently (unless read-only) and deselects
    /// (RFC 9051 6.4.1).
    pub(super) fn close(&mut self, tag: &str) {
        if let State::Selected(sel) = &self.state {
            if !sel.read_only {
                let query = Query::Expunge {
                    folder_id: sel.folder_id,
                    uids: deleted_uids(sel),
                };
                self.ask(Asked::Close { tag: tag.to_string() }, query);
                return;
            }
        }
        self.closed_mailbox(tag, Ok(Answer::Expunged));
    }

    /// When the expunge failed the mailbox stays selected (and its
    /// messages stay), so the client can try again.
    pub(super) fn closed_mailbox(&mut self, tag: &str, answer: Result<Answer, StoreError>) {
        match answer {
            Ok(Answer::Expunged) => {
                self.state = State::Authenticated;
                self.tagged(tag, "OK", "CLOSE completed");
            }
            Ok(other) => {
                let e = misfit("CLOSE", &other);
                self.store_failed(tag, "CLOSE", &e);
            }
            Err(e) => self.store_failed(tag, "CLOSE", &e),
        }
    }

    /// UNSELECT: deselects without expunging (RFC 3691).
    pub(super) fn unselect(&mut self, tag: &str) {
        self.state = State::Authenticated;
        self.tagged(tag, "OK", "UNSELECT completed");
    }

    pub(super) fn expunge(&mut self, tag: &str, uids: Option<imap_codec::imap_types::sequence::SequenceSet>) {
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let mut deleted = deleted_uids(sel);
        if let Some(set) = uids {
            let allowed = resolve_uid(&set, sel);
            deleted.retain(|u| allowed.contains(u));
        }
        let query = Query::Expunge {
            folder_id: sel.folder_id,
            uids: deleted.clone(),
        };
        self.ask(
            Asked::Expunge {
                tag: tag.to_string(),
                uids: deleted,
            },
            query,
        );
    }

    /// The expunge is done: announced, then what else changed.
    pub(super) fn expunged(&mut self, tag: String, uids: &[Uid], answer: Result<Answer, StoreError>) {
        match answer {
            Ok(Answer::Expunged) => {}
            Ok(other) => {
                let e = misfit("EXPUNGE", &other);
                return self.store_failed(&tag, "EXPUNGE", &e);
            }
            Err(e) => return self.store_failed(&tag, "EXPUNGE", &e),
        }
        let mut out = Vec::new();
        if let State::Selected(sel) = &mut self.state {
            sel.remove(uids, &mut out);
        }
        // A failure to read what else changed fails the command, with the
        // EXPUNGEs sent first.
        if !self.ask_refresh(
            true,
            Then::Expunged {
                tag: tag.clone(),
                out,
            },
        ) {
            self.tagged(&tag, "OK", "EXPUNGE completed");
        }
    }

    /// EXPUNGE's refresh answered (`folded`: what else changed, or the
    /// error).
    pub(super) fn expunge_done(&mut self, tag: &str, mut out: Vec<u8>, folded: Result<Vec<u8>, StoreError>) {
        match folded {
            Ok(more) => out.extend_from_slice(&more),
            Err(e) => {
                self.send(out);
                return self.store_failed(tag, "EXPUNGE", &e);
            }
        }
        let hms = match &self.state {
            State::Selected(s) if s.condstore => format!("[HIGHESTMODSEQ {}] ", s.highestmodseq),
            _ => String::new(),
        };
        let _ = write!(Lossless(&mut out), "{tag} OK {hms}EXPUNGE completed\r\n");
        self.send(out);
    }

    pub(super) fn search(
        &mut self,
        tag: &str,
        criteria: Vec<SearchKey<'static>>,
        uid: bool,
        return_opts: Option<Vec<String>>,
    ) {
        let uses_modseq = criteria.iter().any(has_modseq);
        let first_condstore = uses_modseq && self.enable_condstore();
        let code = if first_condstore {
            self.highestmodseq_code()
        } else {
            String::new()
        };
        let State::Selected(sel) = &self.state else {
            return;
        };
        let content = criteria.iter().any(search::needs_content);
        let body = criteria.iter().any(search::needs_body);
        let folder_id = sel.folder_id;
        let all: Vec<Uid> = if content && !body {
            sel.msgs().iter().map(|m| m.uid).collect()
        } else {
            Vec::new()
        };
        let job = Box::new(SearchJob {
            tag: tag.to_string(),
            criteria,
            uid,
            return_opts,
            uses_modseq,
            code,
            hits: Vec::new(),
            max_modseq: ModSeq::default(),
            next: 0,
        });
        if content && !body {
            // Header keys only: every message's header block at once,
            // mostly from the server-wide cache, instead of each whole
            // message.
            self.ask(Asked::Search(job), Query::Headers { folder_id, uids: all });
        } else if body {
            self.search_bodies(job);
        } else {
            let mut job = job;
            self.search_matched(&mut job, &[]);
            self.search_done(*job);
        }
    }

    /// Asks for the next few whole messages of a SEARCH, or answers it
    /// when all were looked at.
    fn search_bodies(&mut self, job: Box<SearchJob>) {
        let State::Selected(sel) = &self.state else {
            return;
        };
        let uids = body_batch(sel, job.next..sel.msgs().len());
        if uids.is_empty() {
            return self.search_done(*job);
        }
        let query = Query::Messages {
            folder_id: sel.folder_id,
            uids,
        };
        self.ask(Asked::Search(job), query);
    }

    /// The header blocks or messages a SEARCH asked for: matched, then
    /// the next step.
    pub(super) fn search_answered(&mut self, mut job: Box<SearchJob>, answer: Result<Answer, StoreError>) {
        // A message that cannot be read is not one that does not match:
        // the search fails instead.
        let blocks = match answer {
            Ok(Answer::Blocks(b)) => b,
            Ok(other) => {
                let e = misfit("SEARCH", &other);
                return self.store_failed(&job.tag, "SEARCH", &e);
            }
            Err(e) => return self.store_failed(&job.tag, "SEARCH", &e),
        };
        let whole = job.criteria.iter().any(search::needs_body);
        if whole && blocks.is_empty() {
            // Nothing came back for what was asked: not an answer, and
            // asking again would not end.
            let e = misfit("SEARCH", &Answer::Blocks(blocks));
            return self.store_failed(&job.tag, "SEARCH", &e);
        }
        self.search_matched(&mut job, &blocks);
        if whole {
            self.search_bodies(job);
        } else {
            self.search_done(*job);
        }
    }

    /// Matches the messages from `job.next` on: all of them, or (whole
    /// messages) as many as `blocks` holds.
    fn search_matched(&mut self, job: &mut SearchJob, blocks: &[Option<Arc<[u8]>>]) {
        let State::Selected(sel) = &self.state else {
            return;
        };
        let whole = job.criteria.iter().any(search::needs_body);
        let (from, to) = if whole {
            (job.next, (job.next + blocks.len()).min(sel.msgs().len()))
        } else {
            (0, sel.msgs().len())
        };
        let load = |i: usize| -> Option<Arc<[u8]>> {
            let k = if whole { i.checked_sub(from)? } else { i };
            blocks.get(k).cloned().flatten()
        };
        for i in from..to {
            let mut raw = None;
            if job
                .criteria
                .iter()
                .all(|k| search::matches(k, sel, i, &load, &mut raw))
            {
                let m = &sel.msgs()[i];
                job.max_modseq = job.max_modseq.max(m.modseq);
                job.hits.push(if job.uid { m.uid.get() } else { i as u32 + 1 });
            }
        }
        job.next = to;
    }

    fn search_done(&mut self, job: SearchJob) {
        let SearchJob {
            tag,
            uid,
            return_opts,
            uses_modseq,
            code,
            hits,
            max_modseq,
            ..
        } = job;
        let mut out = Vec::new();
        let w = &mut Lossless(&mut out);
        if self.rev2 || return_opts.is_some() {
            // RFC 4731 / RFC 9051 7.3.4: ESEARCH, with the asked-for parts
            // (RETURN () means ALL).
            let opts = return_opts.as_deref().unwrap_or(&[]);
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
        let _ = write!(w, "{tag} OK {code}SEARCH completed\r\n");
        self.send(out);
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
        items: imap_codec::imap_types::fetch::MacroOrMessageDataItemNames<'static>,
        uid: bool,
        modifiers: &[imap_codec::imap_types::command::FetchModifier],
    ) {
        let Some(targets) = self.targets(tag, set, uid) else {
            return;
        };
        let changed_since = modifiers.iter().find_map(|m| match m {
            imap_codec::imap_types::command::FetchModifier::ChangedSince(v) => Some(modseq_arg(v.get())),
            _ => None,
        });
        let asks_modseq = match &items {
            imap_codec::imap_types::fetch::MacroOrMessageDataItemNames::MessageDataItemNames(v) => v
                .iter()
                .any(|i| matches!(i, imap_codec::imap_types::fetch::MessageDataItemName::ModSeq)),
            imap_codec::imap_types::fetch::MacroOrMessageDataItemNames::Macro(_) => false,
        };
        let first_condstore = (changed_since.is_some() || asks_modseq) && self.enable_condstore();
        let State::Selected(sel) = &self.state else {
            return;
        };
        let job = FetchJob::new(
            tag.to_string(),
            sel,
            &targets,
            items,
            uid,
            changed_since,
            self.utf8 || self.rev2,
            first_condstore,
        );
        self.fetch_step(Box::new(job), Vec::new());
    }

    /// Takes a FETCH as far as it goes without the store: asks the next
    /// question (header blocks, then \Seen, then whole messages) or writes
    /// the responses and the tagged OK. `out`: responses not sent yet.
    fn fetch_step(&mut self, mut job: Box<FetchJob>, mut out: Vec<u8>) {
        let State::Selected(sel) = &self.state else {
            return;
        };
        let folder_id = sel.folder_id;
        if job.wants_heads() && job.heads.is_none() {
            let uids = job.wanted.iter().map(|&idx| sel.msgs()[idx].uid).collect();
            return self.ask(Asked::Fetch(job), Query::Headers { folder_id, uids });
        }
        if job.marks_seen && !job.seen_done {
            // Setting \Seen (RFC 9051 6.4.5): one transaction for all the
            // targets, not one commit (and fsync) per message. Not setting
            // it is no side effect to skip: the client would show the
            // message as unread. Nothing was sent yet.
            job.seen_done = true;
            let unseen = job.unseen(sel);
            if !unseen.is_empty() {
                let query = Query::StoreFlags {
                    folder_id,
                    uids: unseen,
                    op: FlagOp::Add,
                    flags: crate::format::SEEN,
                    keywords: Vec::new(),
                    unchanged_since: None,
                };
                return self.ask(Asked::Fetch(job), query);
            }
        }
        if job.wants_bodies() && job.next < job.wanted.len() {
            let uids = body_batch(sel, job.wanted[job.next..].iter().copied());
            self.send(out);
            return self.ask(Asked::Fetch(job), Query::Messages { folder_id, uids });
        }
        if !job.wants_bodies() {
            job.reserve(&mut out, job.wanted.len());
            let heads = job.heads.take();
            for n in 0..job.wanted.len() {
                let idx = job.wanted[n];
                let raw: &[u8] = match &heads {
                    Some(heads) => match heads.get(n).and_then(Option::as_deref) {
                        // Expunged by another session meanwhile: skip it.
                        None => continue,
                        Some(h) => h,
                    },
                    None => &[],
                };
                if let Err(fetch::FetchError::UnknownCte) = job.write(sel, idx, raw, &mut out) {
                    return self.fetch_unknown_cte(&job.tag, out);
                }
            }
        }
        let code = if job.first_condstore {
            self.highestmodseq_code()
        } else {
            String::new()
        };
        let _ = write!(Lossless(&mut out), "{} OK {code}FETCH completed\r\n", job.tag);
        self.send(out);
    }

    fn fetch_unknown_cte(&mut self, tag: &str, mut out: Vec<u8>) {
        let _ = write!(
            Lossless(&mut out),
            "{tag} NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n"
        );
        self.send(out);
    }

    /// The store's answer to a FETCH's question.
    pub(super) fn fetch_answered(&mut self, mut job: Box<FetchJob>, answer: Result<Answer, StoreError>) {
        let answer = match answer {
            Ok(a) => a,
            // The messages before the one that failed are answered (sent
            // already); that one is not, never with an empty or cut body.
            Err(e) => return self.store_failed(&job.tag, "FETCH", &e),
        };
        let mut out = Vec::new();
        match answer {
            Answer::Blocks(blocks) if job.wants_heads() && job.heads.is_none() => job.heads = Some(blocks),
            Answer::FlagsStored(stored) => {
                let State::Selected(sel) = &mut self.state else {
                    return;
                };
                apply_flags(sel, &stored);
                job.seen_now = stored.changed.iter().map(|c| c.uid).collect();
                job.seen_now.sort_unstable();
            }
            Answer::Blocks(blocks) if job.wants_bodies() => {
                let State::Selected(sel) = &self.state else {
                    return;
                };
                job.reserve(&mut out, blocks.len());
                for block in &blocks {
                    let Some(&idx) = job.wanted.get(job.next) else {
                        break;
                    };
                    job.next += 1;
                    // Expunged by another session meanwhile: skip it.
                    let Some(raw) = block else {
                        continue;
                    };
                    if let Err(fetch::FetchError::UnknownCte) = job.write(sel, idx, raw, &mut out) {
                        return self.fetch_unknown_cte(&job.tag, out);
                    }
                }
                if blocks.is_empty() {
                    // Nothing came back for what was asked: not an
                    // answer, and asking again would not end.
                    let e = misfit("FETCH", &Answer::Blocks(blocks));
                    return self.store_failed(&job.tag, "FETCH", &e);
                }
            }
            other => {
                let e = misfit("FETCH", &other);
                return self.store_failed(&job.tag, "FETCH", &e);
            }
        }
        self.fetch_step(job, out);
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
    ) {
        let Some(targets) = self.targets(tag, set, uid) else {
            return;
        };
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let unchanged_since = modifiers
            .iter()
            .map(|m| match m {
                imap_codec::imap_types::command::StoreModifier::UnchangedSince(v) => modseq_arg(*v),
            })
            .next();
        let first_condstore = unchanged_since.is_some() && self.enable_condstore();
        let State::Selected(sel) = &self.state else {
            return;
        };
        let (bits, keywords) = flag_bits(flags);
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let uids: Vec<Uid> = targets.iter().map(|i| sel.msgs()[*i].uid).collect();
        let query = Query::StoreFlags {
            folder_id: sel.folder_id,
            uids,
            op,
            flags: bits,
            keywords: keywords.clone(),
            unchanged_since,
        };
        let job = StoreJob {
            tag: tag.to_string(),
            targets,
            response,
            uid,
            op,
            keywords,
            first_condstore,
        };
        self.ask(Asked::Store(Box::new(job)), query);
    }

    pub(super) fn stored(&mut self, job: StoreJob, answer: Result<Answer, StoreError>) {
        let stored = match answer {
            Ok(Answer::FlagsStored(s)) => s,
            Ok(other) => {
                let e = misfit("STORE", &other);
                return self.store_failed(&job.tag, "STORE", &e);
            }
            Err(e) => return self.store_failed(&job.tag, "STORE", &e),
        };
        let StoreJob {
            tag,
            targets,
            response,
            uid,
            op,
            keywords,
            first_condstore,
        } = job;
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        let mut out = Vec::new();
        apply_flags(sel, &stored);
        if op != FlagOp::Remove {
            sel.learn_keywords(keywords.iter().map(String::as_str), &mut out);
        }
        let FlagsStored { changed, refused, .. } = stored;
        // Report every target's flags (unless .SILENT); with CONDSTORE, a
        // silent STORE still reports MODSEQ (RFC 7162 3.1.3).
        // Sets, not scans: `STORE 1:* ...` on a large mailbox stays linear.
        let refused_set: std::collections::HashSet<Uid> = refused.iter().copied().collect();
        let changed_set: std::collections::HashSet<Uid> = changed.iter().map(|c| c.uid).collect();
        for &i in &targets {
            let Some(m) = sel.msgs().get(i) else {
                continue;
            };
            if refused_set.contains(&m.uid) {
                continue;
            }
            let was_changed = changed_set.contains(&m.uid);
            match response {
                StoreResponse::Answer => out.extend_from_slice(sel.flags_response(i + 1, m, uid).as_bytes()),
                StoreResponse::Silent if sel.condstore && was_changed => {
                    // RFC 7162 3.1: UID and MODSEQ.
                    let _ = write!(Lossless(&mut out), "* {} FETCH (UID {} ", i + 1, m.uid);
                    let _ = write!(Lossless(&mut out), "MODSEQ ({}))\r\n", m.modseq);
                }
                StoreResponse::Silent => {}
            }
        }
        let code = if first_condstore {
            format!("[HIGHESTMODSEQ {}] ", sel.highestmodseq)
        } else {
            String::new()
        };
        if refused.is_empty() {
            let _ = write!(Lossless(&mut out), "{tag} OK {code}STORE completed\r\n");
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
            // One response code per response: HIGHESTMODSEQ goes untagged.
            if first_condstore {
                let _ = write!(Lossless(&mut out), "* OK {code}Highest\r\n");
            }
            let _ = write!(
                Lossless(&mut out),
                "{tag} OK [MODIFIED {set}] Conditional STORE failed for some\r\n"
            );
        }
        self.send(out);
    }

    /// COPY and MOVE: the target folder is looked up first
    /// ([`Query::FindFolder`]).
    pub(super) fn copy(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        moving: bool,
    ) {
        let Some(targets) = self.targets(tag, set, uid) else {
            return;
        };
        let name = self.mailbox_name(mailbox);
        let State::Selected(sel) = &self.state else {
            return;
        };
        let uids: Vec<Uid> = targets.iter().map(|i| sel.msgs()[*i].uid).collect();
        let job = CopyJob {
            tag: tag.to_string(),
            moving,
            uids,
            out: Vec::new(),
            copyuid: String::new(),
            src: Vec::new(),
        };
        let query = Query::FindFolder {
            account_id: self.account_id(),
            name,
        };
        self.ask(Asked::CopyTarget(Box::new(job)), query);
    }

    /// The target folder found (or not): copy.
    pub(super) fn copy_target(&mut self, job: Box<CopyJob>, answer: Result<Answer, StoreError>) {
        let verb = job.verb();
        let dst = match answer {
            Ok(Answer::Folder(Some(id))) => id,
            Ok(Answer::Folder(None)) => return self.tagged(&job.tag, "NO", "[TRYCREATE] No such mailbox"),
            Ok(other) => {
                let e = misfit(verb, &other);
                return self.store_failed(&job.tag, verb, &e);
            }
            Err(e) => return self.store_failed(&job.tag, verb, &e),
        };
        let State::Selected(sel) = &self.state else {
            return;
        };
        if job.moving && sel.read_only {
            return self.tagged(&job.tag, "NO", "[READ-ONLY] Mailbox is read-only");
        }
        let query = Query::Copy {
            from: sel.folder_id,
            uids: job.uids.clone(),
            to: dst,
        };
        self.ask(Asked::Copy { job, dst }, query);
    }

    /// The copies made.
    pub(super) fn copied(
        &mut self,
        mut job: Box<CopyJob>,
        dst: FolderId,
        answer: Result<Answer, StoreError>,
    ) {
        let verb = job.verb();
        let (uidvalidity, pairs) = match answer {
            Ok(Answer::Copied { uidvalidity, pairs }) => (uidvalidity, pairs),
            Ok(other) => {
                let e = misfit(verb, &other);
                return self.store_failed(&job.tag, verb, &e);
            }
            Err(e) => return self.store_failed(&job.tag, verb, &e),
        };
        if pairs.is_empty() {
            return self.tagged(&job.tag, "OK", &format!("{verb} completed"));
        }
        job.src = pairs.iter().map(|p| p.0).collect();
        let new: Vec<Uid> = pairs.iter().map(|p| p.1).collect();
        job.copyuid = format!("COPYUID {uidvalidity} {} {}", uid_list(&job.src), uid_list(&new));
        if self.selected_folder() == Some(dst) {
            // Into the selected mailbox itself: the copies are new messages
            // here, announced (EXISTS) before the tagged OK as APPEND's are
            // (RFC 9051 7.4.1: the client learns of them from EXISTS).
            self.ask_refresh(false, Then::Copied(job));
        } else {
            self.copy_finish(job);
        }
    }

    /// COPY's OK, or MOVE's expunge of the originals.
    pub(super) fn copy_finish(&mut self, mut job: Box<CopyJob>) {
        let tag = job.tag.clone();
        let copyuid = job.copyuid.clone();
        if job.moving {
            // RFC 6851 4.3: COPYUID in an untagged OK, then the expunges.
            let _ = write!(Lossless(&mut job.out), "* OK [{copyuid}] Moved\r\n");
            let State::Selected(sel) = &self.state else {
                return;
            };
            let query = Query::Expunge {
                folder_id: sel.folder_id,
                uids: job.src.clone(),
            };
            self.ask(Asked::Moved(job), query);
        } else {
            let mut out = std::mem::take(&mut job.out);
            let _ = write!(Lossless(&mut out), "{tag} OK [{copyuid}] COPY completed\r\n");
            self.send(out);
        }
    }

    /// MOVE's originals expunged.
    pub(super) fn moved(&mut self, mut job: CopyJob, answer: Result<Answer, StoreError>) {
        let mut out = std::mem::take(&mut job.out);
        let e = match answer {
            Ok(Answer::Expunged) => None,
            Ok(other) => Some(misfit("MOVE", &other)),
            Err(e) => Some(e),
        };
        if let Some(e) = e {
            // The copies exist (COPYUID says where) but the originals
            // stay: announcing their EXPUNGE would be false. The client
            // sees a COPY and a failed MOVE, and may expunge itself.
            self.send(out);
            return self.store_failed(&job.tag, "MOVE", &e);
        }
        if let State::Selected(sel) = &mut self.state {
            sel.remove(&job.src, &mut out);
        }
        let _ = write!(Lossless(&mut out), "{} OK MOVE completed\r\n", job.tag);
        self.send(out);
    }

    /// COPY into the selected mailbox: its refresh answered. The copy is
    /// made either way; should reading the folder fail, the next command's
    /// refresh announces the copies, so the failure is logged.
    pub(super) fn copy_refreshed(&mut self, mut job: Box<CopyJob>, folded: Result<Vec<u8>, StoreError>) {
        match folded {
            Ok(out) => job.out.extend_from_slice(&out),
            Err(e) => self.log_store_error(job.verb(), &e),
        }
        self.copy_finish(job);
    }
}

/// Folds flags this session changed into its view: the server-wide
/// snapshot with the change in it is adopted when the view was the one
/// before (no copy of a 10,000-message list), else each message changes
/// in place.
fn apply_flags(sel: &mut Selected, stored: &FlagsStored) {
    let adopted = stored
        .snapshots
        .as_ref()
        .is_some_and(|(old, new)| sel.adopt(old, new));
    for c in stored.changed.iter().filter(|_| !adopted) {
        if let Some(i) = sel.index_of(c.uid) {
            let m = &mut sel.msgs_mut()[i];
            m.flags = c.flags;
            m.keywords = c.keywords.clone();
            m.modseq = c.modseq;
        }
    }
    if let Some(hm) = stored.changed.iter().map(|c| c.modseq).max() {
        sel.highestmodseq = sel.highestmodseq.max(hm);
    }
}

fn deleted_uids(sel: &Selected) -> Vec<Uid> {
    sel.msgs()
        .iter()
        .filter(|m| m.flags & crate::format::DELETED != 0)
        .map(|m| m.uid)
        .collect()
}

fn has_modseq(k: &SearchKey<'_>) -> bool {
    match k {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(v) => v.as_ref().iter().any(has_modseq),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::Not(a) => has_modseq(a),
        _ => false,
    }
}

//! SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, LIST/LSUB, STATUS.

use std::fmt::Write as _;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;

use super::{decode_name, Asked, Session, State};
use crate::extensions::Extras;
use crate::format::{mailbox as write_mailbox, uid_set, Lossless};
use crate::selected::Selected;
use crate::sequence::modseq_arg;
use crate::storage::{Change, FolderEntry, FolderStatus, Opened, Query};

impl Session {
    /// SELECT and EXAMINE: the parameters are read here, the folder is
    /// asked of the store ([`Query::Select`]); [`Session::opened`] answers.
    pub(super) fn select(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        read_only: bool,
        params: Vec<SelectParameter>,
    ) {
        // Selecting a mailbox closes the one selected (without expunge),
        // also when the SELECT fails (RFC 9051 6.3.2).
        self.state = State::Authenticated;
        let name = self.mailbox_name(mailbox);
        let mut condstore = self.condstore;
        let mut qresync = None;
        for p in params {
            match p {
                SelectParameter::CondStore => condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    ..
                } => {
                    if !self.qresync {
                        self.bad(tag, "ENABLE QRESYNC first");
                        return;
                    }
                    condstore = true;
                    qresync = Some((
                        i64::from(uid_validity.get()),
                        modseq_arg(mod_sequence_value.get()),
                    ));
                }
            }
        }
        let query = Query::Select {
            account_id: self.account_id(),
            name,
            read_only,
            rev2: self.rev2,
            qresync,
        };
        self.ask(
            Asked::Select {
                tag: tag.to_string(),
                read_only,
                condstore,
            },
            query,
        );
    }

    /// SELECT or EXAMINE with the folder as the store opened it (`None`: no
    /// such folder).
    pub(super) fn opened(&mut self, tag: &str, read_only: bool, condstore: bool, opened: Option<Opened>) {
        let Some(opened) = opened else {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        };
        let mut sel = Selected::new(
            opened.name.clone(),
            read_only,
            &opened.snap,
            opened.recent_above,
            !self.rev2,
        );
        sel.condstore = condstore;
        sel.qresync = self.qresync;
        self.condstore |= condstore;
        let mut out = Vec::new();
        let w = &mut Lossless(&mut out);
        let _ = write!(w, "* {} EXISTS\r\n", sel.msgs().len());
        if !self.rev2 {
            let _ = write!(w, "* {} RECENT\r\n", sel.recent_count());
            if let Some(i) = sel.msgs().iter().position(|m| m.flags & crate::format::SEEN == 0) {
                let _ = write!(w, "* OK [UNSEEN {}] First unseen\r\n", i + 1);
            }
        }
        let _ = write!(w, "* OK [UIDVALIDITY {}] UIDs valid\r\n", sel.uidvalidity);
        let _ = write!(w, "* OK [UIDNEXT {}] Predicted next UID\r\n", sel.uidnext);
        sel.announce_flags(w.0);
        if condstore {
            let _ = write!(w, "* OK [HIGHESTMODSEQ {}] Highest\r\n", sel.highestmodseq);
        }
        if self.rev2 {
            out.extend_from_slice(b"* LIST () \"/\" ");
            write_mailbox(&mut out, &opened.name, self.utf8 || self.rev2);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((since, vanished)) = &opened.qresync {
            if !vanished.is_empty() {
                let _ = write!(
                    Lossless(&mut out),
                    "* VANISHED (EARLIER) {}\r\n",
                    uid_set(vanished)
                );
            }
            for (i, m) in sel.msgs().iter().enumerate() {
                if m.modseq > *since {
                    out.extend_from_slice(sel.flags_response(i + 1, m, true).as_bytes());
                }
            }
        }
        let code = if read_only { "[READ-ONLY]" } else { "[READ-WRITE]" };
        let _ = write!(
            Lossless(&mut out),
            "{tag} OK {code} {} completed\r\n",
            if read_only { "EXAMINE" } else { "SELECT" }
        );
        self.send(out);
        self.state = State::Selected(Box::new(sel));
    }

    pub(super) fn valid_new_name(name: &str) -> bool {
        !name.is_empty()
            && !name.eq_ignore_ascii_case("INBOX")
            && !name.starts_with('/')
            && !name.ends_with('/')
            && !name.contains("//")
            // RFC 3501 5.1.3 / RFC 9051 5.1: no `.` or `..` hierarchy
            // level (a client or a backup tool may take them for paths).
            && name.split('/').all(|level| !level.is_empty() && level != "." && level != "..")
            && !name.chars().any(|c| c.is_control() || c == '*' || c == '%')
            && name.len() <= 512
    }

    /// CREATE: a valid new name is asked of the store ([`Query::Create`]).
    pub(super) fn create(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some(name) = self.new_mailbox_name(mailbox) else {
            self.tagged(tag, "NO", "[CANNOT] Invalid mailbox name");
            return;
        };
        let query = Query::Create {
            account_id: self.account_id(),
            name,
        };
        self.ask_change(tag, "CREATE", query);
    }

    pub(super) fn delete(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = self.mailbox_name(mailbox);
        if name == "INBOX" {
            self.tagged(tag, "NO", "[CANNOT] INBOX cannot be deleted");
            return;
        }
        let query = Query::Delete {
            account_id: self.account_id(),
            name,
        };
        self.ask_change(tag, "DELETE", query);
    }

    pub(super) fn rename(&mut self, tag: &str, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let from = self.mailbox_name(from);
        let Some(to) = self.new_mailbox_name(to) else {
            self.tagged(tag, "NO", "[CANNOT] Invalid mailbox name");
            return;
        };
        let query = Query::Rename {
            account_id: self.account_id(),
            from,
            to,
        };
        self.ask_change(tag, "RENAME", query);
    }

    pub(super) fn subscribe(&mut self, tag: &str, mailbox: &Mailbox<'_>, on: bool) {
        let query = Query::Subscribe {
            account_id: self.account_id(),
            name: self.mailbox_name(mailbox),
            on,
        };
        self.ask_change(tag, if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" }, query);
    }

    fn ask_change(&mut self, tag: &str, verb: &'static str, query: Query) {
        self.ask(
            Asked::Change {
                tag: tag.to_string(),
                verb,
            },
            query,
        );
    }

    /// The answer to CREATE, DELETE, RENAME, SUBSCRIBE or UNSUBSCRIBE.
    pub(super) fn changed(&mut self, tag: &str, verb: &'static str, change: Change) {
        match change {
            Change::Done(folder) => {
                // RFC 9051 6.3.5: deleting the selected mailbox deselects it.
                let selected = self.selected_folder();
                if verb == "DELETE" && folder.is_some() && folder == selected {
                    self.state = State::Authenticated;
                }
                match verb {
                    "SUBSCRIBE" | "UNSUBSCRIBE" => self.tagged(tag, "OK", "Completed"),
                    _ => self.tagged(tag, "OK", &format!("{verb} completed")),
                }
            }
            Change::AlreadyExists if verb == "RENAME" => {
                self.tagged(tag, "NO", "[ALREADYEXISTS] Target exists")
            }
            Change::AlreadyExists => self.tagged(tag, "NO", "[ALREADYEXISTS] Mailbox exists"),
            Change::NoSuchFolder => self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox"),
            // RFC 9051 6.3.5: a mailbox with inferiors is not removed here.
            // RFC 9051 6.3.4 and 7.1: refusing is allowed, with HASCHILDREN.
            Change::HasChildren => {
                self.tagged(tag, "NO", "[HASCHILDREN] Mailbox has children; delete them first")
            }
        }
    }

    /// LIST and LSUB: the patterns are decided here, then the folders
    /// asked of the store ([`Query::Folders`]); [`Session::listed`]
    /// answers.
    pub(super) fn list(
        &mut self,
        tag: &str,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
        extras: &Extras,
    ) {
        let utf8 = self.utf8 || self.rev2;
        let reference = self.mailbox_name(reference);
        let decode =
            |raw: &[u8]| decode_name(raw, utf8).unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned());
        // RFC 5258 3: `LIST "" (p1 p2)` lists what any of the patterns
        // matches (lifted out of the command by `extensions::lift`).
        let patterns: Vec<String> = match (&extras.list_patterns, lsub) {
            (Some(list), false) => list.iter().map(|p| decode(p)).collect(),
            _ => vec![decode(match pattern {
                ListMailbox::Token(t) => t.as_ref(),
                ListMailbox::String(s) => s.as_ref(),
            })],
        };
        if !lsub && patterns.iter().all(String::is_empty) {
            // RFC 9051 6.3.9: the delimiter and root.
            let mut out = b"* LIST (\\Noselect) \"/\" \"\"\r\n".to_vec();
            let _ = write!(Lossless(&mut out), "{tag} OK LIST completed\r\n");
            self.send(out);
            return;
        }
        let select_subscribed = extras.list_select.iter().any(|o| o == "SUBSCRIBED");
        let plan = ListPlan {
            lsub,
            fulls: patterns
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| format!("{reference}{p}"))
                .collect(),
            select_subscribed,
            select_special: extras.list_select.iter().any(|o| o == "SPECIAL-USE"),
            return_subscribed: select_subscribed || extras.list_return.iter().any(|o| o == "SUBSCRIBED"),
            status: if lsub { None } else { extras.list_status.clone() },
        };
        let query = Query::Folders {
            account_id: self.account_id(),
        };
        self.ask(
            Asked::List {
                tag: tag.to_string(),
                plan,
            },
            query,
        );
    }

    /// LIST and LSUB with the account's folders. With LIST-STATUS (RFC
    /// 5819) the listed folders' STATUS is asked next
    /// ([`Session::list_status`]).
    pub(super) fn listed(&mut self, tag: String, plan: ListPlan, folders: Vec<FolderEntry>) {
        if plan.lsub {
            self.lsub(&tag, &folders, &|name| plan.matches(name));
            return;
        }
        let utf8 = self.utf8 || self.rev2;
        let mut out = Vec::new();
        let mut status_for = Vec::new();
        for (name, special, subscribed) in &folders {
            if plan.select_subscribed && !subscribed {
                continue;
            }
            if plan.select_special && special.is_none() {
                continue;
            }
            if !plan.matches(name) {
                continue;
            }
            let has_children = folders.iter().any(|(n, _, _)| n.starts_with(&format!("{name}/")));
            let mut attrs = vec![if has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if let Some(s) = special {
                attrs.push(s.as_str());
            }
            if *subscribed && (self.rev2 || plan.return_subscribed) {
                attrs.push("\\Subscribed");
            }
            let _ = write!(Lossless(&mut out), "* LIST ({}) \"/\" ", attrs.join(" "));
            write_mailbox(&mut out, name, utf8);
            out.extend_from_slice(b"\r\n");
            status_for.push(name.clone());
        }
        match plan.status {
            Some(items) if !status_for.is_empty() => {
                let query = Query::Status {
                    account_id: self.account_id(),
                    names: status_for,
                };
                self.ask(Asked::ListStatus { tag, out, items }, query);
            }
            _ => {
                let _ = write!(Lossless(&mut out), "{tag} OK LIST completed\r\n");
                self.send(out);
            }
        }
    }

    /// LIST-STATUS (RFC 5819): a STATUS response after the listed
    /// mailboxes (a folder deleted since the listing has none).
    pub(super) fn list_status(
        &mut self,
        tag: &str,
        mut out: Vec<u8>,
        items: &[String],
        found: &[Option<FolderStatus>],
    ) {
        for st in found.iter().flatten() {
            out.extend_from_slice(&self.status_line(st, items));
        }
        let _ = write!(Lossless(&mut out), "{tag} OK LIST completed\r\n");
        self.send(out);
    }

    /// LSUB (RFC 3501 6.3.9): the subscribed names that match, and, where
    /// `%` stops above a subscribed name (`Work/Sub` subscribed, `Work` not,
    /// pattern `%`), that level with `\Noselect`. No \HasChildren or
    /// \HasNoChildren: those are LIST attributes (RFC 3348), and LSUB's
    /// `\Noselect` says only "not subscribed itself".
    fn lsub(&mut self, tag: &str, folders: &[FolderEntry], matches: &dyn Fn(&str) -> bool) {
        let utf8 = self.utf8 || self.rev2;
        let subscribed: std::collections::HashSet<&str> =
            folders.iter().filter(|f| f.2).map(|f| f.0.as_str()).collect();
        let mut shown: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (name, _, on) in folders {
            if !on {
                continue;
            }
            let mut level = None;
            if matches(name) {
                level = Some((name.clone(), false));
            } else {
                // The nearest level above it that the pattern matches.
                let mut parent = name.as_str();
                while let Some((p, _)) = parent.rsplit_once('/') {
                    parent = p;
                    if matches(parent) {
                        if !subscribed.contains(parent) {
                            level = Some((parent.to_string(), true));
                        }
                        break;
                    }
                }
            }
            let Some((level, noselect)) = level else {
                continue;
            };
            if !shown.insert(level.clone()) {
                continue;
            }
            let attrs = if noselect { "\\Noselect" } else { "" };
            let _ = write!(Lossless(&mut out), "* LSUB ({attrs}) \"/\" ");
            write_mailbox(&mut out, &level, utf8);
            out.extend_from_slice(b"\r\n");
        }
        let _ = write!(Lossless(&mut out), "{tag} OK LSUB completed\r\n");
        self.send(out);
    }

    /// STATUS: the folder is asked of the store ([`Query::Status`]);
    /// [`Session::statused`] answers.
    pub(super) fn status(&mut self, tag: &str, mailbox: &Mailbox<'_>, items: &[StatusDataItemName]) {
        let name = self.mailbox_name(mailbox);
        let names: Vec<String> = items
            .iter()
            .map(|i| {
                match i {
                    StatusDataItemName::Messages => "MESSAGES",
                    StatusDataItemName::Recent => "RECENT",
                    StatusDataItemName::UidNext => "UIDNEXT",
                    StatusDataItemName::UidValidity => "UIDVALIDITY",
                    StatusDataItemName::Unseen => "UNSEEN",
                    StatusDataItemName::Deleted => "DELETED",
                    StatusDataItemName::Size => "SIZE",
                    StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
                    StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
                }
                .to_string()
            })
            .collect();
        let first_condstore = items.contains(&StatusDataItemName::HighestModSeq) && self.enable_condstore();
        let query = Query::Status {
            account_id: self.account_id(),
            names: vec![name],
        };
        self.ask(
            Asked::Status {
                tag: tag.to_string(),
                items: names,
                first_condstore,
            },
            query,
        );
    }

    /// STATUS with the folder as the store has it (`None`: no such folder).
    pub(super) fn statused(
        &mut self,
        tag: &str,
        items: &[String],
        first_condstore: bool,
        found: Option<&FolderStatus>,
    ) {
        let Some(st) = found else {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        };
        let mut line = self.status_line(st, items);
        let code = if first_condstore {
            self.highestmodseq_code()
        } else {
            String::new()
        };
        let _ = write!(Lossless(&mut line), "{tag} OK {code}STATUS completed\r\n");
        self.send(line);
    }

    /// `* STATUS name (ITEM value ...)` for the named items.
    fn status_line(&self, st: &FolderStatus, items: &[String]) -> Vec<u8> {
        let metas = &st.msgs[..];
        let count = |pred: &dyn Fn(&postroom_store::folders::MessageMeta) -> bool| {
            metas.iter().filter(|m| pred(m)).count()
        };
        let mut parts = Vec::new();
        for item in items {
            let v = match item.as_str() {
                "MESSAGES" => metas.len().to_string(),
                "RECENT" => count(&|m| m.uid.as_i64() > st.recent_mark).to_string(),
                "UIDNEXT" => st.uidnext.to_string(),
                "UIDVALIDITY" => st.uidvalidity.to_string(),
                "UNSEEN" => count(&|m| m.flags & crate::format::SEEN == 0).to_string(),
                "DELETED" => count(&|m| m.flags & crate::format::DELETED != 0).to_string(),
                "SIZE" => metas.iter().map(|m| m.size).sum::<i64>().to_string(),
                "HIGHESTMODSEQ" => st.highestmodseq.to_string(),
                "DELETED-STORAGE" => metas
                    .iter()
                    .filter(|m| m.flags & crate::format::DELETED != 0)
                    .map(|m| m.size)
                    .sum::<i64>()
                    .to_string(),
                _ => continue,
            };
            parts.push(format!("{item} {v}"));
        }
        let mut out = b"* STATUS ".to_vec();
        write_mailbox(&mut out, &st.name, self.utf8 || self.rev2);
        let _ = write!(Lossless(&mut out), " ({})\r\n", parts.join(" "));
        out
    }
}

/// What LIST or LSUB decided before the folders were asked for.
#[derive(Debug)]
pub(super) struct ListPlan {
    lsub: bool,
    /// Reference and pattern, one per pattern (RFC 5258 3: several).
    fulls: Vec<String>,
    select_subscribed: bool,
    select_special: bool,
    return_subscribed: bool,
    /// LIST-STATUS items (RFC 5819).
    status: Option<Vec<String>>,
}

impl ListPlan {
    pub(super) fn is_lsub(&self) -> bool {
        self.lsub
    }

    fn matches(&self, name: &str) -> bool {
        self.fulls.iter().any(|full| {
            if name == "INBOX" {
                wildmatch(&full.to_uppercase(), "INBOX")
            } else {
                wildmatch(full, name)
            }
        })
    }
}

/// LIST wildcards (RFC 9051 6.3.9): `*` matches anything, `%` anything but
/// the hierarchy delimiter. Dynamic programming over (pattern, name)
/// positions: linear in their product, whatever the pattern (backtracking
/// was exponential in the number of wildcards).
pub fn wildmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // reach[j]: the first i pattern chars can match the first j name chars.
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &c in &p {
        let mut next = vec![false; n.len() + 1];
        match c {
            '*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            '%' => {
                let mut any = false;
                for j in 0..=n.len() {
                    if j > 0 && n[j - 1] == '/' {
                        any = false;
                    }
                    any |= reach[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = reach[j - 1] && n[j - 1] == c;
                }
            }
        }
        reach = next;
    }
    reach[n.len()]
}

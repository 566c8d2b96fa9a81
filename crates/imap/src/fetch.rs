//! FETCH (RFC 9051 6.4.5): the data items of each message, in the order
//! asked, reading the message only when an item needs its contents.

use postroom_store::{ModSeq, Uid};

use std::fmt::Write as _;
use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Part, Section,
};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::IntoStatic;
use imap_codec::ResponseCodec;

use crate::format::{internal_date, literal, push_num, write_flag_list, Lossless, SEEN};
use crate::selected::Selected;

/// Why a message's response could not be written.
#[derive(Debug)]
pub enum FetchError {
    /// BINARY of a part in an encoding we do not know (RFC 3516 4.3:
    /// `NO [UNKNOWN-CTE]`).
    UnknownCte,
}

/// Encodes one ENVELOPE / BODYSTRUCTURE item with imap-codec (which knows
/// the quoting and literal rules) and returns the item's text.
fn encode_item(item: MessageDataItem<'static>) -> Vec<u8> {
    let resp = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::from(item),
    });
    let bytes = ResponseCodec::default().encode(&resp).dump();
    let start = b"* 1 FETCH (".len();
    let end = bytes.len().saturating_sub(b")\r\n".len());
    bytes.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
}

fn part_text(p: &Part) -> String {
    p.0.as_ref()
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// The section as the response names it (RFC 9051 7.5.2: as requested),
/// header-field names as atoms, quoted strings or literals — whatever keeps
/// the response well-formed.
fn section_text(s: &Option<Section<'_>>, utf8: bool) -> Vec<u8> {
    let prefixed = |p: &Option<Part>, what: &str| match p {
        Some(p) => format!("{}.{what}", part_text(p)),
        None => what.to_string(),
    };
    let names = |v: &Vec1<imap_codec::imap_types::core::AString<'_>>| {
        let mut out = Vec::new();
        for (i, a) in v.as_ref().iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            let name: &[u8] = a.as_ref();
            if !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
                out.extend_from_slice(name);
            } else {
                crate::format::string(&mut out, name, utf8);
            }
        }
        out
    };
    let with_names = |head: String, v: &Vec1<imap_codec::imap_types::core::AString<'_>>| {
        let mut out = format!("{head} (").into_bytes();
        out.extend_from_slice(&names(v));
        out.push(b')');
        out
    };
    match s {
        None => Vec::new(),
        Some(Section::Part(p)) => part_text(p).into_bytes(),
        Some(Section::Header(p)) => prefixed(p, "HEADER").into_bytes(),
        Some(Section::HeaderFields(p, v)) => with_names(prefixed(p, "HEADER.FIELDS"), v),
        Some(Section::HeaderFieldsNot(p, v)) => with_names(prefixed(p, "HEADER.FIELDS.NOT"), v),
        Some(Section::Text(p)) => prefixed(p, "TEXT").into_bytes(),
        Some(Section::Mime(p)) => format!("{}.MIME", part_text(p)).into_bytes(),
    }
}

/// A literal of message text. IMAP literals cannot carry NUL (RFC 9051 4.3):
/// like Dovecot, send 0x80 in its place.
fn body_literal(out: &mut Vec<u8>, data: &[u8]) {
    if data.contains(&0) {
        let cleaned: Vec<u8> = data.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
        literal(out, &cleaned);
    } else {
        literal(out, data);
    }
}

fn partial_slice(data: &[u8], partial: Option<(u32, NonZeroU32)>) -> &[u8] {
    match partial {
        None => data,
        Some((start, len)) => {
            let start = (start as usize).min(data.len());
            let end = start.saturating_add(len.get() as usize).min(data.len());
            &data[start..end]
        }
    }
}

fn expand(items: MacroOrMessageDataItemNames<'_>) -> Vec<MessageDataItemName<'_>> {
    match items {
        // ALL, FAST, FULL (RFC 9051 6.4.5).
        MacroOrMessageDataItemNames::Macro(m) => {
            m.expand().into_iter().map(IntoStatic::into_static).collect()
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    }
}

/// Whether the item depends only on the message header (which then
/// suffices as the message: every such item looks no further than the
/// first blank line, RFC 5322 2.1).
fn header_only(item: &MessageDataItemName<'_>) -> bool {
    match item {
        MessageDataItemName::Envelope | MessageDataItemName::Rfc822Header => true,
        MessageDataItemName::BodyExt { section, .. } => matches!(
            section,
            Some(Section::Header(None) | Section::HeaderFields(None, _) | Section::HeaderFieldsNot(None, _))
        ),
        _ => false,
    }
}

fn needs_content(item: &MessageDataItemName<'_>) -> bool {
    !matches!(
        item,
        MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822Size
            | MessageDataItemName::Uid
            | MessageDataItemName::ModSeq
    )
}

/// Whether fetching the item sets \Seen (RFC 9051 6.4.5: BODY[...] and
/// BINARY[...] without .PEEK, RFC822 and RFC822.TEXT).
fn sets_seen(item: &MessageDataItemName<'_>) -> bool {
    match item {
        MessageDataItemName::BodyExt { peek, .. } | MessageDataItemName::Binary { peek, .. } => !peek,
        MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
        _ => false,
    }
}

/// A FETCH under way: what it asks for, worked out once, and how far it
/// got. The session asks the store for what it needs a step at a time
/// (`crate::session::Session::fetch_step`): the header blocks of every
/// target at once when the items need no more, then the \Seen flags, then
/// whole messages a few at a time; [`FetchJob::write`] turns each message
/// into its response.
#[derive(Debug)]
pub struct FetchJob {
    pub tag: String,
    items: Vec<MessageDataItemName<'static>>,
    /// The section names as the responses repeat them.
    section_texts: Vec<Vec<u8>>,
    /// Some item needs the message's text.
    pub content: bool,
    /// Every such item looks at the header only: the header blocks suffice.
    pub header_only: bool,
    /// Some item sets \Seen (and the mailbox is read-write).
    pub marks_seen: bool,
    /// The indices of the messages to answer (CHANGEDSINCE applied).
    pub wanted: Vec<usize>,
    /// The first CONDSTORE-enabling command (RFC 7162 3.1).
    pub first_condstore: bool,
    /// The header blocks, one per `wanted`, once asked.
    pub heads: Option<Vec<Option<std::sync::Arc<[u8]>>>>,
    /// The \Seen step is done.
    pub seen_done: bool,
    /// The UIDs this FETCH set \Seen on, ascending.
    pub seen_now: Vec<Uid>,
    /// How many of `wanted` were answered (or skipped) so far.
    pub next: usize,
}

impl FetchJob {
    /// Works out what a FETCH of `targets` (indices) asks for.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tag: String,
        sel: &Selected,
        targets: &[usize],
        items: MacroOrMessageDataItemNames<'static>,
        uid: bool,
        changed_since: Option<ModSeq>,
        utf8: bool,
        first_condstore: bool,
    ) -> Self {
        let mut items = expand(items);
        if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
            items.insert(0, MessageDataItemName::Uid);
        }
        // RFC 7162 3.1.4.1: with CHANGEDSINCE the MODSEQ is always returned.
        if changed_since.is_some() && !items.iter().any(|i| matches!(i, MessageDataItemName::ModSeq)) {
            items.push(MessageDataItemName::ModSeq);
        }
        let section_texts: Vec<Vec<u8>> = items
            .iter()
            .map(|i| match i {
                MessageDataItemName::BodyExt { section, .. } => section_text(section, utf8),
                _ => Vec::new(),
            })
            .collect();
        let content = items.iter().any(needs_content);
        let header_only = items.iter().all(|i| !needs_content(i) || header_only(i));
        let marks_seen = !sel.read_only && items.iter().any(sets_seen);
        let wanted: Vec<usize> = targets
            .iter()
            .copied()
            .filter(|&idx| changed_since.is_none_or(|cs| sel.msgs()[idx].modseq > cs))
            .collect();
        FetchJob {
            tag,
            items,
            section_texts,
            content,
            header_only,
            marks_seen,
            wanted,
            first_condstore,
            heads: None,
            seen_done: false,
            seen_now: Vec::new(),
            next: 0,
        }
    }

    /// Header-only items (the common "list the messages" FETCH) read only
    /// each message's header block, for all targets at once and mostly
    /// from the server-wide cache.
    pub fn wants_heads(&self) -> bool {
        self.content && self.header_only
    }

    /// Whole messages are read, a few at a time.
    pub fn wants_bodies(&self) -> bool {
        self.content && !self.header_only
    }

    /// The wanted messages without \Seen: FETCH sets it on them.
    pub fn unseen(&self, sel: &Selected) -> Vec<Uid> {
        self.wanted
            .iter()
            .map(|&idx| &sel.msgs()[idx])
            .filter(|m| m.flags & SEEN == 0)
            .map(|m| m.uid)
            .collect()
    }

    /// Room for the typical line, so the buffer is not regrown (and its
    /// pages faulted in) over and over for 10,000 messages.
    pub fn reserve(&self, out: &mut Vec<u8>, n: usize) {
        out.reserve(n * if self.content { 256 } else { 48 });
    }

    /// Writes message `idx`'s response; `raw` is its header block or whole
    /// text (empty when no item needs it). On an unknown
    /// Content-Transfer-Encoding the partial line is taken back.
    pub fn write(&self, sel: &Selected, idx: usize, raw: &[u8], out: &mut Vec<u8>) -> Result<(), FetchError> {
        let items = &self.items;
        let section_texts = &self.section_texts;
        let seen_now = &self.seen_now;
        let flags_changed = seen_now.binary_search(&sel.msgs()[idx].uid).is_ok();
        let m = &sel.msgs()[idx];
        let recent = sel.show_recent && sel.is_recent(m.uid);
        // Written straight into `out`; a failure takes the partial line back.
        let line_start = out.len();
        out.extend_from_slice(b"* ");
        push_num(out, idx as i64 + 1);
        out.extend_from_slice(b" FETCH (");
        let mut has_flags = false;
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                out.push(b' ');
            }
            let v: &mut Vec<u8> = out;
            match item {
                MessageDataItemName::Uid => {
                    v.extend_from_slice(b"UID ");
                    push_num(v, m.uid.as_i64());
                }
                MessageDataItemName::Flags => {
                    has_flags = true;
                    v.extend_from_slice(b"FLAGS ");
                    write_flag_list(v, m.flags, &m.keywords, recent);
                }
                MessageDataItemName::InternalDate => {
                    let _ = write!(Lossless(v), "INTERNALDATE {}", internal_date(m.internal_date));
                }
                MessageDataItemName::Rfc822Size => {
                    v.extend_from_slice(b"RFC822.SIZE ");
                    push_num(v, m.size);
                }
                MessageDataItemName::ModSeq => {
                    v.extend_from_slice(b"MODSEQ (");
                    push_num(v, m.modseq.get());
                    v.push(b')');
                }
                MessageDataItemName::Envelope => {
                    v.extend_from_slice(&encode_item(MessageDataItem::Envelope(crate::mime::envelope(
                        raw,
                    ))));
                }
                MessageDataItemName::BodyStructure => {
                    v.extend_from_slice(&encode_item(MessageDataItem::BodyStructure(
                        crate::mime::body_structure(raw, true),
                    )));
                }
                MessageDataItemName::Body => {
                    v.extend_from_slice(&encode_item(MessageDataItem::Body(crate::mime::body_structure(
                        raw, false,
                    ))));
                }
                MessageDataItemName::BodyExt { section, partial, .. } => {
                    let data = crate::mime::section(raw, section.as_ref());
                    v.extend_from_slice(b"BODY[");
                    v.extend_from_slice(&section_texts[n]);
                    v.push(b']');
                    if let Some((start, _)) = partial {
                        let _ = write!(Lossless(v), "<{start}>");
                    }
                    v.push(b' ');
                    match data {
                        // A part that does not exist (as Dovecot and Cyrus answer).
                        None => v.extend_from_slice(b"NIL"),
                        Some(d) => body_literal(v, partial_slice(&d, *partial)),
                    }
                }
                MessageDataItemName::Rfc822 => {
                    v.extend_from_slice(b"RFC822 ");
                    body_literal(v, raw);
                }
                MessageDataItemName::Rfc822Header => {
                    let data = crate::mime::section(raw, Some(&Section::Header(None))).unwrap_or_default();
                    v.extend_from_slice(b"RFC822.HEADER ");
                    body_literal(v, &data);
                }
                MessageDataItemName::Rfc822Text => {
                    let data = crate::mime::section(raw, Some(&Section::Text(None))).unwrap_or_default();
                    v.extend_from_slice(b"RFC822.TEXT ");
                    body_literal(v, &data);
                }
                MessageDataItemName::Binary { section, partial, .. } => {
                    let Ok(data) = crate::mime::binary(raw, section) else {
                        out.truncate(line_start);
                        return Err(FetchError::UnknownCte);
                    };
                    let name: Vec<String> = section.iter().map(|n| n.to_string()).collect();
                    let _ = write!(Lossless(v), "BINARY[{}]", name.join("."));
                    if let Some((start, _)) = partial {
                        let _ = write!(Lossless(v), "<{start}>");
                    }
                    v.push(b' ');
                    match data {
                        None => v.extend_from_slice(b"NIL"),
                        Some(d) => {
                            let d = partial_slice(&d, *partial);
                            if crate::mime::needs_literal8(d) {
                                // RFC 3516 4.2: binary data as literal8.
                                let _ = write!(Lossless(v), "~{{{}}}\r\n", d.len());
                                v.extend_from_slice(d);
                            } else {
                                literal(v, d);
                            }
                        }
                    }
                }
                MessageDataItemName::BinarySize { section } => {
                    let Ok(size) = crate::mime::binary_size(raw, section) else {
                        out.truncate(line_start);
                        return Err(FetchError::UnknownCte);
                    };
                    let name: Vec<String> = section.iter().map(|n| n.to_string()).collect();
                    let _ = write!(
                        Lossless(v),
                        "BINARY.SIZE[{}] {}",
                        name.join("."),
                        size.unwrap_or(0)
                    );
                }
            }
        }
        if flags_changed {
            // RFC 9051 6.4.5: the \Seen change is reported in the response;
            // with CONDSTORE with UID and MODSEQ (RFC 7162 3.1).
            let mut sep = !items.is_empty();
            let mut space = |out: &mut Vec<u8>| {
                if std::mem::replace(&mut sep, true) {
                    out.push(b' ');
                }
            };
            if !has_flags {
                space(out);
                out.extend_from_slice(b"FLAGS ");
                write_flag_list(out, m.flags, &m.keywords, recent);
            }
            if sel.condstore && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
                space(out);
                let _ = write!(Lossless(out), "UID {}", m.uid);
            }
            if sel.condstore && !items.iter().any(|i| matches!(i, MessageDataItemName::ModSeq)) {
                space(out);
                let _ = write!(Lossless(out), "MODSEQ ({})", m.modseq);
            }
        }
        out.extend_from_slice(b")\r\n");
        Ok(())
    }
}

//! FETCH (RFC 9051 6.4.5): the data items of each message, in the order
//! asked, reading the message only when an item needs its contents.

use postroom_store::{ModSeq, Uid};

use crate::wait::wait;
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
use postroom_store::folders::FlagOp;
use postroom_store::{Store, StoreError};

use crate::format::{internal_date, literal, push_num, write_flag_list, Lossless, SEEN};
use crate::selected::Selected;

pub struct FetchContext<'a> {
    pub store: &'a Store,
    /// 8-bit strings may be quoted (UTF8=ACCEPT / IMAP4rev2).
    pub utf8: bool,
    pub rev2: bool,
}

#[derive(Debug)]
pub enum FetchError {
    UnknownCte,
    /// A message (or the \\Seen update) could not be read or written: the
    /// command fails (`NO [UNAVAILABLE]`), no message is answered empty.
    Store(StoreError),
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

pub fn run(
    ctx: &mut FetchContext<'_>,
    sel: &mut Selected,
    targets: &[usize],
    items: MacroOrMessageDataItemNames<'_>,
    uid: bool,
    changed_since: Option<ModSeq>,
    out: &mut Vec<u8>,
) -> Result<(), FetchError> {
    let mut items = expand(items);
    if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
        items.insert(0, MessageDataItemName::Uid);
    }
    if (changed_since.is_some() || sel.condstore)
        && !items.iter().any(|i| matches!(i, MessageDataItemName::ModSeq))
    {
        // RFC 7162 3.1.4.1: with CHANGEDSINCE the MODSEQ is always returned.
        if changed_since.is_some() {
            items.push(MessageDataItemName::ModSeq);
        }
    }
    // The section names as the responses repeat them, worked out once.
    let section_texts: Vec<Vec<u8>> = items
        .iter()
        .map(|i| match i {
            MessageDataItemName::BodyExt { section, .. } => section_text(section, ctx.utf8),
            _ => Vec::new(),
        })
        .collect();
    let content = items.iter().any(needs_content);
    let marks_seen = !sel.read_only && items.iter().any(sets_seen);
    let wanted: Vec<usize> = targets
        .iter()
        .copied()
        .filter(|&idx| changed_since.is_none_or(|cs| sel.msgs()[idx].modseq > cs))
        .collect();
    // Header-only items (the common "list the messages" FETCH) read only
    // each message's header block, for all targets at once and mostly from
    // the server-wide cache.
    let heads = if content && items.iter().all(|i| !needs_content(i) || header_only(i)) {
        let uids: Vec<Uid> = wanted.iter().map(|&idx| sel.msgs()[idx].uid).collect();
        Some(wait(ctx.store.header_blocks(sel.folder_id, &uids)).map_err(FetchError::Store)?)
    } else {
        None
    };
    // Setting \Seen (RFC 9051 6.4.5): one transaction for all the targets,
    // not one commit (and fsync) per message.
    let mut seen_now: Vec<Uid> = Vec::new();
    if marks_seen {
        let unseen: Vec<Uid> = wanted
            .iter()
            .map(|&idx| &sel.msgs()[idx])
            .filter(|m| m.flags & SEEN == 0)
            .map(|m| m.uid)
            .collect();
        if !unseen.is_empty() {
            // Not setting \Seen is no side effect to skip: the client
            // would show the message as unread. Nothing was sent yet.
            let (changed, _) =
                wait(
                    ctx.store
                        .meta()
                        .store_flags(sel.folder_id, &unseen, FlagOp::Add, SEEN, &[], None),
                )
                .map_err(FetchError::Store)?;
            let adopted = wait(ctx.store.note_flag_changes(sel.folder_id, &changed))
                .is_some_and(|(old, new)| sel.adopt(&old, &new));
            for c in &changed {
                if let Some(i) = sel.index_of(c.uid).filter(|_| !adopted) {
                    let m = &mut sel.msgs_mut()[i];
                    m.flags = c.flags;
                    m.modseq = c.modseq;
                }
                sel.highestmodseq = sel.highestmodseq.max(c.modseq);
                seen_now.push(c.uid);
            }
            seen_now.sort_unstable();
        }
    }
    // Room for the typical line, so the buffer is not regrown (and its pages
    // faulted in) over and over for 10,000 messages.
    out.reserve(wanted.len() * if content { 256 } else { 48 });
    for (n, &idx) in wanted.iter().enumerate() {
        let head: Option<std::sync::Arc<[u8]>> = match &heads {
            Some(heads) => match heads.get(n).cloned().flatten() {
                // Expunged by another session meanwhile: skip it.
                None => continue,
                Some(h) => Some(h),
            },
            None => None,
        };
        let full: Option<Vec<u8>> = if content && head.is_none() {
            let m = &sel.msgs()[idx];
            let row = wait(ctx.store.meta().message(sel.folder_id, m.uid)).map_err(FetchError::Store)?;
            match row {
                // Expunged by another session meanwhile: skip it.
                None => continue,
                Some(row) => Some(ctx.store.message_bytes(&row).map_err(FetchError::Store)?),
            }
        } else {
            None
        };
        let flags_changed = seen_now.binary_search(&sel.msgs()[idx].uid).is_ok();
        let m = &sel.msgs()[idx];
        let recent = sel.show_recent && sel.is_recent(m.uid);
        let raw: &[u8] = head.as_deref().or(full.as_deref()).unwrap_or(&[]);
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
        if flags_changed && !has_flags {
            // RFC 9051 6.4.5: the \Seen change is reported in the response.
            if !items.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(b"FLAGS ");
            write_flag_list(out, m.flags, &m.keywords, recent);
            if sel.condstore && !items.iter().any(|i| matches!(i, MessageDataItemName::ModSeq)) {
                let _ = write!(Lossless(out), " MODSEQ ({})", m.modseq);
            }
        }
        out.extend_from_slice(b")\r\n");
    }
    Ok(())
}

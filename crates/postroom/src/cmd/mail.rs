use std::io::Write;

use postroom_store::mailbox::FolderRow;
use postroom_store::Store;

use super::{parse_address, wait, CmdResult, Context};
use crate::cli::{MailCmd, QueueCmd};

/// The first From address and the decoded Subject (RFC 2047), as `mail
/// list` shows them.
fn summary(message: &[u8]) -> (String, String) {
    use postroom_message::header;
    let fields: Vec<_> = header::fields(message).collect();
    let from = header::first_value(&fields, b"from")
        .and_then(|v| {
            header::mailboxes(&header::unfold(v))
                .first()
                .and_then(|m| m.addr_spec())
        })
        .unwrap_or_default();
    let subject = header::first_value(&fields, b"subject")
        .map(|v| postroom_message::decode::decode_rfc2047(&header::unfold(v)))
        .unwrap_or_default();
    (from, subject)
}

fn folder_of(store: &Store, address: &str, folder: &str) -> Result<FolderRow, String> {
    let addr = parse_address(address)?;
    let db = store.meta();
    let d = wait(db.domain(addr.domain().canonical()))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("domain {} is not hosted here", addr.domain()))?;
    let d = match d.alias_of {
        Some(t) => wait(db.domain_by_id(t))
            .map_err(|e| e.to_string())?
            .ok_or("dangling alias domain")?,
        None => d,
    };
    let acct = wait(db.account(d.id, addr.local_canonical()))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no mailbox {addr}"))?;
    let f = wait(db.find_folder(acct.id, folder))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no folder {folder}"))?;
    Ok(f)
}

pub fn mail(ctx: &Context, cmd: MailCmd) -> CmdResult {
    let store = ctx.store()?;
    let (address, folder) = match cmd {
        MailCmd::List { address, folder } => (address, folder),
        MailCmd::Show { address, uid, folder } => {
            let f = folder_of(&store, &address, &folder)?;
            let m = wait(store.meta().messages(f.id))
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|m| m.uid.as_i64() == uid)
                .ok_or_else(|| format!("no message with uid {uid} in {folder}"))?;
            let bytes = store.message_bytes(&m).map_err(|e| e.to_string())?;
            std::io::stdout().write_all(&bytes).map_err(|e| e.to_string())?;
            return Ok(());
        }
        MailCmd::Sweep { min_age } => {
            let r = wait(
                store.sweep_unreferenced_bodies(std::time::Duration::from_secs(min_age.saturating_mul(60))),
            )
            .map_err(|e| e.to_string())?;
            println!(
                "{} bodies stored more than {min_age} minutes ago; {} referred to by nothing: deleted",
                r.examined, r.deleted
            );
            return Ok(());
        }
    };
    let f = folder_of(&store, &address, &folder)?;
    let db = store.meta();
    for m in wait(db.messages(f.id)).map_err(|e| e.to_string())? {
        let bytes = store.message_bytes(&m).map_err(|e| e.to_string())?;
        let (from, subject) = summary(&bytes);
        let date = postroom_message::date::format_unix(m.internal_date);
        println!("{}\t{}\t{}\t{}\t{}", m.uid, date, from, subject, m.size);
    }
    Ok(())
}

/// `queue list`'s filters, all of which must match.
struct QueueFilter {
    state: Option<String>,
    sender: Option<String>,
    recipient: Option<String>,
    domain: Option<String>,
}

impl QueueFilter {
    fn keeps(&self, q: &postroom_store::queue::OutboundRow) -> bool {
        let domain_of = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_lowercase());
        self.state.as_ref().is_none_or(|s| *s == q.state)
            && self
                .sender
                .as_ref()
                .is_none_or(|s| q.sender.to_lowercase().contains(s.as_str()))
            && self
                .recipient
                .as_ref()
                .is_none_or(|r| q.recipient.to_lowercase().contains(r.as_str()))
            && self
                .domain
                .as_ref()
                .is_none_or(|d| domain_of(&q.recipient).as_deref() == Some(d.as_str()))
    }
}

fn queue_json(q: &postroom_store::queue::OutboundRow) -> serde_json::Value {
    serde_json::json!({
        "id": q.id.to_string(),
        "queue_id": q.queue_id,
        "state": q.state,
        "sender": q.sender,
        "recipient": q.recipient,
        "reason": q.reason,
        "hold_reason": q.hold_reason.map(|h| h.code()),
        "attempts": q.attempts,
        "next_attempt": q.next_attempt,
        "created": q.created,
    })
}

pub fn queue(ctx: &Context, cmd: QueueCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let me = ctx.actor.clone();
    let text = |e: postroom_admin::AdminError| e.to_string();
    let print = |q: &postroom_store::queue::OutboundRow| {
        let sender = if q.sender.is_empty() {
            "<>"
        } else {
            q.sender.as_str()
        };
        let code = q.hold_reason.map(|h| h.code()).unwrap_or("");
        println!(
            "{}\t{}\t{}\t{}\t{}\t{code}",
            q.queue_id, q.state, sender, q.recipient, q.reason
        );
    };
    wait(async {
        match cmd {
            QueueCmd::List {
                held,
                state,
                sender,
                recipient,
                domain,
                json,
            } => {
                let filter = QueueFilter {
                    state: state.or(held.then(|| "held".to_string())),
                    sender: sender.map(|s| s.to_lowercase()),
                    recipient: recipient.map(|s| s.to_lowercase()),
                    domain: domain.map(|s| s.trim_start_matches('@').to_lowercase()),
                };
                let rows: Vec<_> = admin
                    .queue_list()
                    .await
                    .map_err(text)?
                    .into_iter()
                    .filter(|q| filter.keeps(q))
                    .collect();
                if json {
                    for q in &rows {
                        println!("{}", queue_json(q));
                    }
                } else {
                    // The header only for a person: scripts that split the
                    // tab-separated lines (or use --json) get rows alone.
                    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        println!("QUEUE ID\tSTATE\tSENDER\tRECIPIENT\tREASON\tHELD AS");
                    }
                    for q in &rows {
                        print(q);
                    }
                    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        let n = rows.len();
                        println!("{n} item{}", if n == 1 { "" } else { "s" });
                    }
                }
            }
            QueueCmd::Flush => {
                let n = admin.queue_flush(&me).await.map_err(text)?;
                println!("{n} item{} will be tried now", if n == 1 { "" } else { "s" });
            }
            QueueCmd::Show { id } => {
                let (rows, head) = admin.queue_show(&id).await.map_err(text)?;
                for q in &rows {
                    println!(
                        "item {}: {} -> {} ({}), {} attempts, next attempt at {}",
                        q.id, q.sender, q.recipient, q.state, q.attempts, q.next_attempt
                    );
                    if !q.reason.is_empty() {
                        println!("  last: {}", q.reason);
                    }
                    if let Some(why) = q.hold_reason {
                        match &q.held_for {
                            Some(l) => println!(
                                "  held: {why}, a copy for mailbox {} ({}): release delivers it there",
                                l.account_id, l.folder
                            ),
                            None => println!("  held: {why}: release resolves the recipient again"),
                        }
                    }
                }
                std::io::stdout().write_all(&head).map_err(|e| e.to_string())?;
            }
            QueueCmd::Retry { id } => {
                let n = admin.queue_retry(&me, &id).await.map_err(text)?;
                println!("{n} items will be tried again now");
            }
            QueueCmd::Hold { id } => {
                let n = admin.queue_hold(&me, &id).await.map_err(text)?;
                println!("{n} items held");
            }
            QueueCmd::Release { id } => {
                let n = admin.queue_release(&me, &id).await.map_err(text)?;
                println!("{n} items released");
            }
            QueueCmd::Delete { id } => {
                let n = admin.queue_delete(&me, &id).await.map_err(text)?;
                println!("{n} items deleted");
            }
        }
        Ok(())
    })
}

//! The outbound queue: list, show, retry, hold, release, delete.

use std::collections::HashSet;

use postroom_core::Address;
use postroom_directory::{Lookup, Route};
use postroom_message::header::final_delivery_lines;
use postroom_store::queue::OutboundRow;
use postroom_store::{Delivery, FolderTarget, LocalDelivery, OutboundItem};

use crate::{now, Actor, AdminError, AdminService, Result};

/// The most of a queued message's header `queue show` reads: a header
/// section is rarely past 16 KiB; this keeps a hostile one bounded.
const MAX_HEAD_BYTES: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Retry,
    Hold,
}

impl AdminService {
    /// Every queue item, oldest first.
    pub async fn queue_list(&self) -> Result<Vec<OutboundRow>> {
        Ok(self.meta().outbound().await?)
    }

    /// The rows of one message (queue id) or one row (row id), and the
    /// message's trace prefix and header section.
    pub async fn queue_show(&self, id: &str) -> Result<(Vec<OutboundRow>, Vec<u8>)> {
        let rows: Vec<OutboundRow> = self
            .meta()
            .outbound()
            .await?
            .into_iter()
            .filter(|q| q.queue_id == id || q.id.to_string() == id)
            .collect();
        let Some(first) = rows.first() else {
            return Err(AdminError::NotFound(format!("no queue item {id}")));
        };
        let body = self
            .store
            .blobs
            .get_head(&first.blob_id)
            .map_err(|e| AdminError::Storage(e.into()))?;
        let body = &body[..body.len().min(MAX_HEAD_BYTES)];
        let head_end = postroom_message::header::header_section(body).len();
        let mut head = first.prefix.clone();
        head.extend_from_slice(&body[..head_end]);
        Ok((rows, head))
    }

    async fn queue_change(&self, actor: &Actor, id: &str, change: Change) -> Result<usize> {
        let (state, op) = match change {
            Change::Retry => ("deferred", "queue.retry"),
            Change::Hold => ("held", "queue.hold"),
        };
        let n = match self.meta().set_outbound_state(id, state, now()).await {
            Err(postroom_store::StoreError::Invalid(why)) => return Err(AdminError::NotFound(why)),
            r => r?,
        };
        self.record(actor, op, id, "", format!("{n} items")).await;
        Ok(n)
    }

    /// Tries the items again now.
    pub async fn queue_retry(&self, actor: &Actor, id: &str) -> Result<usize> {
        self.queue_change(actor, id, Change::Retry).await
    }

    /// Every waiting item (not held) is due now: `postroom queue flush`.
    /// By row, so a held item of the same message stays held.
    pub async fn queue_flush(&self, actor: &Actor) -> Result<usize> {
        let waiting: Vec<OutboundRow> = self
            .meta()
            .outbound()
            .await?
            .into_iter()
            .filter(|q| q.state != "held")
            .collect();
        let mut n = 0;
        for q in &waiting {
            match self
                .meta()
                .set_outbound_state(&q.id.to_string(), "deferred", now())
                .await
            {
                // Delivered or deleted meanwhile: nothing to flush.
                Err(postroom_store::StoreError::Invalid(_)) => {}
                r => n += r?,
            }
        }
        self.record(actor, "queue.flush", "", "", format!("{n} items"))
            .await;
        Ok(n)
    }

    pub async fn queue_hold(&self, actor: &Actor, id: &str) -> Result<usize> {
        self.queue_change(actor, id, Change::Hold).await
    }

    /// Releases the held items of a message (queue id) or one item (row
    /// id): see `release_one`. Items that are not held are left as they
    /// are; none held is `NotFound`.
    pub async fn queue_release(&self, actor: &Actor, id: &str) -> Result<usize> {
        let rows: Vec<OutboundRow> = self
            .meta()
            .outbound()
            .await?
            .into_iter()
            .filter(|q| (q.queue_id == id || q.id.to_string() == id) && q.state == "held")
            .collect();
        if rows.is_empty() {
            return Err(AdminError::NotFound(format!("no held queue item {id}")));
        }
        let (mut delivered, mut queued) = (0, 0);
        for row in &rows {
            match self.release_one(row).await {
                Ok(Released::Delivered) => delivered += 1,
                Ok(Released::Queued) => queued += 1,
                Err(e) => {
                    if delivered + queued > 0 {
                        self.record(
                            actor,
                            "queue.release",
                            id,
                            "",
                            format!("{delivered} delivered, {queued} queued, then: {e}"),
                        )
                        .await;
                    }
                    return Err(e);
                }
            }
            tracing::info!(
                target: "queue",
                queue_id = %row.queue_id,
                recipient = %row.recipient,
                reason = row.hold_reason.map(|r| r.code()).unwrap_or(""),
                "released"
            );
        }
        self.record(
            actor,
            "queue.release",
            id,
            "",
            format!("{} items: {delivered} delivered, {queued} queued", rows.len()),
        )
        .await;
        Ok(rows.len())
    }

    /// Drops the items without a bounce.
    pub async fn queue_delete(&self, actor: &Actor, id: &str) -> Result<usize> {
        let n = match self.store.delete_outbound(id).await {
            Err(postroom_store::StoreError::Invalid(why)) => return Err(AdminError::NotFound(why)),
            r => r?,
        };
        self.record(actor, "queue.delete", id, "", format!("{n} items"))
            .await;
        Ok(n)
    }
}

/// What `queue release` did with one held item.
enum Released {
    /// Committed into mailboxes (and any remote targets queued), in one
    /// delivery commit that also removed the held row.
    Delivered,
    /// A remote recipient, queued for the delivery worker.
    Queued,
}

impl AdminService {
    /// Releases one held row the way it was meant to go: a held local copy
    /// into its mailbox (role resolved in the commit); a remote recipient
    /// resolved again (issue #12: an address that is local now is
    /// delivered locally, not sent out by MX to ourselves), else queued.
    async fn release_one(&self, row: &OutboundRow) -> Result<Released> {
        let local_copy = |account_id, folder, prefix| LocalDelivery {
            account_id,
            folder,
            prefix,
            flags: 0,
            keywords: String::new(),
            internal_date: None,
            sent_copy_of: None,
        };
        let (local, outbound) = match &row.held_for {
            Some(h) => (
                vec![local_copy(h.account_id, h.folder.clone(), row.prefix.clone())],
                Vec::new(),
            ),
            None => {
                let Ok(addr) = Address::parse(&row.recipient, true) else {
                    return self.release_to_queue(row).await;
                };
                let res = match self.dir.resolve(&addr).await? {
                    Lookup::Found(res) => res,
                    Lookup::NotHosted | Lookup::Callout { .. } => return self.release_to_queue(row).await,
                    Lookup::Unknown => {
                        return Err(AdminError::Conflict(format!(
                            "{} does not exist: create it (or an alias) first, or 'queue delete' the item",
                            row.recipient
                        )))
                    }
                    Lookup::Loop(why) | Lookup::Unresolvable(why) => {
                        return Err(AdminError::Conflict(format!(
                            "{} still has nowhere to go: {why}",
                            row.recipient
                        )))
                    }
                };
                if res.gateway {
                    return self.release_to_queue(row).await;
                }
                let mut local = Vec::new();
                let mut outbound = Vec::new();
                let mut accounts = HashSet::new();
                for route in res.routes {
                    match route {
                        Route::Local {
                            account_id,
                            address,
                            enabled,
                        } => {
                            if enabled && accounts.insert(account_id) {
                                let mut prefix = final_delivery_lines(&row.sender, &address);
                                prefix.extend_from_slice(&row.prefix);
                                local.push(local_copy(account_id, FolderTarget::Inbox, prefix));
                            }
                        }
                        Route::Remote { address } => outbound.push(OutboundItem {
                            sender: row.sender.clone(),
                            recipient: address,
                            prefix: row.prefix.clone(),
                            held: None,
                        }),
                        Route::Held { address, hold } => outbound.push(OutboundItem {
                            sender: row.sender.clone(),
                            recipient: address,
                            prefix: row.prefix.clone(),
                            held: Some(hold),
                        }),
                    }
                }
                if local.is_empty() && outbound.is_empty() {
                    return Err(AdminError::Conflict(format!(
                        "{} has no enabled mailbox to deliver to",
                        row.recipient
                    )));
                }
                (local, outbound)
            }
        };
        // The body is shared, not copied: the new rows name the same blob.
        // Its size is read whole here (a release is rare and by hand; the
        // blob store keeps no size).
        let blob_size = self
            .store
            .blobs
            .get(&row.blob_id)
            .map_err(|e| AdminError::Storage(e.into()))?
            .len() as u64;
        let delivery = Delivery {
            queue_id: row.queue_id.clone(),
            blob_id: row.blob_id.clone(),
            blob_size,
            received_at: now(),
            local,
            outbound,
            released: vec![row.id],
        };
        match self.store.commit_delivery(delivery).await {
            Ok(()) => Ok(Released::Delivered),
            Err(postroom_store::StoreError::Invalid(why)) => Err(AdminError::Conflict(why)),
            Err(e) => Err(e.into()),
        }
    }

    async fn release_to_queue(&self, row: &OutboundRow) -> Result<Released> {
        match self
            .meta()
            .set_outbound_state(&row.id.to_string(), "queued", now())
            .await
        {
            Ok(_) => Ok(Released::Queued),
            Err(postroom_store::StoreError::Invalid(why)) => Err(AdminError::NotFound(why)),
            Err(e) => Err(e.into()),
        }
    }
}

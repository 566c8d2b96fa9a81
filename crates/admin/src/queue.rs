//! The outbound queue: list, show, retry, hold, release, delete.

use postroom_store::queue::OutboundRow;

use crate::{now, Actor, AdminError, AdminService, Result};

/// The most of a queued message's header `queue show` reads: a header
/// section is rarely past 16 KiB; this keeps a hostile one bounded.
const MAX_HEAD_BYTES: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Retry,
    Hold,
    Release,
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
        let head_end = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(body.len(), |i| i + 2);
        let mut head = first.prefix.clone();
        head.extend_from_slice(&body[..head_end]);
        Ok((rows, head))
    }

    async fn queue_change(&self, actor: &Actor, id: &str, change: Change) -> Result<usize> {
        let (state, op) = match change {
            Change::Retry => ("deferred", "queue.retry"),
            Change::Hold => ("held", "queue.hold"),
            Change::Release => ("queued", "queue.release"),
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

    pub async fn queue_hold(&self, actor: &Actor, id: &str) -> Result<usize> {
        self.queue_change(actor, id, Change::Hold).await
    }

    pub async fn queue_release(&self, actor: &Actor, id: &str) -> Result<usize> {
        self.queue_change(actor, id, Change::Release).await
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

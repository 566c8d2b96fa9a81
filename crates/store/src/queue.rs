//! The outbound queue rows (delivery itself comes with the outbound queue).

use crate::{Db, Result};

#[derive(Clone, Debug)]
pub struct OutboundRow {
    pub id: i64,
    pub queue_id: String,
    pub sender: String,
    pub recipient: String,
    pub state: String,
    pub reason: String,
    pub attempts: i64,
    pub created: i64,
}

impl Db {
    pub fn outbound(&self) -> Result<Vec<OutboundRow>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, queue_id, sender, recipient, state, reason, attempts, created FROM outbound ORDER BY id",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok(OutboundRow {
                        id: r.get(0)?,
                        queue_id: r.get(1)?,
                        sender: r.get(2)?,
                        recipient: r.get(3)?,
                        state: r.get(4)?,
                        reason: r.get(5)?,
                        attempts: r.get(6)?,
                        created: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

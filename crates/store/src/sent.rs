//! Server-side Sent copies (the seed's "move a copy to Sent" done once, at
//! submission): remembered for a while by Message-ID, so a client that also
//! APPENDs the message to its Sent folder is answered with the existing
//! copy instead of storing a second one.

use rusqlite::{params, OptionalExtension};

use crate::ids::{FolderId, Uid};
use crate::{Db, Result};

/// How long a client's APPEND of its own sent message finds the server's copy.
pub const SENT_COPY_WINDOW_SECS: i64 = 600;

impl Db {
    /// The UID of the server-side Sent copy of `message_id` in this folder,
    /// made within [`SENT_COPY_WINDOW_SECS`] and not expunged since.
    pub fn recent_sent_copy(&self, folder_id: FolderId, message_id: &str) -> Result<Option<Uid>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT s.uid FROM sent_copies s JOIN messages m ON m.folder_id = s.folder_id AND m.uid = s.uid
                 WHERE s.folder_id = ?1 AND s.message_id = ?2 AND s.created >= ?3
                 ORDER BY s.uid DESC LIMIT 1",
            )?
            .query_row(
                params![folder_id, message_id, now - SENT_COPY_WINDOW_SECS],
                |r| r.get(0),
            )
            .optional()?)
        })
    }
}

//! Server-wide, bounded caches for the mailbox read paths (IMAP and POP3).
//!
//! Both are shared by every session of the process, never per session (an
//! idle connection must stay small), and both are only ever a copy of what
//! the database says:
//!
//! - [`FolderCache`]: each folder's message list (UID, flags, MODSEQ...) as
//!   of one HIGHESTMODSEQ. Every change to a message row takes a new MODSEQ
//!   from its folder in the same transaction (folders.rs), and every removal
//!   leaves a tombstone with one, so a snapshot at MODSEQ M plus "what
//!   changed since M" (one query) is the folder's state: SELECT of a
//!   10,000-message folder reads no message rows when nothing changed.
//! - [`HeaderCache`]: the header block (per-delivery prefix, then the
//!   blob's header up to and including its blank line) of a message, keyed
//!   by (folder id, UID). A UID names one message for the life of its folder
//!   (RFC 9051 2.3.1.1; folder ids, which are also the UIDVALIDITY, are
//!   never reused), and a message's content never changes, so an entry can
//!   never be stale: it is only evicted.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::folders::MessageMeta;
use crate::ids::{FolderId, ModSeq, Uid};

/// Messages the folder cache holds in all (about 64 bytes each: ~32 MiB).
pub const FOLDER_CACHE_MESSAGES: usize = 500_000;
/// Bytes of header blocks the header cache holds (a typical header is
/// 0.5–2 KiB: 30,000 to 130,000 messages).
pub const HEADER_CACHE_BYTES: usize = 64 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A folder's message list, consistent as of `highestmodseq`.
#[derive(Debug)]
pub struct FolderSnapshot {
    pub folder_id: FolderId,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highestmodseq: ModSeq,
    /// By UID. Shared (not copied) by every session that selects the folder.
    pub msgs: Arc<Vec<MessageMeta>>,
    /// The keywords of `msgs`, worked out on first use: see
    /// [`FolderSnapshot::keywords`]. `Default::default()` when built.
    pub keywords: OnceLock<BTreeSet<String>>,
}

impl FolderSnapshot {
    /// The keywords the folder's messages carry (what SELECT's FLAGS
    /// announces, RFC 9051 7.3.5), read from the messages once per
    /// snapshot and shared by every session that selects it. Each SELECT
    /// used to read them from every message: in a 100,000-message INBOX
    /// that made SELECT 2.3 times slower than in a 1,000-message one
    /// (bench/imap-100k, issue #9).
    pub fn keywords(&self) -> &BTreeSet<String> {
        self.keywords.get_or_init(|| {
            self.msgs
                .iter()
                .filter(|m| !m.keywords.is_empty())
                .flat_map(|m| m.keywords.split(' '))
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect()
        })
    }

    /// This snapshot with `changed` (new or changed messages, by UID) and
    /// `expunged` (UIDs, ascending) folded in: one merge, no per-message
    /// searching or shifting.
    pub(crate) fn advanced(
        &self,
        uidnext: i64,
        highestmodseq: ModSeq,
        changed: Vec<MessageMeta>,
        expunged: &[Uid],
    ) -> FolderSnapshot {
        let old = &self.msgs;
        let mut out = Vec::with_capacity(old.len() + changed.len());
        let mut changed = changed.into_iter().peekable();
        let mut gone = expunged.iter().copied().peekable();
        for m in old.iter() {
            while changed.peek().is_some_and(|c| c.uid < m.uid) {
                out.extend(changed.next());
            }
            while gone.peek().is_some_and(|&u| u < m.uid) {
                gone.next();
            }
            if gone.peek() == Some(&m.uid) {
                continue;
            }
            match changed.peek() {
                Some(c) if c.uid == m.uid => out.extend(changed.next()),
                _ => out.push(m.clone()),
            }
        }
        out.extend(changed);
        FolderSnapshot {
            folder_id: self.folder_id,
            uidvalidity: self.uidvalidity,
            uidnext,
            highestmodseq,
            msgs: Arc::new(out),
            keywords: OnceLock::new(),
        }
    }
}

/// The latest snapshot of recently used folders, bounded by the number of
/// messages held in all.
pub struct FolderCache {
    inner: Mutex<FolderCacheInner>,
    max_messages: usize,
    /// Held while a snapshot is built (see [`FolderCache::building`]);
    /// async, since the build waits for the back end.
    build: tokio::sync::Mutex<()>,
}

struct FolderCacheInner {
    folders: HashMap<FolderId, (Arc<FolderSnapshot>, u64)>,
    messages: usize,
    clock: u64,
}

impl FolderCache {
    pub fn new(max_messages: usize) -> Self {
        FolderCache {
            inner: Mutex::new(FolderCacheInner {
                folders: HashMap::new(),
                messages: 0,
                clock: 0,
            }),
            max_messages,
            build: tokio::sync::Mutex::new(()),
        }
    }

    /// Serialises building snapshots: when one change wakes many sessions
    /// of a folder, one reads the changes and the others take its result.
    pub async fn building(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.build.lock().await
    }

    pub fn get(&self, folder_id: FolderId) -> Option<Arc<FolderSnapshot>> {
        let mut g = lock(&self.inner);
        g.clock += 1;
        let now = g.clock;
        let (snap, used) = g.folders.get_mut(&folder_id)?;
        *used = now;
        Some(Arc::clone(snap))
    }

    /// Keeps `snap` unless a newer one of its folder is there already.
    pub fn put(&self, snap: Arc<FolderSnapshot>) {
        let n = snap.msgs.len();
        if n > self.max_messages {
            return;
        }
        let mut g = lock(&self.inner);
        g.clock += 1;
        let now = g.clock;
        if let Some((old, _)) = g.folders.get(&snap.folder_id) {
            if old.highestmodseq > snap.highestmodseq {
                return;
            }
            let old_n = old.msgs.len();
            g.messages -= old_n;
        }
        g.folders.insert(snap.folder_id, (snap, now));
        g.messages += n;
        // Least recently used first; folder counts are small, a scan is fine.
        while g.messages > self.max_messages {
            let Some((&victim, _)) = g.folders.iter().min_by_key(|(_, (_, used))| *used) else {
                break;
            };
            if let Some((s, _)) = g.folders.remove(&victim) {
                g.messages -= s.msgs.len();
            }
        }
    }

    pub fn forget(&self, folder_id: FolderId) {
        let mut g = lock(&self.inner);
        if let Some((s, _)) = g.folders.remove(&folder_id) {
            g.messages -= s.msgs.len();
        }
    }
}

const SHARDS: usize = 16;
/// What an entry costs besides its bytes (map slot, ring slot, Arc header).
const ENTRY_OVERHEAD: usize = 64;

/// Header blocks by (folder id, UID), bounded in bytes; evicts with CLOCK
/// (second chance), so a full scan of a large folder does not keep pushing
/// out the entries that are in use.
pub struct HeaderCache {
    shards: Vec<Mutex<HeaderShard>>,
    budget_per_shard: usize,
}

/// (folder id, UID).
type Key = (i64, u32);

fn key(folder: FolderId, uid: Uid) -> Key {
    (folder.0, uid.0)
}

/// Keys are two small integers chosen by us, not by peers: a multiply-xor
/// hash is enough and much cheaper than SipHash for 10,000 lookups a SEARCH.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyMap<V> = HashMap<Key, V, std::hash::BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct HeaderShard {
    /// The block, and whether it was used since the clock hand last passed.
    map: KeyMap<(Arc<[u8]>, bool)>,
    ring: VecDeque<Key>,
    bytes: usize,
}

impl HeaderCache {
    pub fn new(max_bytes: usize) -> Self {
        HeaderCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HeaderShard::default())).collect(),
            budget_per_shard: max_bytes / SHARDS,
        }
    }

    fn shard_of(key: Key) -> usize {
        // UIDs are dense: spreading by UID keeps a folder's entries on all shards.
        let h = u64::from(key.1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (key.0 as u64);
        (h >> 32) as usize % SHARDS
    }

    fn shard(&self, key: Key) -> &Mutex<HeaderShard> {
        &self.shards[Self::shard_of(key)]
    }

    /// [`HeaderCache::get`] for many UIDs of a folder, taking each shard's
    /// lock once rather than once per message.
    pub fn get_many(&self, folder_id: FolderId, uids: &[Uid]) -> Vec<Option<Arc<[u8]>>> {
        let mut out = vec![None; uids.len()];
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); SHARDS];
        for (i, &u) in uids.iter().enumerate() {
            buckets[Self::shard_of(key(folder_id, u))].push(i);
        }
        for (shard, idx) in buckets.iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let mut s = lock(&self.shards[shard]);
            for &i in idx {
                if let Some((head, used)) = s.map.get_mut(&key(folder_id, uids[i])) {
                    *used = true;
                    out[i] = Some(Arc::clone(head));
                }
            }
        }
        out
    }

    pub fn get(&self, folder_id: FolderId, uid: Uid) -> Option<Arc<[u8]>> {
        let k = key(folder_id, uid);
        let mut s = lock(self.shard(k));
        let (head, used) = s.map.get_mut(&k)?;
        *used = true;
        Some(Arc::clone(head))
    }

    pub fn put(&self, folder_id: FolderId, uid: Uid, head: Arc<[u8]>) {
        let cost = head.len() + ENTRY_OVERHEAD;
        // One entry may not take more than an eighth of its shard.
        if cost > self.budget_per_shard / 8 {
            return;
        }
        let k = key(folder_id, uid);
        let mut s = lock(self.shard(k));
        if s.map.contains_key(&k) {
            return;
        }
        s.map.insert(k, (head, false));
        s.ring.push_back(k);
        s.bytes += cost;
        while s.bytes > self.budget_per_shard {
            let Some(k) = s.ring.pop_front() else {
                break;
            };
            match s.map.get_mut(&k) {
                Some((_, used)) if *used => {
                    *used = false;
                    s.ring.push_back(k);
                }
                Some(_) => {
                    if let Some((h, _)) = s.map.remove(&k) {
                        s.bytes -= h.len() + ENTRY_OVERHEAD;
                    }
                }
                None => {}
            }
        }
    }

    /// Bytes held (for tests and diagnostics).
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes).sum()
    }
}

/// Where the header of a message ends, or `None` while `buf` (the
/// message's beginning) has no empty line yet: the one rule of
/// postroom-message, so the cached header is the one IMAP parses.
pub use postroom_message::header_len;

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, flags: i64, modseq: i64) -> MessageMeta {
        MessageMeta {
            uid: Uid(uid),
            flags,
            keywords: String::new(),
            modseq: ModSeq(modseq),
            size: 1,
            internal_date: 0,
        }
    }

    #[test]
    fn header_end_like_the_parser() {
        assert_eq!(header_len(b"\r\nbody"), Some(2));
        assert_eq!(header_len(b"\nbody"), Some(1));
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(header_len(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_len(b"A: b\r\n \r\nC: d\r\n\r\n"), Some(17));
        assert_eq!(header_len(b"A: b\r\n"), None);
        assert_eq!(header_len(b"A: b\r\n\r"), None);
    }

    #[test]
    fn snapshot_merges_changes_and_expunges() {
        let s = FolderSnapshot {
            folder_id: FolderId(1),
            uidvalidity: 1,
            uidnext: 6,
            highestmodseq: ModSeq(5),
            msgs: Arc::new((1..=5).map(|u| meta(u, 0, i64::from(u))).collect()),
            keywords: OnceLock::new(),
        };
        let n = s.advanced(
            8,
            ModSeq(9),
            vec![meta(2, 1, 7), meta(6, 0, 8), meta(7, 0, 9)],
            &[Uid(1), Uid(4), Uid(6)],
        );
        let got: Vec<(u32, i64)> = n.msgs.iter().map(|m| (m.uid.0, m.flags)).collect();
        assert_eq!(got, [(2, 1), (3, 0), (5, 0), (6, 0), (7, 0)]);
        assert_eq!((n.uidnext, n.highestmodseq), (8, ModSeq(9)));
    }

    #[test]
    fn header_cache_stays_within_budget() {
        let c = HeaderCache::new(16 * 4096);
        for uid in 1..10_000 {
            c.put(FolderId(1), Uid(uid), Arc::from(vec![b'x'; 100]));
        }
        assert!(c.bytes() <= 16 * 4096);
        assert!(c.get(FolderId(1), Uid(9_999)).is_some());
    }

    #[test]
    fn folder_cache_evicts_least_recently_used() {
        let c = FolderCache::new(10);
        let snap = |id: i64, n: u32| {
            Arc::new(FolderSnapshot {
                folder_id: FolderId(id),
                uidvalidity: id,
                uidnext: i64::from(n) + 1,
                highestmodseq: ModSeq(1),
                msgs: Arc::new((1..=n).map(|u| meta(u, 0, 1)).collect()),
                keywords: OnceLock::new(),
            })
        };
        c.put(snap(1, 4));
        c.put(snap(2, 4));
        assert!(c.get(FolderId(1)).is_some());
        c.put(snap(3, 4));
        assert!(c.get(FolderId(1)).is_some() && c.get(FolderId(3)).is_some() && c.get(FolderId(2)).is_none());
    }
}

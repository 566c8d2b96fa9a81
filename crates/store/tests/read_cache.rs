//! The server-wide read caches agree with the database: after any mix of
//! appends, flag changes, copies and expunges, the cached folder snapshot
//! (brought up to date incrementally) equals a fresh read, and a cached
//! header block is the message's header exactly.

mod common;
use common::wait;

use postroom_store::folders::FlagOp;
use postroom_store::Uid;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn message(i: u64) -> Vec<u8> {
    format!("From: a{i}@example.com\r\nSubject: message {i}\r\n\r\nbody {i}\r\n.\r\n").into_bytes()
}

#[test]
fn snapshots_follow_every_change() {
    let (_dir, store, a, inbox) = common::one_mailbox();
    let archive = store
        .sqlite()
        .unwrap()
        .find_folder(a.id, "Archive")
        .unwrap()
        .unwrap();
    let mut rng = Lcg(7);
    for step in 0..400u64 {
        let uids: Vec<Uid> = store
            .sqlite()
            .unwrap()
            .message_meta(inbox.id)
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        let pick =
            |rng: &mut Lcg| -> Vec<Uid> { uids.iter().copied().filter(|_| rng.next(4) == 0).collect() };
        match rng.next(6) {
            0 | 1 => {
                wait(store.append(&inbox, &message(step), 0, "", None)).unwrap();
            }
            2 => {
                let u = pick(&mut rng);
                let op = [FlagOp::Add, FlagOp::Remove, FlagOp::Replace][rng.next(3) as usize];
                let (changed, _) = store
                    .sqlite()
                    .unwrap()
                    .store_flags(inbox.id, &u, op, rng.next(32) as i64, &["$x".to_string()], None)
                    .unwrap();
                // As IMAP does after its own STORE: fold them into the cache.
                if rng.next(2) == 0 {
                    wait(store.note_flag_changes(inbox.id, &changed));
                }
            }
            3 => {
                let u = pick(&mut rng);
                wait(store.meta().copy_messages(inbox.id, &u, archive.id)).unwrap();
            }
            4 => {
                let u = pick(&mut rng);
                wait(store.expunge(inbox.id, &u)).unwrap();
            }
            _ => {}
        }
        if rng.next(3) == 0 {
            for f in [inbox.id, archive.id] {
                let snap = wait(store.folder_snapshot(f, None)).unwrap().unwrap();
                let fresh = store.sqlite().unwrap().folder_state(f).unwrap().unwrap();
                assert_eq!(*snap.msgs, *fresh.msgs, "step {step}, folder {f}");
                assert_eq!(
                    (snap.uidnext, snap.highestmodseq),
                    (fresh.uidnext, fresh.highestmodseq)
                );
            }
        }
    }
    // Header blocks: the header up to its blank line, with the prefix.
    let metas = store.sqlite().unwrap().message_meta(archive.id).unwrap();
    let uids: Vec<Uid> = metas.iter().map(|m| m.uid).collect();
    for _ in 0..2 {
        let heads = wait(store.header_blocks(archive.id, &uids)).unwrap();
        for (u, h) in uids.iter().zip(heads) {
            let row = store.sqlite().unwrap().message(archive.id, *u).unwrap().unwrap();
            let full = store.message_bytes(&row).unwrap();
            let end = postroom_store::cache::header_len(&full).unwrap();
            assert_eq!(&h.unwrap()[..], &full[..end]);
        }
    }
    // A UID that does not exist has no block.
    assert!(wait(store.header_blocks(archive.id, &[Uid(1_000_000)])).unwrap()[0].is_none());
}

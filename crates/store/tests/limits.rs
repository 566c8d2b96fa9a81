//! Issue #8: an account cannot create folders without end, nor a folder
//! gather keywords without end; the limit answers `StoreError::Limit`.

mod common;
use common::wait;

use postroom_store::folders::{FlagOp, MAX_FOLDERS, MAX_KEYWORDS};
use postroom_store::{Store, StoreError};

const MESSAGE: &[u8] = b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n";

#[test]
fn folders_per_account_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let domain = store
        .sqlite()
        .unwrap()
        .add_domain("example.com", "example.com", None)
        .unwrap();
    let a = store
        .sqlite()
        .unwrap()
        .add_account(domain.id, "u", "u", None, None)
        .unwrap();
    let existing = store.sqlite().unwrap().folder_list(a.id).unwrap().len() as i64;
    for i in existing..MAX_FOLDERS {
        store
            .sqlite()
            .unwrap()
            .create_folder(a.id, &format!("f{i}"), None)
            .unwrap();
    }
    assert!(matches!(
        store.sqlite().unwrap().create_folder(a.id, "one more", None),
        Err(StoreError::Limit(_))
    ));
    // Another account is not affected.
    let b = store
        .sqlite()
        .unwrap()
        .add_account(domain.id, "v", "v", None, None)
        .unwrap();
    store.sqlite().unwrap().create_folder(b.id, "mine", None).unwrap();
}

#[test]
fn keywords_per_folder_are_limited() {
    let (_dir, store, a, inbox) = common::one_mailbox();
    let archive = store
        .sqlite()
        .unwrap()
        .find_folder(a.id, "Archive")
        .unwrap()
        .unwrap();
    let kw = |range: std::ops::Range<usize>| range.map(|i| format!("k{i}")).collect::<Vec<_>>();
    let uid = wait(store.append(&inbox, MESSAGE, 0, &kw(0..60).join(" "), None)).unwrap();
    // 60 + 40 = 100: allowed; a case variant of one is the same keyword.
    let (changed, _) = store
        .sqlite()
        .unwrap()
        .store_flags(inbox.id, &[uid], FlagOp::Add, 0, &kw(60..MAX_KEYWORDS), None)
        .unwrap();
    assert_eq!(changed.len(), 1);
    store
        .sqlite()
        .unwrap()
        .store_flags(inbox.id, &[uid], FlagOp::Add, 0, &["K1".into()], None)
        .unwrap();
    // One more distinct keyword, by STORE or by APPEND: refused, nothing changed.
    let before = store.sqlite().unwrap().message_meta(inbox.id).unwrap();
    assert!(matches!(
        store
            .sqlite()
            .unwrap()
            .store_flags(inbox.id, &[uid], FlagOp::Add, 0, &["new".into()], None),
        Err(StoreError::Limit(_))
    ));
    assert!(matches!(
        wait(store.append(&inbox, MESSAGE, 0, "new", None)),
        Err(StoreError::Limit(_))
    ));
    assert_eq!(store.sqlite().unwrap().message_meta(inbox.id).unwrap(), before);
    // Keywords already in the folder may be set on other messages.
    wait(store.append(&inbox, MESSAGE, 0, "k5 k7", None)).unwrap();
    // A copy that would take a folder past the limit is refused whole.
    wait(store.append(&archive, MESSAGE, 0, "other", None)).unwrap();
    assert!(matches!(
        wait(store.meta().copy_messages(inbox.id, &[uid], archive.id)),
        Err(StoreError::Limit(_))
    ));
    assert_eq!(store.sqlite().unwrap().message_meta(archive.id).unwrap().len(), 1);
}

/// A folder already past the limit (older data) still takes keywords it
/// has; only new ones are refused.
#[test]
fn a_folder_past_the_keyword_limit_keeps_working() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    let uid = wait(store.append(&inbox, MESSAGE, 0, "", None)).unwrap();
    let other = wait(store.append(&inbox, MESSAGE, 0, "", None)).unwrap();
    let many: Vec<String> = (0..MAX_KEYWORDS + 50).map(|i| format!("k{i}")).collect();
    let c = rusqlite::Connection::open(dir.path().join("postroom.sqlite")).unwrap();
    c.execute(
        "UPDATE messages SET keywords = ?1 WHERE folder_id = ?2 AND uid = ?3",
        rusqlite::params![many.join(" "), inbox.id, uid],
    )
    .unwrap();
    drop(c);
    store
        .sqlite()
        .unwrap()
        .store_flags(inbox.id, &[other], FlagOp::Add, 0, &["k140".into()], None)
        .unwrap();
    wait(store.append(&inbox, MESSAGE, 0, "k3", None)).unwrap();
    assert!(matches!(
        store
            .sqlite()
            .unwrap()
            .store_flags(inbox.id, &[other], FlagOp::Add, 0, &["new".into()], None),
        Err(StoreError::Limit(_))
    ));
}

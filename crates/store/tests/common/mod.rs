//! Helpers shared by the store's integration tests.

use std::path::Path;

/// The number of files under `dir`, at any depth: stored bodies when
/// `dir` is a data folder's `blobs`.
#[allow(dead_code)]
pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                count_files(&p)
            } else {
                1
            }
        })
        .sum()
}

/// Runs a store call to completion (the tests are synchronous; the store's
/// interface is async).
#[allow(dead_code)]
pub fn wait<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A store in a fresh temporary folder with one mailbox, `u@example.com`:
/// the folder (keep it alive), the store, the account and its INBOX.
#[allow(dead_code)]
pub fn one_mailbox() -> (
    tempfile::TempDir,
    postroom_store::Store,
    postroom_store::directory::AccountRow,
    postroom_store::mailbox::FolderRow,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = postroom_store::Store::open(dir.path()).unwrap();
    let db = store.sqlite().unwrap();
    let domain = db.add_domain("example.com", "example.com", None).unwrap();
    let a = db.add_account(domain.id, "u", "u", None, None).unwrap();
    let inbox = db.find_folder(a.id, "INBOX").unwrap().unwrap();
    (dir, store, a, inbox)
}

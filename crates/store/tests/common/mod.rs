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

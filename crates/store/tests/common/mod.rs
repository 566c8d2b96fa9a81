//! Helpers shared by the store's integration tests.

use std::path::Path;

/// The number of files under `dir`, at any depth: stored bodies when
/// `dir` is a data folder's `blobs`.
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

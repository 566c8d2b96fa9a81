//! What the pipeline's integration tests share: an `MxPipeline` on a
//! store, with no limits, no AUTH, no DNS, and the given filter.

use std::sync::Arc;

use postroom_directory::Directory;
use postroom_pipeline::{Filter, MemoryBudget, MxPipeline, RelayPolicy};
use postroom_store::Store;

pub fn test_pipeline(store: Store, hostname: &str, filter: Arc<dyn Filter>) -> MxPipeline {
    MxPipeline {
        sender_dns: None,
        limits: None,
        auth: None,
        expose_client_ip: false,
        hostname: hostname.into(),
        max_received_headers: 100,
        policy: RelayPolicy {
            trusted_networks: Default::default(),
            relay_denied_code: 554,
            reject_disabled_accounts: false,
            quota_code: 452,
        },
        directory: Directory::new(store.meta_handle(), None),
        store,
        filter,
        filter_time: std::time::Duration::from_secs(60),
        spam_reports: None,
        results: None,
        memory: MemoryBudget::new(1 << 30),
    }
}

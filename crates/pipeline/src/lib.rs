//! One pipeline for every message: policy at RCPT time (relay? valid
//! recipient? limits?), then at the end of data the filter stage (a verdict
//! per recipient), the router (mailboxes, outside addresses, held items) and
//! one durable commit, before the `250`.

pub mod content;
pub mod dkim;
pub mod filter;
pub mod filter_store;
mod gateway;
pub mod headers;
pub mod limits;
pub mod mx;
pub mod policy;
pub mod router;
pub mod spam_report;
pub mod srs;

pub use content::{ChainFilter, PolicySource, RcptPolicy};
pub use filter::{Filter, FilterInput, FilterOutcome, FilterRecipient, FilterReport, NoFilter, Verdict};
pub use mx::{filter_deadline, MemoryBudget, MessageSpool, MxPipeline};
pub use policy::RelayPolicy;

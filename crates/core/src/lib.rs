//! Shared types of Postroom: addresses in their canonical form, queue ids,
//! network helpers and secrets that never print themselves.

pub mod address;
pub mod hosted;
pub mod ids;
pub mod metrics;
pub mod net;
pub mod secret;

/// The header-field reader lives in `postroom-message`, the one place for
/// the message format (issue #10); re-exported so `postroom_core::header`
/// stays a name for it, not a second copy.
pub use postroom_message::header;

pub use address::{Address, AddressError, Domain};
pub use hosted::HostedDomainError;
pub use ids::QueueId;
pub use net::{ClientKey, IpNetList};
pub use secret::Secret;

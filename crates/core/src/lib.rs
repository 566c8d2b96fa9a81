//! Shared types of Postroom: addresses in their canonical form, queue ids,
//! network helpers and secrets that never print themselves.

pub mod address;
pub mod header;
pub mod hosted;
pub mod ids;
pub mod metrics;
pub mod net;
pub mod secret;

pub use address::{Address, AddressError, Domain};
pub use hosted::HostedDomainError;
pub use ids::QueueId;
pub use net::{ClientKey, IpNetList};
pub use secret::Secret;

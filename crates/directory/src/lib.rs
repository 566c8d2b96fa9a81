//! The directory: which domains are hosted, which addresses exist, and where
//! mail to an address goes (mailboxes, aliases, lists, catch-alls,
//! subaddresses, outside addresses). Also password hashing and the import of
//! Postfix virtual maps.

pub mod auth;
pub mod import;
pub mod password;
pub mod resolve;

pub use resolve::{Directory, Lookup, Origin, Pending, Resolution, Route};

//! POP3 (RFC 1939) with CAPA (RFC 2449), UIDL, TOP, USER/PASS, AUTH PLAIN
//! (RFC 5034) and STLS (RFC 2595).
//!
//! [`Session`] is sans-IO: bytes in, [`Action`]s out. Logging in, loading
//! the maildrop, reading a message and removing deleted messages at QUIT are
//! questions it asks the caller; [`service`] is the tokio glue that answers
//! them from the store.

pub mod service;
pub mod session;

pub use session::{Action, MaildropEntry, Session, SessionConfig};

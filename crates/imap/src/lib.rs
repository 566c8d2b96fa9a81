//! IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501).
//!
//! Command syntax comes from `imap-codec` ([`framing`] splits the byte
//! stream into commands, literals included, with size limits). [`session`]
//! is the state machine that carries them out, sans-IO;
//! [`selected`] keeps a selected mailbox's view consistent while other
//! sessions and deliveries change it; [`mime`] turns stored messages into
//! ENVELOPE, BODYSTRUCTURE and BODY[section]; [`service`] is the tokio glue.
//! [`storage`] is the sans-IO seam: what a command asks of the store, as a
//! value the glue carries out; the session holds no store.

pub mod extensions;
pub mod fetch;
pub mod format;
pub mod framing;
pub mod mime;
pub mod mutf7;
pub mod search;
pub mod selected;
pub mod sequence;
pub mod service;
pub mod session;
pub mod storage;

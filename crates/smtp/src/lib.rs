//! The SMTP server protocol (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING and STARTTLS).
//!
//! [`Session`] is sans-IO: it takes the bytes a peer sent and returns
//! [`Action`]s (replies to send, recipients to check, messages to deliver).
//! It touches no socket, clock or disk, so unit tests, property tests and
//! fuzzers drive it directly. [`service`] is the thin tokio glue that feeds it
//! from a connection.

pub mod command;
pub mod data;
pub mod reply;
pub mod service;
pub mod session;

pub use command::{Command, CommandError, MailParams, RcptTarget};
pub use reply::Reply;
pub use session::{
    Action, AuthFailure, BodyType, DeliveryOutcome, Envelope, RcptVerdict, Session, SessionConfig,
};

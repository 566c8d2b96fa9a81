//! Outbound delivery: the queue worker, MX routing (RFC 5321 5.1), the SMTP
//! client with opportunistic TLS, and bounces (RFC 3464).

pub mod callout;
pub mod client;
pub mod dns;
pub mod dsn;
pub mod sevenbit;
pub mod worker;

pub use worker::{DeliveryQueue, Injector, QueueSettings};

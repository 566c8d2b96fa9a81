//! Postroom's content filter (issue #10).
//!
//! Every incoming message passes through a [`Chain`] of [`Check`]s before
//! its `250`. A check names what it found as [`Symbol`]s with scores
//! (rspamd's model); the message's score is their sum, and the
//! [`policy`] turns it into an [`Action`] per recipient. A few findings
//! decide alone whatever the score ([`Forced`]): a virus or a
//! phishing-blocklisted link rejects, an unreachable clamd tempfails.
//! After scoring, the [`Rewriter`] (HTML disarming) may change the body.
//! The [`Report`] keeps every symbol with its detail, so every verdict can
//! be explained rule by rule (`postroom explain`).
//!
//! The crate is pure where it can be: the checks that need the network
//! (DNS, clamd) take their clients as values, so tests hand them a DNS
//! server on 127.0.0.1 or a real clamd.

pub mod attachments;
pub mod build;
pub mod chain;
pub mod check;
pub mod clamav;
pub mod classifier;
pub mod html;
pub mod links;
pub mod policy;
pub mod rules;
pub mod sender;
pub mod symbol;

/// The parser whose `Message` a [`Scan`] carries, for callers that build
/// one.
pub use mail_parser;

pub use build::{chain, Deps};
pub use chain::{Chain, CheckReport, Report};
pub use check::{Check, Envelope, Findings, Forced, Recipient, Rewriter, Rewritten, Scan};
pub use policy::{Action, DomainPolicy, Thresholds};
pub use symbol::Symbol;

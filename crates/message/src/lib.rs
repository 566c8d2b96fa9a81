//! The message format, in one place (issue #10): where the header ends and
//! what its fields are ([`header`]), the MIME tree with exact byte offsets
//! ([`mime`]), RFC 5322 dates ([`date`]), and decoding and encoding of
//! transfer encodings, charsets and RFC 2047 encoded words ([`decode`]).
//! IMAP, the outbound queue (7-bit conversion, bounces), the delivery
//! pipeline, the CLI and the content filter read messages through it.
//!
//! Everything here is pure (no I/O) and total: malformed input gives a
//! best-effort reading, never a panic, and every loop is bounded by the
//! input's length or by [`mime::MAX_DEPTH`] / [`mime::MAX_PARTS`].

pub mod date;
pub mod decode;
pub mod header;
pub mod mime;

pub use header::{header_end, header_len};

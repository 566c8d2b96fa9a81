//! Header rules: forged or missing Date/Message-ID, From/Reply-To
//! mismatch, all-caps subject, HTML-only, bad encodings.

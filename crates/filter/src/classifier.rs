//! The trainable statistical classifier over words, bigrams, link hosts
//! and selected headers.

use postroom_config::FilterClassifierConfig;

use crate::build::Deps;
use crate::check::Check;

/// The checks `[filter.classifier]` asks for.
pub fn checks(_config: &FilterClassifierConfig, _deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(Vec::new())
}

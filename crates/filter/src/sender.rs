//! Sender checks: forward-confirmed rDNS, HELO validity, SPF, DKIM, DMARC,
//! ARC, DNS blocklists, and the Authentication-Results header (RFC 8601).

use postroom_config::FilterSenderConfig;

use crate::build::Deps;
use crate::check::Check;

/// The checks `[filter.sender]` asks for.
pub fn checks(_config: &FilterSenderConfig, _deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(Vec::new())
}

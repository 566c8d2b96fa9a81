//! Attachment rules: file names (double extensions, dangerous types, very
//! long names) and the content type detected from magic bytes, inside zip
//! archives too.

use postroom_config::FilterAttachmentsConfig;

use crate::build::Deps;
use crate::check::Check;

/// The checks `[filter.attachments]` asks for.
pub fn checks(_config: &FilterAttachmentsConfig, _deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(Vec::new())
}

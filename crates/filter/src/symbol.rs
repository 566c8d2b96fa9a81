//! What a check found: a named symbol with a score and a detail.

use std::borrow::Cow;

use serde::Serialize;

/// One finding. Names are upper-case with underscores (`HTML_IFRAME`,
/// `SPF_FAIL`), stable, and overridable in `[filter.scores]`; the detail
/// says what exactly matched (`href=http://203.0.113.7/login`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Symbol {
    pub name: Cow<'static, str>,
    pub score: f64,
    pub detail: String,
}

impl Symbol {
    pub fn new(name: impl Into<Cow<'static, str>>, score: f64, detail: impl Into<String>) -> Symbol {
        Symbol {
            name: name.into(),
            score,
            detail: detail.into(),
        }
    }
}

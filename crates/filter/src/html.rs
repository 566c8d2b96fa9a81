//! HTML disarming with a real HTML rewriter: scripts, iframes, objects,
//! forms, on* handlers, javascript: URLs, web bugs and mismatched links;
//! {Cleaned} in the Subject.

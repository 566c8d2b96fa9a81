//! Attachment rules: file names (double extensions, dangerous types, very
//! long names) and the content type detected from magic bytes, inside zip
//! archives too.

//! Attachment rules: file names (double extensions, dangerous types, very
//! long names) and the content type detected from magic bytes, inside zip
//! archives too.
//!
//! Rules are tried in order, the provider's own first, then the built-in
//! ones; the first that matches decides. A denied file rejects the message
//! (`550 5.7.1`), whitelisted sender or not. Inside a zip only the central
//! directory and the first bytes of each entry are read, so a zip bomb
//! costs no more than its directory.

use std::io::{Cursor, Read};

use async_trait::async_trait;
use mail_parser::{MimeHeaders, PartType};
use postroom_config::{AttachmentRule, FilterAttachmentsConfig};

use crate::build::Deps;
use crate::check::{Check, Findings, Forced, Scan};

/// A file whose name or type a rule denies.
pub const DENIED: &str = "ATTACH_DENIED";
/// A document-looking name ending in an executable one
/// (`invoice.pdf.exe`): the classic disguise.
pub const DOUBLE_EXT: &str = "ATTACH_DOUBLE_EXT";
/// A name longer than `max_name_length`.
pub const LONG_NAME: &str = "ATTACH_LONG_NAME";
/// An executable by its first bytes, whatever its name says.
pub const EXECUTABLE: &str = "ATTACH_EXECUTABLE";
/// A password-protected archive.
pub const ENCRYPTED_ARCHIVE: &str = "ATTACH_ENCRYPTED_ARCHIVE";
/// A zip whose directory cannot be read, or past the limits: nothing
/// inside it was looked at.
pub const ARCHIVE_UNREADABLE: &str = "ATTACH_ARCHIVE_UNREADABLE";

/// The rejecting symbols carry a score too, so a report ranks them; the
/// rejection itself comes from `Forced::Reject`.
const SCORE_DENIED: f64 = 10.0;
/// With `encrypted_archives = "score"`: enough, with any other sign, for
/// the Junk folder.
const SCORE_ENCRYPTED: f64 = 4.0;
const SCORE_UNREADABLE: f64 = 1.0;

/// Bytes read from the start of a file (or a zip entry) to recognise its
/// type: `infer` needs at most a few hundred for the executable and
/// archive formats.
const MAGIC_BYTES: u64 = 512;
/// Parts looked at per message, and nested messages followed.
const MAX_PARTS: usize = 100;
const MAX_MESSAGE_DEPTH: usize = 3;

/// Extensions Windows, macOS or Office run or mount on a double click:
/// Gmail's blocked list (support.google.com/mail/answer/6590) without the
/// archive formats it also lists, which are opened and checked here
/// instead.
const DANGEROUS_EXTENSIONS: &[&str] = &[
    "ade",
    "adp",
    "apk",
    "appx",
    "appxbundle",
    "bat",
    "cab",
    "chm",
    "cmd",
    "com",
    "cpl",
    "diagcab",
    "diagcfg",
    "diagpkg",
    "dll",
    "dmg",
    "ex",
    "ex_",
    "exe",
    "hta",
    "img",
    "ins",
    "iso",
    "isp",
    "jar",
    "jnlp",
    "js",
    "jse",
    "lib",
    "lnk",
    "mde",
    "mjs",
    "msc",
    "msi",
    "msix",
    "msixbundle",
    "msp",
    "mst",
    "nsh",
    "pif",
    "ps1",
    "scr",
    "sct",
    "shb",
    "sys",
    "vb",
    "vbe",
    "vbs",
    "vhd",
    "vhdx",
    "vxd",
    "wsc",
    "wsf",
    "wsh",
    "xll",
    "url",
    "reg",
    "application",
    "gadget",
    "iqy",
    "slk",
    "settingcontent-ms",
    "library-ms",
    "searchconnector-ms",
];

/// Types, recognised from the first bytes, that run as programs.
const EXECUTABLE_TYPES: &[&str] = &[
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-executable",
    "application/x-mach-binary",
    "application/x-sharedlib",
    "application/vnd.android.package-archive",
];

/// Extensions a disguise puts first: what the reader thinks the file is.
const DOCUMENT_EXTENSIONS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "txt", "jpg", "jpeg", "png", "gif", "zip",
    "rar", "htm", "html", "mp3", "mp4", "csv", "odt", "ods",
];

/// The checks `[filter.attachments]` asks for.
pub fn checks(config: &FilterAttachmentsConfig, _deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(vec![Box::new(Attachments::new(config))])
}

/// What the rules say about one file.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Allow,
    Deny { symbol: &'static str, reason: String },
}

pub struct Attachments {
    rules: Vec<AttachmentRule>,
    default_rules: bool,
    max_name_length: usize,
    encrypted: Encrypted,
    max_zip_entries: usize,
    max_zip_depth: usize,
    max_nested_zip_bytes: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Encrypted {
    Reject,
    Score,
    Allow,
}

impl Attachments {
    pub fn new(config: &FilterAttachmentsConfig) -> Attachments {
        Attachments {
            rules: config.rules.clone(),
            default_rules: config.default_rules,
            max_name_length: config.max_name_length,
            encrypted: match config.encrypted_archives.as_str() {
                "allow" => Encrypted::Allow,
                "score" => Encrypted::Score,
                _ => Encrypted::Reject,
            },
            max_zip_entries: config.max_zip_entries,
            max_zip_depth: config.max_zip_depth,
            max_nested_zip_bytes: config.max_nested_zip_bytes,
        }
    }

    /// The rules for one file: its name (may be empty) and the type its
    /// first bytes show (`None` when unrecognised).
    pub fn judge(&self, name: &str, detected: Option<&str>) -> Verdict {
        let name = name.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if name.chars().count() > self.max_name_length {
            return Verdict::Deny {
                symbol: LONG_NAME,
                reason: format!("a file name longer than {} characters", self.max_name_length),
            };
        }
        let lower = name.to_lowercase();
        for rule in &self.rules {
            let name_ok = rule
                .name
                .as_deref()
                .is_none_or(|p| glob(&p.to_lowercase(), &lower));
            let type_ok = rule
                .content_type
                .as_deref()
                .is_none_or(|t| detected.is_some_and(|d| d.eq_ignore_ascii_case(t)));
            if name_ok && type_ok {
                return if rule.action == "allow" {
                    Verdict::Allow
                } else {
                    let why = if rule.reason.is_empty() {
                        "denied by a rule"
                    } else {
                        &rule.reason
                    };
                    Verdict::Deny {
                        symbol: DENIED,
                        reason: format!("{}: {why}", describe(name, detected)),
                    }
                };
            }
        }
        if !self.default_rules {
            return Verdict::Allow;
        }
        // Windows ignores trailing dots and spaces: "a.exe ." runs.
        let trimmed = lower.trim_end_matches(['.', ' ']);
        let mut exts = trimmed.rsplit('.');
        let last = exts.next().unwrap_or("");
        let before = exts.next();
        let has_ext = trimmed.contains('.');
        if has_ext && DANGEROUS_EXTENSIONS.contains(&last) {
            let hidden = before
                .map(str::trim)
                .is_some_and(|b| DOCUMENT_EXTENSIONS.contains(&b) && trimmed.matches('.').count() >= 2);
            return if hidden {
                Verdict::Deny {
                    symbol: DOUBLE_EXT,
                    reason: format!("{name}: an executable named as a document"),
                }
            } else {
                Verdict::Deny {
                    symbol: DENIED,
                    reason: format!("{name}: .{last} files can run programs"),
                }
            };
        }
        if let Some(t) = detected.filter(|t| EXECUTABLE_TYPES.contains(t)) {
            return Verdict::Deny {
                symbol: EXECUTABLE,
                reason: format!(
                    "{}: a program ({t})",
                    if name.is_empty() { "an attachment" } else { name }
                ),
            };
        }
        Verdict::Allow
    }

    /// Every attachment of the message, and every file in its zips.
    pub fn scan(&self, message: &mail_parser::Message<'_>, out: &mut Findings) {
        self.scan_message(message, 0, out);
    }

    fn scan_message(&self, message: &mail_parser::Message<'_>, depth: usize, out: &mut Findings) {
        for part in message.parts.iter().take(MAX_PARTS) {
            if out.forced.is_some() {
                return;
            }
            let data: &[u8] = match &part.body {
                PartType::Binary(b) | PartType::InlineBinary(b) => b,
                PartType::Text(t) | PartType::Html(t) => {
                    // Text is judged by its name only (a .js or .hta is
                    // text); a text part without a name is the message.
                    if part.attachment_name().is_none() {
                        continue;
                    }
                    t.as_bytes()
                }
                PartType::Message(inner) => {
                    if depth < MAX_MESSAGE_DEPTH {
                        self.scan_message(inner, depth + 1, out);
                    }
                    continue;
                }
                PartType::Multipart(_) => continue,
            };
            let name = part.attachment_name().unwrap_or("");
            let head = &data[..data.len().min(MAGIC_BYTES as usize)];
            let detected = infer::get(head).map(|t| t.mime_type());
            if let Verdict::Deny { symbol, reason } = self.judge(name, detected) {
                deny(out, symbol, reason);
                return;
            }
            if detected == Some("application/zip") || name.to_lowercase().ends_with(".zip") {
                self.scan_zip(name, data, 0, out);
            }
        }
    }

    fn scan_zip(&self, outer: &str, data: &[u8], depth: usize, out: &mut Findings) {
        let mut zip = match zip::ZipArchive::new(Cursor::new(data)) {
            Ok(z) => z,
            Err(e) => {
                // Not a zip after all (a .zip name on something else), or
                // a broken one: nothing inside can be looked at.
                if data.starts_with(b"PK") {
                    out.add(ARCHIVE_UNREADABLE, SCORE_UNREADABLE, format!("{outer}: {e}"));
                }
                return;
            }
        };
        if zip.len() > self.max_zip_entries {
            out.add(
                ARCHIVE_UNREADABLE,
                SCORE_UNREADABLE,
                format!(
                    "{outer}: {} entries; the first {} looked at",
                    zip.len(),
                    self.max_zip_entries
                ),
            );
        }
        for i in 0..zip.len().min(self.max_zip_entries) {
            let (name, encrypted, size, is_dir) = match zip.by_index_raw(i) {
                Ok(f) => (
                    f.name().map(|n| n.into_owned()).unwrap_or_default(),
                    f.encrypted(),
                    f.size(),
                    f.is_dir(),
                ),
                Err(e) => {
                    out.add(
                        ARCHIVE_UNREADABLE,
                        SCORE_UNREADABLE,
                        format!("{outer}: entry {i}: {e}"),
                    );
                    continue;
                }
            };
            if is_dir {
                continue;
            }
            let base = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_owned();
            if encrypted {
                match self.encrypted {
                    Encrypted::Reject => {
                        deny(
                            out,
                            ENCRYPTED_ARCHIVE,
                            format!("{outer}: a password-protected archive ({base})"),
                        );
                        return;
                    }
                    Encrypted::Score => {
                        if !out.symbols.iter().any(|s| s.name == ENCRYPTED_ARCHIVE) {
                            out.add(
                                ENCRYPTED_ARCHIVE,
                                SCORE_ENCRYPTED,
                                format!("{outer}: password-protected ({base})"),
                            );
                        }
                    }
                    Encrypted::Allow => {}
                }
                // The name is still judged; the content cannot be.
                if let Verdict::Deny { symbol, reason } = self.judge(&base, None) {
                    deny(out, symbol, format!("in {outer}: {reason}"));
                    return;
                }
                continue;
            }
            let mut head = Vec::with_capacity(MAGIC_BYTES as usize);
            let read = zip.by_index(i).and_then(|f| {
                f.take(MAGIC_BYTES).read_to_end(&mut head)?;
                Ok(())
            });
            let detected = if read.is_ok() {
                infer::get(&head).map(|t| t.mime_type())
            } else {
                None
            };
            if let Verdict::Deny { symbol, reason } = self.judge(&base, detected) {
                deny(out, symbol, format!("in {outer}: {reason}"));
                return;
            }
            let inner_zip = detected == Some("application/zip") || base.to_lowercase().ends_with(".zip");
            if inner_zip && depth + 1 < self.max_zip_depth {
                if size > self.max_nested_zip_bytes {
                    out.add(
                        ARCHIVE_UNREADABLE,
                        SCORE_UNREADABLE,
                        format!(
                            "{outer}/{base}: larger than {} bytes, not opened",
                            self.max_nested_zip_bytes
                        ),
                    );
                    continue;
                }
                let mut inner = Vec::new();
                let ok = zip
                    .by_index(i)
                    .and_then(|f| {
                        f.take(self.max_nested_zip_bytes).read_to_end(&mut inner)?;
                        Ok(())
                    })
                    .is_ok();
                if ok {
                    self.scan_zip(&format!("{outer}/{base}"), &inner, depth + 1, out);
                    if out.forced.is_some() {
                        return;
                    }
                }
            } else if inner_zip {
                out.add(
                    ARCHIVE_UNREADABLE,
                    SCORE_UNREADABLE,
                    format!("{outer}/{base}: zips nested deeper than {}", self.max_zip_depth),
                );
            }
        }
    }
}

fn deny(out: &mut Findings, symbol: &'static str, reason: String) {
    out.add(symbol, SCORE_DENIED, reason.clone());
    out.force(Forced::Reject {
        symbol: symbol.into(),
        reason,
    });
}

fn describe(name: &str, detected: Option<&str>) -> String {
    match (name.is_empty(), detected) {
        (false, Some(t)) => format!("{name} ({t})"),
        (false, None) => name.to_owned(),
        (true, Some(t)) => format!("an attachment ({t})"),
        (true, None) => "an attachment".into(),
    }
}

/// `*` and `?` wildcards over the whole name (both lower case).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[async_trait]
impl Check for Attachments {
    fn name(&self) -> &'static str {
        "attachments"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        self.scan(scan.message, out);
    }

    fn whitelist_skips(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att() -> Attachments {
        Attachments::new(&FilterAttachmentsConfig::default())
    }

    fn denied(v: &Verdict) -> Option<&'static str> {
        match v {
            Verdict::Deny { symbol, .. } => Some(symbol),
            Verdict::Allow => None,
        }
    }

    #[test]
    fn default_rules() {
        let a = att();
        assert_eq!(denied(&a.judge("invoice.pdf.exe", None)), Some(DOUBLE_EXT));
        assert_eq!(denied(&a.judge("Invoice.PDF   .EXE", None)), Some(DOUBLE_EXT));
        for bad in [
            "setup.exe",
            "x.scr",
            "a.js",
            "b.vbs",
            "c.lnk",
            "d.hta",
            "e.iso",
            "f.exe.",
            "g.exe ",
        ] {
            assert!(denied(&a.judge(bad, None)).is_some(), "{bad}");
        }
        for ok in [
            "report.pdf",
            "photo.2024.jpg",
            "archive.tar.gz",
            "notes.txt",
            "",
            "exe",
            "my.json",
        ] {
            assert_eq!(a.judge(ok, None), Verdict::Allow, "{ok}");
        }
        assert_eq!(denied(&a.judge(&"a".repeat(151), None)), Some(LONG_NAME));
        assert_eq!(
            denied(&a.judge(
                "report.pdf",
                Some("application/vnd.microsoft.portable-executable")
            )),
            Some(EXECUTABLE)
        );
    }

    #[test]
    fn the_providers_rules_come_first() {
        let config = FilterAttachmentsConfig {
            rules: vec![
                AttachmentRule {
                    action: "allow".into(),
                    name: Some("*.JS".into()),
                    content_type: None,
                    reason: String::new(),
                },
                AttachmentRule {
                    action: "deny".into(),
                    name: None,
                    content_type: Some("application/pdf".into()),
                    reason: "no PDFs here".into(),
                },
            ],
            ..Default::default()
        };
        let a = Attachments::new(&config);
        assert_eq!(a.judge("build.js", None), Verdict::Allow);
        assert!(
            matches!(a.judge("x.pdf", Some("application/pdf")), Verdict::Deny { symbol: DENIED, reason } if reason.contains("no PDFs"))
        );
        assert!(denied(&a.judge("x.exe", None)).is_some());
    }

    fn zip_of(files: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .large_file(true);
        for (name, data) in files {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn message_with_zip(zip: &[u8]) -> Vec<u8> {
        use std::fmt::Write;
        let mut b64 = String::new();
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (i, c) in zip.chunks(3).enumerate() {
            if i > 0 && i % 19 == 0 {
                b64.push_str("\r\n");
            }
            let n =
                (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for k in 0..4 {
                let ch = if k <= c.len() {
                    T[(n >> (18 - 6 * k) & 63) as usize] as char
                } else {
                    '='
                };
                let _ = write!(b64, "{ch}");
            }
        }
        format!(
            "Subject: z\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"a.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    fn scan_with(config: &FilterAttachmentsConfig, raw: &[u8]) -> Findings {
        let m = mail_parser::MessageParser::default().parse(raw).unwrap();
        let mut out = Findings::default();
        Attachments::new(config).scan(&m, &mut out);
        out
    }

    #[test]
    fn a_zip_bomb_is_read_no_further_than_its_first_bytes() {
        // 8 MiB of zeros deflate to 8 KB (a real bomb goes on to
        // gigabytes the same way); only the first 512 bytes are inflated,
        // and the entry is judged by them (nothing to refuse).
        let zeros = vec![0u8; 8 << 20];
        let bomb = zip_of(&[("zeros.bin", &zeros)], zip::CompressionMethod::Deflated);
        drop(zeros);
        assert!(bomb.len() < 64 << 10);
        let out = scan_with(&FilterAttachmentsConfig::default(), &message_with_zip(&bomb));
        assert!(
            out.forced.is_none() && out.symbols.is_empty(),
            "{:?}",
            out.symbols
        );
        // A zip inside a zip is opened only up to max_nested_zip_bytes and
        // max_zip_depth; past them, it is named and not opened.
        let exe = b"MZ\x90\x00";
        let inner = zip_of(&[("setup.bin", exe)], zip::CompressionMethod::Stored);
        let middle = zip_of(&[("inner.zip", &inner)], zip::CompressionMethod::Stored);
        let outer = zip_of(&[("middle.zip", &middle)], zip::CompressionMethod::Stored);
        let deep = FilterAttachmentsConfig {
            max_zip_depth: 3,
            ..Default::default()
        };
        let out = scan_with(&deep, &message_with_zip(&outer));
        assert!(
            matches!(&out.forced, Some(Forced::Reject { symbol, .. }) if symbol == EXECUTABLE),
            "{:?}",
            out.symbols
        );
        let out = scan_with(&FilterAttachmentsConfig::default(), &message_with_zip(&outer));
        assert!(out.forced.is_none());
        assert!(
            out.symbols
                .iter()
                .any(|s| s.name == ARCHIVE_UNREADABLE && s.detail.contains("deeper")),
            "{:?}",
            out.symbols
        );
        let small = FilterAttachmentsConfig {
            max_zip_depth: 3,
            max_nested_zip_bytes: 100,
            ..Default::default()
        };
        let out = scan_with(&small, &message_with_zip(&outer));
        assert!(out.forced.is_none());
        assert!(
            out.symbols
                .iter()
                .any(|s| s.name == ARCHIVE_UNREADABLE && s.detail.contains("not opened")),
            "{:?}",
            out.symbols
        );
    }

    #[test]
    fn too_many_entries_are_named() {
        let names: Vec<String> = (0..20).map(|i| format!("f{i}.txt")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), b"x".as_slice())).collect();
        let z = zip_of(&files, zip::CompressionMethod::Stored);
        let config = FilterAttachmentsConfig {
            max_zip_entries: 5,
            ..Default::default()
        };
        let out = scan_with(&config, &message_with_zip(&z));
        assert!(
            out.symbols.iter().any(|s| s.name == ARCHIVE_UNREADABLE),
            "{:?}",
            out.symbols
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*.exe", "a.exe"));
        assert!(glob("a?c*", "abcdef"));
        assert!(!glob("*.exe", "a.exe.txt"));
        assert!(glob("*", ""));
        assert!(glob("*a*b", "xxaxxb"));
    }
}

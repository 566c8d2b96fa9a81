//! Writing IMAP response syntax (RFC 9051 9): strings as quoted or literal,
//! flag lists, dates, sequence sets.

use std::fmt::Write as _;

use postroom_store::Uid;

/// System flags, stored as bits.
pub const SEEN: i64 = 1;
pub const ANSWERED: i64 = 2;
pub const FLAGGED: i64 = 4;
pub const DELETED: i64 = 8;
pub const DRAFT: i64 = 16;

pub const SYSTEM_FLAGS: [(i64, &str); 5] = [
    (SEEN, "\\Seen"),
    (ANSWERED, "\\Answered"),
    (FLAGGED, "\\Flagged"),
    (DELETED, "\\Deleted"),
    (DRAFT, "\\Draft"),
];

/// Appends a number in decimal (FETCH writes tens of thousands of them;
/// `write!` costs several times more).
pub fn push_num(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// `(\Seen \Flagged $Junk)`; `recent` adds `\Recent` (IMAP4rev1 only).
pub fn flag_list(flags: i64, keywords: &str, recent: bool) -> String {
    let mut out = Vec::new();
    write_flag_list(&mut out, flags, keywords, recent);
    String::from_utf8(out).unwrap_or_default()
}

/// [`flag_list`], appended to `out` (FETCH writes thousands of them).
pub fn write_flag_list(out: &mut Vec<u8>, flags: i64, keywords: &str, recent: bool) {
    out.push(b'(');
    let mut first = true;
    let mut add = |out: &mut Vec<u8>, s: &str| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
        out.extend_from_slice(s.as_bytes());
    };
    for (b, name) in SYSTEM_FLAGS {
        if flags & b != 0 {
            add(out, name);
        }
    }
    if recent {
        add(out, "\\Recent");
    }
    for k in keywords.split(' ').filter(|k| !k.is_empty()) {
        add(out, k);
    }
    out.push(b')');
}

/// A string as `quoted` when it can be, else as a literal (`{n}` CRLF bytes).
/// `utf8`: 8-bit text may be quoted (UTF8=ACCEPT / IMAP4rev2).
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() < 1024
        && s.iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (b < 0x80 || utf8))
        && (utf8 || s.is_ascii())
        && std::str::from_utf8(s).is_ok();
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(Lossless(out), "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

/// `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name (stored in UTF-8): an atom when it is one, else a
/// string; in modified UTF-7 for clients without UTF8=ACCEPT.
pub fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    let encoded;
    let name = if utf8 || name.is_ascii() && !name.contains('&') {
        name
    } else {
        encoded = crate::mutf7::encode(name);
        encoded.as_str()
    };
    let atom = !name.is_empty()
        && name
            .bytes()
            .all(|b| b > 0x20 && b < 0x7f && !b"(){ %*\"\\]".contains(&b));
    if atom {
        out.extend_from_slice(name.as_bytes());
    } else {
        string(out, name.as_bytes(), utf8);
    }
}

/// Lets `write!` append to a `Vec<u8>`.
pub struct Lossless<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Lossless<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 to (year, month 1-12, day) — Howard Hinnant's
/// civil-from-days.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// INTERNALDATE: `"17-Jul-1996 02:44:25 +0000"` (RFC 9051 9, date-time).
pub fn internal_date(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// UIDs as a compact sequence set (`1:3,7`), for COPYUID and friends.
pub fn uid_set(uids: &[Uid]) -> String {
    let nums: Vec<u32> = uids.iter().map(|u| u.get()).collect();
    number_set(&nums)
}

/// Numbers (UIDs or message numbers) as a compact sequence set (`1:3,7`).
pub fn number_set(nums: &[u32]) -> String {
    let mut sorted = nums.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && Some(sorted[i + 1]) == end.checked_add(1) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

/// The same order as given (COPYUID lists source and target in matching
/// order, RFC 4315 3), compressed only where both run in step.
pub fn uid_list(uids: &[Uid]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && Some(uids[i + 1].get()) == end.get().checked_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_display() {
        for n in [0, 7, 10, 99, 4_294_967_295, -12, i64::MAX, i64::MIN] {
            let mut v = Vec::new();
            push_num(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
        assert_eq!(
            flag_list(SEEN | FLAGGED, "$Junk a", true),
            "(\\Seen \\Flagged \\Recent $Junk a)"
        );
        assert_eq!(flag_list(0, "", false), "()");
    }

    #[test]
    fn dates() {
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(internal_date(837_571_465), "\"17-Jul-1996 02:44:25 +0000\"");
        for days in [-1000, 0, 59, 60, 11_000, 20_000, 30_000] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn strings_and_sets() {
        let mut v = Vec::new();
        string(&mut v, b"a \"b\"", false);
        assert_eq!(v, b"\"a \\\"b\\\"\"");
        let mut v = Vec::new();
        string(&mut v, "é".as_bytes(), false);
        assert_eq!(v, b"{2}\r\n\xc3\xa9");
        assert_eq!(uid_set(&[5, 1, 2, 3, 9].map(Uid)), "1:3,5,9");
        assert_eq!(
            flag_list(SEEN | DELETED, "$Junk", true),
            "(\\Seen \\Deleted \\Recent $Junk)"
        );
        let mut v = Vec::new();
        mailbox(&mut v, "Sent Items", false);
        assert_eq!(v, b"\"Sent Items\"");
    }
}

//! RFC 5322 3.3 dates: one parser ([`parse`]) and one writer
//! ([`format`]) for the Date: of messages Postroom writes (bounces, the
//! Date: added on submission, Received lines, the held-mail report) and the
//! Date: it reads (IMAP SEARCH SENT*).
//!
//! mail-parser has a date parser, but it accepts less of RFC 5322 4.3's
//! obsolete syntax than IMAP SEARCH needs (two-digit years, military
//! zones) and gives no zone offset for a named zone, and httpdate writes
//! `GMT` where RFC 5322 3.3 wants a numeric zone: both are left out.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::header::{is_wsp, read_comment};

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn month_number(word: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
    ];
    let prefix = word.get(..3)?.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == prefix.as_slice())
        .map(|i| i as i64 + 1)
}

fn number(word: &[u8], max_len: usize) -> Option<i64> {
    if word.is_empty() || word.len() > max_len || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// Zone offset in seconds east of UTC.
fn zone_offset(word: &[u8]) -> Option<i32> {
    match word.first()? {
        sign @ (b'+' | b'-') => {
            let digits = &word[1..];
            if digits.len() != 4 {
                return None;
            }
            let n = number(digits, 4)?;
            let (h, m) = (n / 100, n % 100);
            if m > 59 {
                return None;
            }
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => {
            let hours = match word.to_ascii_uppercase().as_slice() {
                b"UT" | b"UTC" | b"GMT" | b"Z" => 0,
                b"EDT" => -4,
                b"EST" | b"CDT" => -5,
                b"CST" | b"MDT" => -6,
                b"MST" | b"PDT" => -7,
                b"PST" => -8,
                // Military zones: RFC 5322 says treat them as -0000.
                w if w.len() == 1 && w[0].is_ascii_alphabetic() => 0,
                _ => return None,
            };
            Some(hours * 3600)
        }
    }
}

/// An RFC 5322 3.3 date-time (obsolete forms of 4.3 included: two- and
/// three-digit years, named zones, no seconds) as (unix seconds, the zone's
/// offset in seconds east of UTC); `None` when it is not one. The one
/// parser of dates in messages: IMAP SEARCH SENT*, and the filter's Date
/// checks.
pub fn parse(value: &[u8]) -> Option<(i64, i32)> {
    // Comments out, then words split on white space and commas.
    let mut clean = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b == b'(' {
            read_comment(value, &mut i);
            clean.push(b' ');
        } else {
            clean.push(b);
            i += 1;
        }
    }
    let mut words = clean
        .split(|&b| is_wsp(b) || b == b',')
        .filter(|w| !w.is_empty())
        .peekable();
    // Optional day of week.
    if let Some(w) = words.peek() {
        if w.iter().all(u8::is_ascii_alphabetic) {
            words.next();
        }
    }
    let day = number(words.next()?, 2)?;
    let month = month_number(words.next()?)?;
    let year_word = words.next()?;
    let year = number(year_word, 4)?;
    let year = match year_word.len() {
        1 | 2 if year < 50 => year + 2000,
        1..=3 => year + 1900,
        _ => year,
    };
    let mut time = words.next()?.split(|&b| b == b':');
    let hour = number(time.next()?, 2)?;
    let minute = number(time.next()?, 2)?;
    let second = match time.next() {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if time.next().is_some() {
        return None;
    }
    let zone = match words.next() {
        Some(w) => zone_offset(w).unwrap_or(0),
        None => 0,
    };
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local - i64::from(zone), zone))
}

/// Proleptic Gregorian (year, month, day) of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `t` as an RFC 5322 3.3 date-time in UTC with a numeric zone
/// (`Tue, 08 Dec 2026 02:40:00 +0000`). Times before 1970 are written as
/// 1970-01-01 (no message Postroom writes is dated before it).
pub fn format(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    format_unix(secs)
}

/// [`format`] for unix seconds.
pub fn format_unix(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Four-digit years only (RFC 5322 3.3 `year = 4*DIGIT`, and the
    // parser's limit): 9999-12-31T23:59:59Z at most.
    let secs = secs.clamp(0, 253_402_300_799);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1).clamp(0, 11) as usize];
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_numeric_zone() {
        assert_eq!(format(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(format_unix(784_111_777), "Sun, 06 Nov 1994 08:49:37 +0000");
        assert_eq!(format_unix(1_796_697_600), "Tue, 08 Dec 2026 02:40:00 +0000");
        assert_eq!(format_unix(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn reads_obsolete_forms() {
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some((784_111_777, 0)));
        assert_eq!(parse(b"6 Nov 94 09:49 +0100 (CET)"), Some((784_111_740, 3600)));
        assert_eq!(
            parse(b"Sun, 06 Nov 1994 03:49:37 EST"),
            Some((784_111_777, -5 * 3600))
        );
        assert_eq!(parse(b"32 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"Sun, 06 Nov"), None);
    }
}

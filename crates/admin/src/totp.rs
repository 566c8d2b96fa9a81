//! TOTP two-factor codes (RFC 6238 over RFC 4226's HOTP), sans-IO: the
//! secret, the `otpauth://` URL an authenticator app reads, checking a
//! code against a time, and one-time recovery codes (stored hashed).
//! Nothing here reads a clock or the store: callers pass the time and
//! keep the rows, so every rule is tested with fixed vectors.
//!
//! Not yet wired to the console's login (issue #11 part 4): the login
//! step, the enrolment pages and the store rows remain to be built.

use hmac::{KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// RFC 6238 4: the time step. 30 seconds is what every authenticator
/// app uses by default (and what `otpauth://` assumes without `period`).
pub const STEP_SECS: u64 = 30;

/// Codes of the step before and after are accepted too (RFC 6238 5.2
/// recommends at most one step of network delay or clock drift): a code
/// is good for 90 seconds at most.
pub const DRIFT_STEPS: u64 = 1;

/// RFC 4226 4 R6: 6 digits, what apps show by default.
pub const DIGITS: u32 = 6;

/// RFC 4226 4 R6 recommends a 160-bit shared secret.
pub const SECRET_BYTES: usize = 20;

/// How many recovery codes an enrolment gives (the brief: ten).
pub const RECOVERY_CODES: usize = 10;

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

/// The secret as apps type it: base32 without padding (RFC 4648 6).
pub fn secret_base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

pub fn secret_from_base32(s: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD.decode(s.trim().as_bytes()).ok()
}

/// RFC 4226 5.3: HOTP(K, C), `DIGITS` digits.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        // HMAC takes keys of any length; unreachable, but never a panic.
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(DIGITS)
}

/// RFC 6238 4.2: the code at unix time `now`.
pub fn code_at(secret: &[u8], now: u64) -> u32 {
    hotp(secret, now / STEP_SECS)
}

/// The time step a typed code matches at `now` (within the drift),
/// if any. A caller stores the step it accepted and refuses that step and
/// older ones next time (RFC 6238 5.2: a code is used once).
pub fn verify(secret: &[u8], typed: &str, now: u64, last_used_step: Option<u64>) -> Option<u64> {
    let typed = typed.trim();
    if typed.len() != DIGITS as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = typed.parse().ok()?;
    let step = now / STEP_SECS;
    let mut found = None;
    // Every candidate is computed, so the time taken does not tell which
    // step matched.
    for s in step.saturating_sub(DRIFT_STEPS)..=step + DRIFT_STEPS {
        if hotp(secret, s) == n && last_used_step.is_none_or(|l| s > l) && found.is_none() {
            found = Some(s);
        }
    }
    found
}

/// The `otpauth://` URL (Google Authenticator's Key URI format, which
/// every app reads): shown once, as a QR code or text, at enrolment.
pub fn otpauth_url(issuer: &str, login: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(login),
        secret_base32(secret),
        enc(issuer)
    )
}

/// Ten recovery codes (`xxxxx-xxxxx`, 50 bits each from base32's
/// alphabet) to show once, with their digests to store.
pub fn new_recovery_codes() -> Vec<(String, String)> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut b = [0u8; 7];
            rand::thread_rng().fill_bytes(&mut b);
            let s = data_encoding::BASE32_NOPAD.encode(&b).to_ascii_lowercase();
            let code = format!("{}-{}", &s[..5], &s[5..10]);
            let digest = recovery_digest(&code);
            (code, digest)
        })
        .collect()
}

/// A recovery code's stored form: SHA-256 of the code as typed without
/// spaces or dashes, in lower case. The codes are random (50 bits), so a
/// plain digest is enough; argon2 protects guessable passwords.
pub fn recovery_digest(typed: &str) -> String {
    let norm: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    let d = Sha256::digest(norm.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Uses a recovery code: the stored digests without the one it matches,
/// or None when it matches none (each code works once).
pub fn use_recovery_code(stored: &[String], typed: &str) -> Option<Vec<String>> {
    if typed.len() > 64 {
        return None;
    }
    let d = recovery_digest(typed);
    let pos = stored.iter().position(|s| *s == d)?;
    let mut rest = stored.to_vec();
    rest.remove(pos);
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (its 8-digit codes, last 6 digits).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_at(secret, t), code % 1_000_000, "t={t}");
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc_4226_vectors() {
        let secret = b"12345678901234567890";
        let want = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (c, w) in want.into_iter().enumerate() {
            assert_eq!(hotp(secret, c as u64), w);
        }
    }

    #[test]
    fn codes_are_checked_within_one_step_and_used_once() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let code = format!("{:06}", code_at(secret, now));
        let step = verify(secret, &code, now, None).unwrap();
        assert_eq!(step, now / STEP_SECS);
        // The step before and after: accepted; two steps off: refused.
        assert!(verify(secret, &code, now + STEP_SECS, None).is_some());
        assert!(verify(secret, &code, now - STEP_SECS, None).is_some());
        assert!(verify(secret, &code, now + 3 * STEP_SECS, None).is_none());
        // Used once: that step and older ones are refused after.
        assert!(verify(secret, &code, now, Some(step)).is_none());
        for bad in ["", "12345", "1234567", "abcdef", " 12 345"] {
            assert!(verify(secret, bad, now, None).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_and_urls() {
        let s = new_secret();
        assert_eq!(s.len(), SECRET_BYTES);
        assert_eq!(secret_from_base32(&secret_base32(&s)).unwrap(), s);
        let url = otpauth_url("Postroom mail", "kent@esoomllub.com", b"12345678901234567890");
        assert_eq!(
            url,
            "otpauth://totp/Postroom%20mail:kent%40esoomllub.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Postroom%20mail&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn a_recovery_code_works_once() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let stored: Vec<String> = codes.iter().map(|(_, d)| d.clone()).collect();
        let (first, _) = &codes[0];
        assert_eq!(first.len(), 11);
        let rest = use_recovery_code(&stored, &first.to_uppercase().replace('-', " ")).unwrap();
        assert_eq!(rest.len(), RECOVERY_CODES - 1);
        assert!(use_recovery_code(&rest, first).is_none());
        assert!(use_recovery_code(&stored, "nonsense").is_none());
        assert!(use_recovery_code(&stored, &"a".repeat(1000)).is_none());
    }
}

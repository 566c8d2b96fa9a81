//! Password hashes: argon2id for every new hash; SHA512-CRYPT, SHA256-CRYPT,
//! BLF-CRYPT and `{PLAIN}` verified so Dovecot users can be imported.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use postroom_core::Secret;

/// argon2id with 19 MiB of memory, 2 passes, 1 lane (the OWASP minimum):
/// about 20 ms on one core here, and bounded memory per concurrent login.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash(password: &Secret<String>) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    match hasher().hash_password(password.expose().as_bytes(), &salt) {
        Ok(h) => h.to_string(),
        // Only reachable with invalid parameters, which are fixed above.
        Err(_) => String::from("!"),
    }
}

/// A hash Postroom can verify (so an import can refuse a typo'd one).
pub fn is_supported(stored: &str) -> bool {
    let (scheme, rest) = split_scheme(stored);
    match scheme {
        Some("PLAIN") => true,
        Some("SHA512-CRYPT") | Some("SHA256-CRYPT") | Some("BLF-CRYPT") | Some("ARGON2ID") | None => {
            rest.starts_with("$argon2")
                || rest.starts_with("$6$")
                || rest.starts_with("$5$")
                || rest.starts_with("$2")
        }
        _ => false,
    }
}

/// `{SCHEME}value` (Dovecot's form) or a bare crypt/PHC string.
fn split_scheme(stored: &str) -> (Option<&str>, &str) {
    if let Some(rest) = stored.strip_prefix('{') {
        if let Some(end) = rest.find('}') {
            return (Some(&rest[..end]), &rest[end + 1..]);
        }
    }
    (None, stored)
}

pub fn verify(stored: &str, password: &Secret<String>) -> bool {
    let pw = password.expose();
    let (scheme, rest) = split_scheme(stored);
    if scheme == Some("PLAIN") {
        return constant_time_eq(rest.as_bytes(), pw.as_bytes());
    }
    if rest.starts_with("$argon2") {
        return PasswordHash::new(rest).is_ok_and(|h| hasher().verify_password(pw.as_bytes(), &h).is_ok());
    }
    if rest.starts_with("$6$") {
        return sha_crypt::sha512_check(pw, rest).is_ok();
    }
    if rest.starts_with("$5$") {
        return sha_crypt::sha256_check(pw, rest).is_ok();
    }
    if rest.starts_with("$2") {
        return bcrypt::verify(pw, rest).unwrap_or(false);
    }
    false
}

/// Whether a stored hash should be replaced by an argon2 one at the next
/// successful login.
pub fn needs_rehash(stored: &str) -> bool {
    !split_scheme(stored).1.starts_with("$argon2id$")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &str) -> Secret<String> {
        Secret::new(p.to_string())
    }

    #[test]
    fn argon2_round_trip() {
        let h = hash(&s("99test99"));
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, &s("99test99")));
        assert!(!verify(&h, &s("99test9XX")));
        assert!(!needs_rehash(&h));
    }

    #[test]
    fn imported_dovecot_hashes() {
        // `doveadm pw -s SHA512-CRYPT -p secret` style hashes.
        let sha512 =
            sha_crypt::sha512_simple("secret", &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();
        assert!(verify(&format!("{{SHA512-CRYPT}}{sha512}"), &s("secret")));
        assert!(!verify(&format!("{{SHA512-CRYPT}}{sha512}"), &s("wrong")));
        let sha256 =
            sha_crypt::sha256_simple("secret", &sha_crypt::Sha256Params::new(5000).unwrap()).unwrap();
        assert!(verify(&format!("{{SHA256-CRYPT}}{sha256}"), &s("secret")));
        let bf = bcrypt::hash("secret", 4).unwrap();
        assert!(verify(&format!("{{BLF-CRYPT}}{bf}"), &s("secret")));
        assert!(verify("{PLAIN}secret", &s("secret")));
        assert!(!verify("{PLAIN}secret", &s("secrets")));
        assert!(needs_rehash("{PLAIN}secret"));
        assert!(!verify("garbage", &s("")));
        assert!(!is_supported("{MD5}abc"));
    }
}

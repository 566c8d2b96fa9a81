//! Password hashes: argon2id for every new hash; SHA512-CRYPT, SHA256-CRYPT,
//! BLF-CRYPT and `{PLAIN}` verified so Dovecot users can be imported.

use std::cell::RefCell;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use postroom_core::Secret;

/// The largest argon2 memory a stored hash may ask for and still use the
/// kept buffer (256 MiB); larger ones (an odd import) allocate per check.
const MAX_KEPT_BLOCKS: usize = 256 * 1024;

thread_local! {
    /// Each hashing thread's argon2 memory, kept between logins. Mapping
    /// 19 MiB afresh for every login and faulting it in (the allocator
    /// returns it at once: see the mmap threshold in `serve`) cost more CPU
    /// than argon2's own passes in a profile of many logins. The hashing
    /// threads are one per core (`auth::HashPool`), so this keeps 19 MiB
    /// per core, no more.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

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
        return PasswordHash::new(rest).is_ok_and(|h| verify_argon2(&h, pw.as_bytes()));
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

/// Checks a PHC argon2 hash with the thread's kept memory: the same
/// computation as `PasswordVerifier::verify_password`, without a fresh
/// allocation.
fn verify_argon2(h: &PasswordHash<'_>, pw: &[u8]) -> bool {
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(h.algorithm), Params::try_from(h)) else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    if blocks > MAX_KEPT_BLOCKS {
        return argon2.verify_password(pw, h).is_ok();
    }
    let mut out = vec![0u8; expected.len()];
    let computed = ARGON2_MEMORY.with(|m| {
        let mut memory = m.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2
            .hash_password_into_with_memory(pw, salt, &mut out, &mut memory[..blocks])
            .is_ok()
    });
    computed && constant_time_eq(&out, expected.as_bytes())
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

/// Whether a password may be set: at least `min_len` characters (config
/// `auth.min_password_length`, 8 by default) and not only white space. The
/// one check for every place a password is chosen.
pub fn check_new(pw: &str, min_len: usize) -> Result<(), String> {
    if pw.is_empty() {
        return Err("empty password".into());
    }
    if pw.trim().is_empty() {
        return Err("the password is only white space".into());
    }
    let n = pw.chars().count();
    if n < min_len {
        return Err(format!(
            "the password has {n} characters; at least {min_len} are needed (auth.min_password_length)"
        ));
    }
    Ok(())
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

    /// The kept buffer gives the answers of the allocating verifier, for
    /// hashes of other sizes and kinds one after another on one thread.
    #[test]
    fn kept_argon2_memory_agrees_with_the_library() {
        let make = |alg, m, t, p| {
            let params = Params::new(m, t, p, None).unwrap();
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        };
        let hashes = [
            make(Algorithm::Argon2id, 64, 1, 1),
            make(Algorithm::Argon2id, 19 * 1024, 2, 1),
            make(Algorithm::Argon2i, 256, 3, 2),
            make(Algorithm::Argon2id, 128, 1, 4),
            // Dovecot's default (libsodium): 64 MiB, 3 passes.
            make(Algorithm::Argon2id, 64 * 1024, 3, 1),
        ];
        for h in hashes.iter().chain(hashes.iter()) {
            let parsed = PasswordHash::new(h).unwrap();
            for pw in ["pw", "pX", ""] {
                let library = Argon2::default().verify_password(pw.as_bytes(), &parsed).is_ok();
                assert_eq!(verify(h, &s(pw)), library, "{h} {pw}");
                assert_eq!(library, pw == "pw");
            }
        }
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

    #[test]
    fn new_passwords_have_a_minimum_length() {
        assert!(check_new("", 8).is_err());
        assert!(check_new("x", 8).is_err());
        assert!(check_new("        ", 8).unwrap_err().contains("white space"));
        assert!(check_new(" \t  \t  ", 1).is_err());
        assert!(check_new("seven77", 8).unwrap_err().contains("at least 8"));
        assert!(check_new("eight888", 8).is_ok());
        // Characters, not bytes: four letters of two bytes each are four.
        assert!(check_new("äöüß", 8).is_err());
        assert!(check_new("x", 1).is_ok());
    }
}

//! The Sender Rewriting Scheme, so forwarded mail passes the sender's SPF
//! at the destination and bounces come back through us: the envelope
//! sender becomes `SRS0=HASH=TT=domain=local@our-domain` (or SRS1 when it
//! was already rewritten by another forwarder). Bounces to such addresses
//! are accepted only when the hash (HMAC-SHA1 with our secret) and the
//! age (TT, days, at most `MAX_AGE_DAYS`) check out; a forged one is
//! refused like any relay attempt.

use base64::Engine;

pub const MAX_AGE_DAYS: i64 = 30;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn hash(secret: &str, parts: &[&str]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p.to_lowercase().as_bytes());
    }
    let tag = ctx.sign();
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(tag.as_ref());
    b64[..4].to_string()
}

fn timestamp(day: i64) -> String {
    let t = day.rem_euclid(1024) as usize;
    let mut s = String::with_capacity(2);
    s.push(BASE32[t >> 5] as char);
    s.push(BASE32[t & 31] as char);
    s
}

fn parse_timestamp(tt: &str) -> Option<i64> {
    let b = tt.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let v = |c: u8| {
        BASE32
            .iter()
            .position(|x| *x == c.to_ascii_uppercase())
            .map(|p| p as i64)
    };
    Some(v(b[0])? * 32 + v(b[1])?)
}

/// The rewritten sender for forwarding mail from `sender` (`local@domain`).
pub fn forward(sender: &str, secret: &str, srs_domain: &str, today: i64) -> String {
    let (local, domain) = sender.rsplit_once('@').unwrap_or((sender, ""));
    let upper = local.to_ascii_uppercase();
    if upper.starts_with("SRS0=") || upper.starts_with("SRS0+") || upper.starts_with("SRS0-") {
        // Already rewritten by `domain`: SRS1 keeps who did it first.
        let rest = &local[5..];
        let h = hash(secret, &[domain, rest]);
        return format!("SRS1={h}={domain}=={rest}@{srs_domain}");
    }
    if upper.starts_with("SRS1=") {
        // SRS1=HHH=first==rest: keep the first forwarder, rehash.
        if let Some((_, tail)) = local[5..].split_once('=') {
            if let Some((first, rest)) = tail.split_once("==") {
                let h = hash(secret, &[first, rest]);
                return format!("SRS1={h}={first}=={rest}@{srs_domain}");
            }
        }
    }
    let tt = timestamp(today);
    let h = hash(secret, &[&tt, domain, local]);
    format!("SRS0={h}={tt}={domain}={local}@{srs_domain}")
}

#[derive(Debug, PartialEq, Eq)]
pub enum SrsError {
    NotSrs,
    BadHash,
    Expired,
    Malformed,
}

/// The address a bounce to `local` (the part before `@our-domain`) goes
/// back to. `secrets`: the current one first, then older ones.
pub fn reverse(local: &str, secrets: &[String], today: i64) -> Result<String, SrsError> {
    let upper = local.to_ascii_uppercase();
    let check = |expect: &str, parts: &[&str]| {
        secrets
            .iter()
            .any(|s| hash(s, parts).eq_ignore_ascii_case(expect))
    };
    if upper.starts_with("SRS0=") {
        let mut it = local[5..].splitn(4, '=');
        let (Some(h), Some(tt), Some(domain), Some(user)) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(SrsError::Malformed);
        };
        if !check(h, &[tt, domain, user]) {
            return Err(SrsError::BadHash);
        }
        let then = parse_timestamp(tt).ok_or(SrsError::Malformed)?;
        let age = (today.rem_euclid(1024) - then).rem_euclid(1024);
        if age > MAX_AGE_DAYS {
            return Err(SrsError::Expired);
        }
        if domain.is_empty() || user.is_empty() {
            return Err(SrsError::Malformed);
        }
        return Ok(format!("{user}@{domain}"));
    }
    if upper.starts_with("SRS1=") {
        let mut it = local[5..].splitn(2, '=');
        let (Some(h), Some(tail)) = (it.next(), it.next()) else {
            return Err(SrsError::Malformed);
        };
        let Some((first, rest)) = tail.split_once("==") else {
            return Err(SrsError::Malformed);
        };
        if !check(h, &[first, rest]) {
            return Err(SrsError::BadHash);
        }
        if first.is_empty() || rest.is_empty() {
            return Err(SrsError::Malformed);
        }
        return Ok(format!("SRS0={rest}@{first}"));
    }
    Err(SrsError::NotSrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_forgeries() {
        let s = vec!["secret".to_string()];
        let f = forward("alice@sender.example", "secret", "mx.forwarder.example", 20_000);
        assert!(f.starts_with("SRS0="), "{f}");
        let (local, domain) = f.rsplit_once('@').unwrap();
        assert_eq!(domain, "mx.forwarder.example");
        assert_eq!(reverse(local, &s, 20_000).unwrap(), "alice@sender.example");
        assert_eq!(
            reverse(local, &s, 20_000 + MAX_AGE_DAYS + 1),
            Err(SrsError::Expired)
        );
        assert_eq!(reverse(local, &["other".into()], 20_000), Err(SrsError::BadHash));
        // A rotated secret still verifies bounces for mail sent before.
        assert!(reverse(local, &["new".into(), "secret".into()], 20_000).is_ok());
        let forged = local.replacen("alice", "mallory", 1);
        assert_eq!(reverse(&forged, &s, 20_000), Err(SrsError::BadHash));
        assert_eq!(
            reverse("SRS0=abcd=XY=other.example=user", &s, 20_000),
            Err(SrsError::BadHash)
        );
        assert_eq!(reverse("plain", &s, 20_000), Err(SrsError::NotSrs));
        // Forwarded twice: SRS1 back to the first forwarder's SRS0 address.
        let f2 = forward(&f, "secret2", "second.example", 20_000);
        let (l2, _) = f2.rsplit_once('@').unwrap();
        assert!(l2.starts_with("SRS1="), "{l2}");
        let back = reverse(l2, &["secret2".into()], 20_000).unwrap();
        assert_eq!(back, f);
    }
}

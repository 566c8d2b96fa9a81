//! DKIM keys: generation (RSA and Ed25519) and the TXT records to publish.

use base64::Engine;
use chrono::Datelike;
use mail_auth::common::crypto::Ed25519Key;
use postroom_store::directory::DomainRow;
use postroom_store::dkim::DkimKeyRow;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};

use crate::{now, parse_domain, Actor, AdminError, AdminService, Result};

/// RSA keys of 2048 bits: what RFC 8301 3.2 requires verifiers to accept
/// (1024 is the floor, 4096 the ceiling some verifiers still refuse).
const RSA_BITS: usize = 2048;

/// A TXT record, its value split in 255-octet strings (RFC 1035 3.3.14).
pub fn txt_record(selector: &str, domain: &str, algorithm: &str, public_b64: &str) -> String {
    let k = if algorithm.starts_with("ed25519") {
        "ed25519"
    } else {
        "rsa"
    };
    let value = format!("v=DKIM1; k={k}; p={public_b64}");
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("{selector}._domainkey.{domain}. IN TXT {}", parts.join(" "))
}

fn today() -> String {
    let d = chrono::DateTime::from_timestamp(now(), 0)
        .unwrap_or_default()
        .date_naive();
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn key_error(e: impl std::fmt::Display) -> AdminError {
    AdminError::Storage(postroom_store::StoreError::Io(std::io::Error::other(format!(
        "key generation failed: {e}"
    ))))
}

impl AdminService {
    /// A domain's active keys, newest first.
    pub async fn dkim_keys(&self, domain: &str) -> Result<(DomainRow, Vec<DkimKeyRow>)> {
        let d = self.hosted(&parse_domain(domain)?).await?;
        let keys = self.meta().dkim_keys(d.id).await?;
        Ok((d, keys))
    }

    /// New RSA and Ed25519 keys for a domain, selectors `<date>r` and
    /// `<date>e`; returns every active key.
    pub async fn dkim_generate(&self, actor: &Actor, domain: &str) -> Result<(DomainRow, Vec<DkimKeyRow>)> {
        let d = self.hosted(&parse_domain(domain)?).await?;
        let date = today();
        let b64 = base64::engine::general_purpose::STANDARD;
        // RSA generation takes about a second: off the async threads.
        let (rsa_der, rsa_pub) = tokio::task::spawn_blocking(|| -> std::result::Result<_, String> {
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS).map_err(|e| e.to_string())?;
            let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
            let public = rsa::RsaPublicKey::from(&key)
                .to_public_key_der()
                .map_err(|e| e.to_string())?;
            Ok((der.as_bytes().to_vec(), public.as_bytes().to_vec()))
        })
        .await
        .map_err(key_error)?
        .map_err(key_error)?;
        let ed_der = Ed25519Key::generate_pkcs8().map_err(key_error)?;
        let ed_pub = Ed25519Key::from_pkcs8_der(&ed_der)
            .map_err(key_error)?
            .public_key();
        let rsa_sel = format!("{date}r");
        let ed_sel = format!("{date}e");
        for (sel, _) in [(&rsa_sel, ()), (&ed_sel, ())] {
            if self
                .meta()
                .dkim_keys(d.id)
                .await?
                .iter()
                .any(|k| &k.selector == sel)
            {
                return Err(AdminError::AlreadyExists(format!(
                    "{} has a key with selector {sel} (made today) already",
                    d.display
                )));
            }
        }
        self.meta()
            .add_dkim_key(d.id, &rsa_sel, "rsa-sha256", &rsa_der, &b64.encode(&rsa_pub))
            .await?;
        self.meta()
            .add_dkim_key(d.id, &ed_sel, "ed25519-sha256", &ed_der, &b64.encode(&ed_pub))
            .await?;
        self.record(
            actor,
            "dkim.generate",
            &d.display,
            &d.name,
            format!("{rsa_sel}, {ed_sel}"),
        )
        .await;
        let keys = self.meta().dkim_keys(d.id).await?;
        Ok((d, keys))
    }
}

use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use postroom_core::Domain;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};

use super::{wait, CmdResult, Context};
use crate::cli::DkimCmd;

/// A TXT record, its value split in 255-octet strings (RFC 1035 3.3.14).
fn txt_record(selector: &str, domain: &str, algorithm: &str, public_b64: &str) -> String {
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
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        / 86_400;
    let (y, m, d) = postroom_imap::format::civil(days);
    format!("{y:04}{m:02}{d:02}")
}

pub fn dkim(ctx: &Context, cmd: DkimCmd) -> CmdResult {
    let store = ctx.store()?;
    let (domain, generate) = match &cmd {
        DkimCmd::Generate { domain } => (domain, true),
        DkimCmd::Show { domain } => (domain, false),
    };
    let d = Domain::parse(domain).map_err(|e| format!("`{domain}`: {e}"))?;
    let row = wait(store.meta().domain(d.canonical()))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("domain {d} is not hosted here"))?;
    if generate {
        let b64 = base64::engine::general_purpose::STANDARD;
        let date = today();
        let rsa_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| e.to_string())?;
        let rsa_der = rsa_key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let rsa_pub = rsa::RsaPublicKey::from(&rsa_key)
            .to_public_key_der()
            .map_err(|e| e.to_string())?;
        wait(store.meta().add_dkim_key(
            row.id,
            &format!("{date}r"),
            "rsa-sha256",
            rsa_der.as_bytes(),
            &b64.encode(rsa_pub.as_bytes()),
        ))
        .map_err(|e| e.to_string())?;
        let ed_der = Ed25519Key::generate_pkcs8().map_err(|e| e.to_string())?;
        let ed_pub = Ed25519Key::from_pkcs8_der(&ed_der)
            .map_err(|e| e.to_string())?
            .public_key();
        wait(store.meta().add_dkim_key(
            row.id,
            &format!("{date}e"),
            "ed25519-sha256",
            &ed_der,
            &b64.encode(ed_pub),
        ))
        .map_err(|e| e.to_string())?;
        println!(
            "Publish these records, then mail from {} is signed with both keys:",
            row.display
        );
    }
    for k in wait(store.meta().dkim_keys(row.id)).map_err(|e| e.to_string())? {
        println!(
            "{}",
            txt_record(&k.selector, &row.name, &k.algorithm, &k.public_key)
        );
    }
    Ok(())
}

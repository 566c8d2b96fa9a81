//! DKIM signing (RFC 6376, with Ed25519 per RFC 8463) of mail sent by local
//! users: one signature per active key of the From: domain (an RSA and an
//! Ed25519 one after `postroom dkim generate`), From: oversigned so no
//! second From: can be added without breaking them.

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use postroom_core::Address;
use postroom_directory::Directory;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The headers signed; From twice (oversigning).
const SIGNED: [&str; 14] = [
    "From",
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Sender",
];

/// DKIM-Signature header lines for `message`, or nothing when its From:
/// domain is not hosted here or has no keys; an error when the keys could
/// not be read.
pub async fn sign(directory: &Directory, message: &[u8]) -> Result<Vec<u8>, postroom_store::StoreError> {
    // The From: the submission check verified and the ENVELOPE shows: the
    // one header reader's (the check refuses a second From:).
    let Some(from) = postroom_message::header::fields(message)
        .find(|f| f.is("from"))
        .and_then(|f| {
            postroom_message::header::mailboxes(&f.unfolded())
                .into_iter()
                .next()
        })
        .and_then(|m| m.addr_spec())
    else {
        return Ok(Vec::new());
    };
    let Ok(addr) = Address::parse(&from, true) else {
        return Ok(Vec::new());
    };
    let Some(domain) = directory.hosted_domain(addr.domain().canonical()).await? else {
        return Ok(Vec::new());
    };
    let keys = directory.meta().dkim_keys(domain.id).await?;
    let mut out = Vec::new();
    for key in keys {
        let der = key.private_key.expose().clone();
        let signature = match key.algorithm.as_str() {
            "rsa-sha256" => RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                der,
            )))
            .and_then(|k| {
                DkimSigner::from_key(k)
                    .domain(domain.name.clone())
                    .selector(key.selector.clone())
                    .headers(SIGNED)
                    .sign(message)
            }),
            "ed25519-sha256" => Ed25519Key::from_pkcs8_der(&der).and_then(|k| {
                DkimSigner::from_key(k)
                    .domain(domain.name.clone())
                    .selector(key.selector.clone())
                    .headers(SIGNED)
                    .sign(message)
            }),
            other => {
                tracing::warn!(algorithm = other, "unknown DKIM key algorithm");
                continue;
            }
        };
        match signature {
            Ok(sig) => out.extend_from_slice(sig.to_header().as_bytes()),
            Err(e) => {
                tracing::warn!(domain = %domain.name, selector = %key.selector, error = %e, "DKIM signing failed")
            }
        }
    }
    Ok(out)
}

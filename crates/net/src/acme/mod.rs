//! Certificates from an ACME CA (RFC 8555), made at start when missing and
//! renewed before they expire, without a restart: [`maintain`] runs for
//! the server's life, proves the names with HTTP-01 (a token on port 80,
//! served by [`http01::serve`]) or TLS-ALPN-01 (RFC 8737, a challenge
//! certificate on the implicit-TLS listeners), and swaps the new
//! certificate into [`TlsSettings`], which every listener shares.
//!
//! Kept in the ACME state folder (`DATA_DIR/acme`, private like the rest):
//! `account.json` (the account key, so a restart does not make a new
//! account; Let's Encrypt limits those), `cert.pem` and `key.pem`.

pub mod http01;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use tokio_rustls::rustls::crypto::ring as ring_provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::tls::{CertFiles, TlsSettings};

/// The ALPN protocol of TLS-ALPN-01 validations (RFC 8737 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    Http01,
    TlsAlpn01,
}

#[derive(Clone, Debug)]
pub struct AcmeSettings {
    pub directory: String,
    pub contact: Vec<String>,
    pub names: Vec<String>,
    pub challenge: ChallengeKind,
    pub renew_before: Duration,
    /// A PEM root for the directory's HTTPS (a private or test CA).
    pub directory_ca: Option<PathBuf>,
    /// Where the account and certificate are kept.
    pub state_dir: PathBuf,
}

impl AcmeSettings {
    pub fn files(&self) -> CertFiles {
        CertFiles {
            cert: self.state_dir.join("cert.pem"),
            key: self.state_dir.join("key.pem"),
        }
    }
}

/// What is published for the CA while an order is being validated.
#[derive(Debug, Default)]
pub struct Challenges {
    /// HTTP-01: token → key authorization (RFC 8555 8.3).
    http: RwLock<HashMap<String, String>>,
    /// TLS-ALPN-01: name → the challenge certificate (RFC 8737 3).
    tls_alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    pub fn http_answer(&self, token: &str) -> Option<String> {
        self.http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    pub fn tls_alpn_cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        self.tls_alpn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .cloned()
    }

    fn clear(&self) {
        self.http.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.tls_alpn.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The expiry of the first certificate in a PEM file.
pub fn not_after(cert_pem: &Path) -> Result<SystemTime, String> {
    let pem = std::fs::read(cert_pem).map_err(|e| format!("{}: {e}", cert_pem.display()))?;
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .ok_or_else(|| format!("{}: no certificate", cert_pem.display()))?
        .map_err(|e| format!("{}: {e}", cert_pem.display()))?;
    let secs =
        crate::tls::not_after(&der).ok_or_else(|| format!("{}: not a certificate", cert_pem.display()))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// How long to wait before looking again: until the renewal time, but at
/// least every 12 hours (the clock or the files may change).
fn time_to_renewal(expires: SystemTime, renew_before: Duration, now: SystemTime) -> Option<Duration> {
    let renew_at = expires.checked_sub(renew_before)?;
    let left = renew_at.duration_since(now).ok()?;
    Some(left.min(Duration::from_secs(12 * 3600)))
}

/// After the n-th failure in a row: 1 minute, doubling, at most 6 hours,
/// so a CA's rate limits (Let's Encrypt: 5 failed validations an hour per
/// name) are not hit by retrying.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(60u64.saturating_mul(1 << failures.saturating_sub(1).min(9)))
        .min(Duration::from_secs(6 * 3600))
}

/// Keeps the certificate fresh for the server's life: uses the one on disk
/// while it is valid for long enough, orders one otherwise.
pub async fn maintain(settings: AcmeSettings, tls: TlsSettings, mut stop: crate::shutdown::Shutdown) {
    let files = settings.files();
    let mut failures = 0u32;
    loop {
        let now = SystemTime::now();
        let fresh = not_after(&files.cert)
            .ok()
            .and_then(|exp| time_to_renewal(exp, settings.renew_before, now));
        let wait = match fresh {
            Some(wait) => wait,
            None => match obtain(&settings, &tls).await {
                Ok(expires) => {
                    failures = 0;
                    tracing::info!(target: "acme", names = ?settings.names,
                        expires = %humantime_date(expires), "certificate obtained and in use");
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures);
                    tracing::error!(target: "acme", names = ?settings.names, error = %e,
                        retry_in_secs = wait.as_secs(), "could not obtain a certificate");
                    wait
                }
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.recv() => return,
        }
    }
}

fn humantime_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{} days from now", secs.saturating_sub(now_secs()) / 86400)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One order: account, authorizations, CSR, certificate; then the files
/// and the swap. Returns the new certificate's expiry.
async fn obtain(settings: &AcmeSettings, tls: &TlsSettings) -> Result<SystemTime, String> {
    let account = account(settings).await?;
    let identifiers: Vec<Identifier> = settings
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {}", explain(&e)))?;
    let published = publish_challenges(settings, tls, &mut order).await;
    let result = match published {
        Ok(()) => finish_order(settings, &mut order).await,
        Err(e) => Err(e),
    };
    tls.challenges.clear();
    let (cert_pem, key_pem) = result?;
    let files = settings.files();
    write_private(&files.key, key_pem.as_bytes())?;
    write_private(&files.cert, cert_pem.as_bytes())?;
    tls.use_acme_certificate(files.clone())?;
    not_after(&files.cert)
}

async fn publish_challenges(
    settings: &AcmeSettings,
    tls: &TlsSettings,
    order: &mut instant_acme::Order,
) -> Result<(), String> {
    let kind = match settings.challenge {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {}", explain(&e)))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
        let name = challenge.identifier().to_string().to_ascii_lowercase();
        let key_auth = challenge.key_authorization();
        match settings.challenge {
            ChallengeKind::Http01 => {
                tls.challenges
                    .http
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(challenge.token.clone(), key_auth.as_str().to_string());
            }
            ChallengeKind::TlsAlpn01 => {
                let cert = tls_alpn_certificate(&name, key_auth.digest().as_ref())?;
                tls.challenges
                    .tls_alpn
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name, cert);
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge: {}", explain(&e)))?;
    }
    Ok(())
}

async fn finish_order(
    settings: &AcmeSettings,
    order: &mut instant_acme::Order,
) -> Result<(String, String), String> {
    let retry = RetryPolicy::new().timeout(Duration::from_secs(120));
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(|e| format!("validation: {}", explain(&e)))?;
    if status != OrderStatus::Ready {
        let why = order
            .state()
            .error
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "no reason given".into());
        return Err(format!("the CA did not validate the names ({status:?}): {why}"));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(settings.names.clone()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {}", explain(&e)))?;
    let chain = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("certificate: {}", explain(&e)))?;
    Ok((chain, key.serialize_pem()))
}

/// The account, from `account.json` or made now and saved there.
async fn account(settings: &AcmeSettings) -> Result<Account, String> {
    let builder = || match &settings.directory_ca {
        Some(ca) => Account::builder_with_root(ca).map_err(|e| format!("{}: {e}", ca.display())),
        None => Account::builder().map_err(|e| e.to_string()),
    };
    let path = settings.state_dir.join("account.json");
    if let Ok(json) = std::fs::read(&path) {
        let credentials: AccountCredentials =
            serde_json::from_slice(&json).map_err(|e| format!("{}: {e}", path.display()))?;
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("account: {}", explain(&e)));
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                // Enabling [acme] in the configuration is the agreement;
                // the example configuration says so.
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new account at {}: {}", settings.directory, explain(&e)))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    write_private(&path, &json)?;
    tracing::info!(target: "acme", directory = %settings.directory, "account created");
    Ok(account)
}

/// The self-signed certificate of a TLS-ALPN-01 validation: the name, and
/// the critical acmeIdentifier extension holding the SHA-256 of the key
/// authorization (RFC 8737 3).
fn tls_alpn_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = ring_provider::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

/// An error with its causes: instant-acme's HTTP errors say "client error
/// (Connect)" and keep the reason (a refused connection, an untrusted
/// certificate) in their sources.
fn explain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Writes a file the server's user alone may read, atomically and durably.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_waits_until_the_margin_and_at_most_12_hours() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let day = Duration::from_secs(86400);
        let margin = 30 * day;
        assert_eq!(time_to_renewal(now + 29 * day, margin, now), None);
        assert_eq!(time_to_renewal(now + 30 * day, margin, now), Some(Duration::ZERO));
        assert_eq!(
            time_to_renewal(now + 90 * day, margin, now),
            Some(Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            time_to_renewal(now + margin + Duration::from_secs(60), margin, now),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn backoff_doubles_up_to_six_hours() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(5), Duration::from_secs(960));
        assert_eq!(backoff(30), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn the_expiry_of_a_certificate_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::self_signed("mx.example.com", dir.path()).unwrap();
        let exp = not_after(&files.cert).unwrap();
        // rcgen's default validity runs to 4096.
        assert!(exp > SystemTime::now() + Duration::from_secs(365 * 86400));
        assert!(not_after(&dir.path().join("none.pem")).is_err());
    }

    #[test]
    fn a_tls_alpn_certificate_carries_the_digest() {
        let cert = tls_alpn_certificate("mx.example.com", &[7u8; 32]).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.cert[0].as_ref()).unwrap();
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of 32 bytes.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &[7u8; 32]);
    }
}

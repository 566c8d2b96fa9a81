//! TLS for every listener: rustls (ring), TLS 1.2 and 1.3 only. Certificates
//! come from PEM files, several host names by SNI; [`TlsSettings::reload`]
//! re-reads them (on SIGHUP) without touching connections already up. When
//! none is configured, a self-signed certificate for the host name is made
//! once and kept in the data folder.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::ring as ring_provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::Acceptor as HelloReader;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use crate::acme::{Challenges, ACME_TLS_ALPN};

/// A certificate chain and its key, as files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// The leaf, kept to check SNI names against it.
    leaf: CertificateDer<'static>,
}

/// Picks the certificate whose names match the client's SNI; the first one
/// when nothing matches or no SNI was sent.
struct CertResolver {
    certs: RwLock<Vec<Loaded>>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.read().unwrap_or_else(|e| e.into_inner());
        if let Some(sni) = hello.server_name() {
            if let Ok(name) = ServerName::try_from(sni) {
                for c in certs.iter() {
                    let matches = webpki::EndEntityCert::try_from(&c.leaf)
                        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok());
                    if matches {
                        return Some(Arc::clone(&c.key));
                    }
                }
            }
        }
        certs.first().map(|c| Arc::clone(&c.key))
    }
}

/// The TLS acceptor every listener shares, and what it was loaded from.
#[derive(Clone)]
pub struct TlsSettings {
    pub acceptor: TlsAcceptor,
    resolver: Arc<CertResolver>,
    files: Arc<Vec<CertFiles>>,
    /// The certificate ACME made, used before `files` (it is first, so it
    /// is also the default without SNI).
    acme: Arc<RwLock<Option<CertFiles>>>,
    /// Answers the ACME CA's TLS-ALPN-01 validations (RFC 8737).
    pub challenges: Arc<Challenges>,
    /// The configuration for those validations: `acme-tls/1` only.
    acme_validation: Arc<ServerConfig>,
}

/// Hands a TLS-ALPN-01 validation the challenge certificate for the name
/// it asks about, and nothing else.
#[derive(Debug)]
struct ChallengeResolver(Arc<Challenges>);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.tls_alpn_cert(hello.server_name()?)
    }
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, String> {
    let provider = Arc::new(ring_provider::default_provider());
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").field("files", &self.files).finish()
    }
}

fn load_pair(files: &CertFiles) -> Result<Loaded, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut BufReader::new(&cert_pem[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    let leaf = chain
        .first()
        .cloned()
        .ok_or_else(|| format!("{}: no certificate found", files.cert.display()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut BufReader::new(&key_pem[..]))
        .map_err(|e| format!("{}: {e}", files.key.display()))?
        .ok_or_else(|| format!("{}: no private key found", files.key.display()))?;
    let signing_key =
        ring_provider::sign::any_supported_type(&key).map_err(|e| format!("{}: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        leaf,
    })
}

impl TlsSettings {
    /// Loads the certificates (the first is the default).
    pub fn load(files: Vec<CertFiles>) -> Result<TlsSettings, String> {
        if files.is_empty() {
            return Err("no certificate configured".into());
        }
        let loaded = files.iter().map(load_pair).collect::<Result<Vec<_>, _>>()?;
        let resolver = Arc::new(CertResolver {
            certs: RwLock::new(loaded),
        });
        let config = server_config(resolver.clone())?;
        let challenges = Arc::new(Challenges::default());
        let mut validation = server_config(Arc::new(ChallengeResolver(Arc::clone(&challenges))))?;
        validation.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        Ok(TlsSettings {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files: Arc::new(files),
            acme: Arc::new(RwLock::new(None)),
            challenges,
            acme_validation: Arc::new(validation),
        })
    }

    /// Re-reads every certificate; on any error the old ones stay in use.
    pub fn reload(&self) -> Result<(), String> {
        let acme = self.acme.read().unwrap_or_else(|e| e.into_inner()).clone();
        let loaded = acme
            .iter()
            .chain(self.files.iter())
            .map(load_pair)
            .collect::<Result<Vec<_>, _>>()?;
        *self.resolver.certs.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// Puts the certificate ACME made in front of the configured ones.
    /// Connections already up keep theirs; the next handshake gets it.
    pub fn use_acme_certificate(&self, files: CertFiles) -> Result<(), String> {
        load_pair(&files)?;
        let old = self
            .acme
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(files);
        if let Err(e) = self.reload() {
            *self.acme.write().unwrap_or_else(|e| e.into_inner()) = old;
            return Err(e);
        }
        Ok(())
    }

    /// The TLS handshake of an implicit-TLS connection. `None`: it was an
    /// ACME TLS-ALPN-01 validation (RFC 8737 3: a ClientHello offering only
    /// `acme-tls/1`), answered with the challenge certificate and closed.
    /// Looking at the ClientHello first keeps `acme-tls/1` out of the
    /// configuration mail clients see: rustls refuses a client whose ALPN
    /// offers share nothing with the server's list.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Option<TlsStream<TcpStream>>> {
        let start = LazyConfigAcceptor::new(HelloReader::default(), tcp).await?;
        let validation = start
            .client_hello()
            .alpn()
            .is_some_and(|mut offers| offers.any(|p| p == ACME_TLS_ALPN));
        if validation {
            use tokio::io::AsyncWriteExt;
            let mut stream = start.into_stream(Arc::clone(&self.acme_validation)).await?;
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        let config = self.acceptor.config().clone();
        start.into_stream(config).await.map(Some)
    }

    /// Each certificate in use (its file) with the end of its leaf's
    /// validity in seconds since the epoch (`None`: not readable), for
    /// `postroom status`. The ACME certificate, when there is one, first.
    pub fn expiries(&self) -> Vec<(PathBuf, Option<i64>)> {
        let acme = self.acme.read().unwrap_or_else(|e| e.into_inner()).clone();
        let certs = self.resolver.certs.read().unwrap_or_else(|e| e.into_inner());
        acme.iter()
            .chain(self.files.iter())
            .zip(certs.iter())
            .map(|(f, c)| (f.cert.clone(), not_after(&c.leaf)))
            .collect()
    }
}

/// The end of a certificate's validity (RFC 5280 4.1.2.5, `notAfter`) in
/// seconds since the epoch; `None` for anything that is not a certificate.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Writes a self-signed certificate and key for `host` into `dir`
/// (`HOST.crt`, `HOST.key`, the key readable by its owner only) and returns
/// their paths. Existing files are kept.
pub fn self_signed(host: &str, dir: &Path) -> Result<CertFiles, String> {
    let files = CertFiles {
        cert: dir.join(format!("{host}.crt")),
        key: dir.join(format!("{host}.key")),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names = vec![host.to_string()];
    if host != "localhost" {
        names.push("localhost".into());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, host);
    let key_pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key_pair).map_err(|e| e.to_string())?;
    let write = |path: &Path, data: &str, mode: u32| -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(data.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&files.key, &key_pair.serialize_pem(), 0o600)?;
    write(&files.cert, &cert.pem(), 0o644)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_loads_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed("mx.example.com", dir.path()).unwrap();
        let first = std::fs::read(&a.cert).unwrap();
        let b = self_signed("mx.example.com", dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(first, std::fs::read(&b.cert).unwrap());
        let tls = TlsSettings::load(vec![a]).unwrap();
        tls.reload().unwrap();
    }

    fn cert_until(y: i32, m: u8, d: u8) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["mx.example.com".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn expiry_is_read_from_the_certificate() {
        // UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280
        // 4.1.2.5); the figures are from Python's calendar.timegm.
        assert_eq!(not_after(&cert_until(2031, 5, 17)), Some(1_936_742_400));
        assert_eq!(not_after(&cert_until(2051, 1, 1)), Some(2_556_144_000));
        assert_eq!(not_after(&cert_until(1970, 1, 1)), Some(0));
        // Whatever else: no answer, and no panic.
        let der = cert_until(2031, 5, 17);
        for cut in 0..der.len() {
            assert_eq!(not_after(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let dir = tempfile::tempdir().unwrap();
        let files = self_signed("mx.example.com", dir.path()).unwrap();
        let tls = TlsSettings::load(vec![files.clone()]).unwrap();
        let e = tls.expiries();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, files.cert);
        assert!(e[0].1.is_some_and(|t| t > 1_900_000_000), "{e:?}");
    }

    #[test]
    fn mismatched_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed("a.example.com", dir.path()).unwrap();
        let b = self_signed("b.example.com", dir.path()).unwrap();
        let err = TlsSettings::load(vec![CertFiles {
            cert: a.cert,
            key: b.key,
        }])
        .err()
        .unwrap();
        assert!(err.contains("do not belong together"), "{err}");
    }
}

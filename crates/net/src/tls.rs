//! TLS for every listener: rustls (ring), TLS 1.2 and 1.3 only. Certificates
//! come from PEM files, several host names by SNI; [`TlsSettings::reload`]
//! re-reads them (on SIGHUP) without touching connections already up. When
//! none is configured, a self-signed certificate for the host name is made
//! once and kept in the data folder.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::crypto::ring as ring_provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

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
        let provider = Arc::new(ring_provider::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        Ok(TlsSettings {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files: Arc::new(files),
        })
    }

    /// Re-reads every certificate; on any error the old ones stay in use.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = self.files.iter().map(load_pair).collect::<Result<Vec<_>, _>>()?;
        *self.resolver.certs.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// Each certificate in use (its file) with the end of its leaf's
    /// validity in seconds since the epoch (`None`: not readable), for
    /// `postroom status`.
    pub fn expiries(&self) -> Vec<(PathBuf, Option<i64>)> {
        let certs = self.resolver.certs.read().unwrap_or_else(|e| e.into_inner());
        self.files
            .iter()
            .zip(certs.iter())
            .map(|(f, c)| (f.cert.clone(), not_after(&c.leaf)))
            .collect()
    }
}

/// One DER element: its tag, its content and what follows it; `None` when
/// the input is cut short or the length takes more than 4 octets (no
/// certificate is 4 GiB).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize),
            2 + n,
        )
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

/// The end of a certificate's validity (RFC 5280 4.1.2.5, `notAfter`) in
/// seconds since the epoch; `None` for anything that is not a certificate.
pub fn not_after(der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = der_element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der_element(cert)? else {
        return None;
    };
    // version [0] EXPLICIT (absent in v1), serialNumber, signature,
    // issuer, then validity (RFC 5280 4.1).
    let mut rest = tbs;
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for expected in [0x02, SEQUENCE, SEQUENCE] {
        let (tag, _, after) = der_element(rest)?;
        if tag != expected {
            return None;
        }
        rest = after;
    }
    let (SEQUENCE, validity, _) = der_element(rest)? else {
        return None;
    };
    let (_, _, after_not_before) = der_element(validity)?;
    let (tag, time, _) = der_element(after_not_before)?;
    der_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), the two forms RFC 5280 4.1.2.5 allows.
fn der_time(tag: u8, t: &[u8]) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.iter().try_fold(0i64, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, at) = match (tag, t.len()) {
        (0x17, 13) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 15) => (digits(0..4)?, 4),
        _ => return None,
    };
    if t.last() != Some(&b'Z') {
        return None;
    }
    let (month, day) = (digits(at..at + 2)?, digits(at + 2..at + 4)?);
    let (h, m, sec) = (
        digits(at + 4..at + 6)?,
        digits(at + 6..at + 8)?,
        digits(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

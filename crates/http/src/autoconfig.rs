//! Client autoconfiguration: Thunderbird's autoconfig (clientConfig v1.1),
//! Outlook's Autodiscover (POX) and an Apple configuration profile, all
//! pointing at the implicit-TLS ports (IMAPS, POP3S, submission 465) of the
//! server's host name, with the STARTTLS ports as alternatives.
//!
//! Answered on every listener, production's port-80 redirect listener
//! included (Thunderbird tries `http://autoconfig.DOMAIN/` first), without
//! a session, and only for hosted domains: an unknown domain gets 404, so
//! the server never advertises itself as anyone's mail server.
//!
//! The documents are built here from plain values (no I/O); the handlers
//! at the bottom only look the domain up and answer.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use postroom_core::Address;
use postroom_store::Store;
use quick_xml::events::Event;
use sha2::{Digest, Sha256};

/// Where the mail services are, as the configuration binds them.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// The server's host name (`[server] hostname`): the name on its
    /// certificate, so clients verify TLS against it.
    pub hostname: String,
    pub imaps: Option<u16>,
    pub imap: Option<u16>,
    pub pop3s: Option<u16>,
    pub pop3: Option<u16>,
    pub submissions: Option<u16>,
    pub submission: Option<u16>,
}

impl Endpoints {
    /// The first listener of each kind (`host:port`, `[v6]:port`).
    pub fn from_config(c: &postroom_config::Config) -> Endpoints {
        let port = |l: &[String]| {
            l.iter()
                .find_map(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()))
        };
        Endpoints {
            hostname: c.server.hostname.clone(),
            imaps: port(&c.imap.tls_listen),
            imap: port(&c.imap.listen),
            pop3s: port(&c.pop3.tls_listen),
            pop3: port(&c.pop3.listen),
            submissions: port(&c.submission.tls_listen),
            submission: port(&c.submission.listen),
        }
    }
}

/// What the handlers need.
pub struct Autoconfig {
    pub endpoints: Endpoints,
    pub store: Store,
}

/// An Autodiscover request is about 400 bytes; 16 KiB is room for any
/// client's whitespace and comments, and bounds what the parser reads.
pub const MAX_AUTODISCOVER_BYTES: usize = 16 * 1024;

/// The response schema Outlook asks for in a POX request.
pub const OUTLOOK_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const RESPONSE_NS: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";

/// XML (and plist, which is XML) text and attribute escaping.
pub fn xml_escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Thunderbird's autoconfig document (the clientConfig v1.1 format, as
/// Thunderbird's ISPDB serves it): servers in order of preference, the
/// implicit-TLS ones first; the login is the full address.
pub fn thunderbird(e: &Endpoints, domain: &str) -> String {
    let host = xml_escape(&e.hostname);
    let domain = xml_escape(domain);
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str("<clientConfig version=\"1.1\">\n");
    s.push_str(&format!("  <emailProvider id=\"{domain}\">\n"));
    s.push_str(&format!("    <domain>{domain}</domain>\n"));
    s.push_str(&format!("    <displayName>{domain}</displayName>\n"));
    s.push_str(&format!("    <displayShortName>{domain}</displayShortName>\n"));
    let server = |s: &mut String, tag: &str, kind: &str, port: Option<u16>, socket: &str| {
        if let Some(port) = port {
            s.push_str(&format!(
                "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      \
                 <socketType>{socket}</socketType>\n      <username>%EMAILADDRESS%</username>\n      \
                 <authentication>password-cleartext</authentication>\n    </{tag}>\n"
            ));
        }
    };
    server(&mut s, "incomingServer", "imap", e.imaps, "SSL");
    server(&mut s, "incomingServer", "imap", e.imap, "STARTTLS");
    server(&mut s, "incomingServer", "pop3", e.pop3s, "SSL");
    server(&mut s, "incomingServer", "pop3", e.pop3, "STARTTLS");
    server(&mut s, "outgoingServer", "smtp", e.submissions, "SSL");
    server(&mut s, "outgoingServer", "smtp", e.submission, "STARTTLS");
    s.push_str("  </emailProvider>\n</clientConfig>\n");
    s
}

/// Why an Autodiscover request is refused (400).
#[derive(Debug, PartialEq, Eq)]
pub enum AutodiscoverError {
    Malformed(String),
    NoAddress,
    /// A schema other than Outlook's POX (ActiveSync's mobilesync): we
    /// have nothing to offer it.
    Schema(String),
}

impl std::fmt::Display for AutodiscoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AutodiscoverError::Malformed(e) => write!(f, "malformed Autodiscover request: {e}"),
            AutodiscoverError::NoAddress => f.write_str("the request names no EMailAddress"),
            AutodiscoverError::Schema(s) => write!(f, "unsupported response schema {s}"),
        }
    }
}

/// Elements nested deeper than this are refused: the request has 3 levels.
const MAX_DEPTH: usize = 16;

/// The `EMailAddress` of a POX request
/// (`<Autodiscover><Request><EMailAddress>`), read with a real XML parser;
/// a document type (and so any entity definition) is refused.
pub fn parse_autodiscover(body: &[u8]) -> Result<String, AutodiscoverError> {
    let bad = |e: &dyn std::fmt::Display| AutodiscoverError::Malformed(e.to_string());
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut address: Option<String> = None;
    let mut schema: Option<String> = None;
    let mut text = String::new();
    let mut seen_root = false;
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(s) => {
                let name = s.local_name().as_ref().to_vec();
                if path.is_empty() {
                    if seen_root || name != b"Autodiscover" {
                        return Err(AutodiscoverError::Malformed(
                            "the root is not <Autodiscover>".into(),
                        ));
                    }
                    seen_root = true;
                }
                path.push(name);
                if path.len() > MAX_DEPTH {
                    return Err(AutodiscoverError::Malformed("nested too deep".into()));
                }
                text.clear();
            }
            Event::Empty(s) => {
                if path.is_empty() {
                    return Err(AutodiscoverError::Malformed(
                        "the root is not <Autodiscover>".into(),
                    ));
                }
                let _ = s;
            }
            Event::End(_) => {
                let in_request = path.len() == 3 && path[1] == b"Request";
                if in_request && path[2] == b"EMailAddress" {
                    address = Some(text.trim().to_string());
                } else if in_request && path[2] == b"AcceptableResponseSchema" {
                    schema = Some(text.trim().to_string());
                }
                path.pop();
                text.clear();
            }
            Event::Text(t) => {
                if path.is_empty() && !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(AutodiscoverError::Malformed("text outside the root".into()));
                }
                text.push_str(&t.decode().map_err(|e| bad(&e))?);
            }
            Event::CData(t) => text.push_str(&t.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| bad(&e))? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| bad(&e))?;
                    let v = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| AutodiscoverError::Malformed(format!("unknown entity &{name};")))?;
                    text.push_str(v);
                }
            }
            Event::DocType(_) => {
                return Err(AutodiscoverError::Malformed(
                    "a document type is not accepted".into(),
                ))
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        if text.len() > MAX_AUTODISCOVER_BYTES {
            return Err(AutodiscoverError::Malformed("too long".into()));
        }
    }
    if !path.is_empty() || !seen_root {
        return Err(AutodiscoverError::Malformed("the document ends early".into()));
    }
    if let Some(s) = schema {
        if s != OUTLOOK_SCHEMA {
            return Err(AutodiscoverError::Schema(s));
        }
    }
    address
        .filter(|a| !a.is_empty())
        .ok_or(AutodiscoverError::NoAddress)
}

/// Outlook's POX answer (the 2006a response schema): IMAP and SMTP, SSL on,
/// the full address as the login name. Outlook takes the first `<Protocol>`
/// of a type, so the implicit-TLS one comes first.
pub fn autodiscover(e: &Endpoints, address: &str) -> String {
    let host = xml_escape(&e.hostname);
    let addr = xml_escape(address);
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    s.push_str(&format!("<Autodiscover xmlns=\"{RESPONSE_NS}\">\n"));
    s.push_str(&format!("  <Response xmlns=\"{OUTLOOK_SCHEMA}\">\n"));
    s.push_str(&format!(
        "    <User>\n      <DisplayName>{addr}</DisplayName>\n    </User>\n"
    ));
    s.push_str("    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n");
    let proto = |s: &mut String, kind: &str, port: Option<u16>, implicit: bool| {
        let Some(port) = port else { return };
        // SSL on with a STARTTLS port: Outlook negotiates TLS on it when
        // told <Encryption>TLS</Encryption>.
        let enc = if implicit { "SSL" } else { "TLS" };
        let extra = if kind == "SMTP" {
            "        <UsePOPAuth>on</UsePOPAuth>\n        <SMTPLast>off</SMTPLast>\n"
        } else {
            ""
        };
        s.push_str(&format!(
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        \
             <Port>{port}</Port>\n        <LoginName>{addr}</LoginName>\n        \
             <DomainRequired>off</DomainRequired>\n        <SPA>off</SPA>\n        <SSL>on</SSL>\n        \
             <Encryption>{enc}</Encryption>\n        <AuthRequired>on</AuthRequired>\n{extra}      </Protocol>\n"
        ));
    };
    match (e.imaps, e.imap) {
        (Some(p), _) => proto(&mut s, "IMAP", Some(p), true),
        (None, p) => proto(&mut s, "IMAP", p, false),
    }
    match (e.submissions, e.submission) {
        (Some(p), _) => proto(&mut s, "SMTP", Some(p), true),
        (None, p) => proto(&mut s, "SMTP", p, false),
    }
    s.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    s
}

/// A UUID (RFC 9562 5.8, version 8: "custom") from a digest of the host
/// name, the address and what it names: stable per address, so installing
/// the profile again replaces the first instead of adding a second.
pub fn stable_uuid(hostname: &str, address: &str, what: &str) -> String {
    let mut h = Sha256::new();
    for part in ["postroom mobileconfig", hostname, address, what] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&h.finalize()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An unsigned Apple configuration profile with one com.apple.mail.managed
/// payload (Apple's "Configuration Profile Reference"): IMAP and SMTP over
/// SSL, the address as the user name; the password is asked on install.
pub fn mobileconfig(e: &Endpoints, address: &str) -> String {
    let host = xml_escape(&e.hostname);
    let addr = xml_escape(address);
    let (in_port, out_port) = (
        e.imaps.or(e.imap).unwrap_or(993),
        e.submissions.or(e.submission).unwrap_or(465),
    );
    let profile_uuid = stable_uuid(&e.hostname, address, "profile");
    let mail_uuid = stable_uuid(&e.hostname, address, "mail");
    // Reverse-DNS identifiers of the host name: one profile per address.
    let ident = format!("{}.mail.{}", host, &mail_uuid);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key><string>{addr}</string>
      <key>EmailAccountType</key><string>EmailTypeIMAP</string>
      <key>EmailAddress</key><string>{addr}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key><string>{host}</string>
      <key>IncomingMailServerPortNumber</key><integer>{in_port}</integer>
      <key>IncomingMailServerUseSSL</key><true/>
      <key>IncomingMailServerUsername</key><string>{addr}</string>
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key><string>{host}</string>
      <key>OutgoingMailServerPortNumber</key><integer>{out_port}</integer>
      <key>OutgoingMailServerUseSSL</key><true/>
      <key>OutgoingMailServerUsername</key><string>{addr}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>
      <key>PayloadDescription</key><string>Mail account {addr}</string>
      <key>PayloadDisplayName</key><string>{addr}</string>
      <key>PayloadIdentifier</key><string>{ident}.account</string>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadUUID</key><string>{mail_uuid}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key><string>Mail settings for {addr}</string>
  <key>PayloadDisplayName</key><string>Mail: {addr}</string>
  <key>PayloadIdentifier</key><string>{ident}</string>
  <key>PayloadRemovalDisallowed</key><false/>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{profile_uuid}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
"#
    )
}

// ---- handlers ----

#[derive(serde::Deserialize)]
struct AddressQuery {
    emailaddress: Option<String>,
}

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// An address from a client: parsed as `postroom_core::Address` (bounded
/// lengths, no angle brackets), else 400.
fn parse_address(s: &str) -> Result<Address, Response> {
    Address::parse(s.trim(), true).map_err(|e| text(StatusCode::BAD_REQUEST, &format!("not an address: {e}")))
}

/// The hosted domain's canonical name, or 404 (503 when the store fails).
async fn hosted(ac: &Autoconfig, domain: &postroom_core::Domain) -> Result<String, Response> {
    match ac.store.meta().domain(domain.canonical()).await {
        Ok(Some(_)) => Ok(domain.canonical().to_string()),
        Ok(None) => Err(text(StatusCode::NOT_FOUND, "not a domain hosted here")),
        Err(e) => {
            tracing::warn!(error = %e, "autoconfig: domain lookup failed");
            Err(text(StatusCode::SERVICE_UNAVAILABLE, "try again later"))
        }
    }
}

/// `?emailaddress=` names the domain; without it (Thunderbird's
/// `autoconfig.DOMAIN` host form may omit it) the Host header does.
async fn thunderbird_handler(ac: Arc<Autoconfig>, q: AddressQuery, headers: HeaderMap) -> Response {
    let domain = match q.emailaddress.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(a) => match parse_address(a) {
            Ok(a) => a.domain().clone(),
            Err(r) => return r,
        },
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or(h))
                .unwrap_or("");
            let name = host.strip_prefix("autoconfig.").unwrap_or(host);
            match postroom_core::Domain::parse(name) {
                Ok(d) => d,
                Err(_) => return text(StatusCode::BAD_REQUEST, "give ?emailaddress=user@domain"),
            }
        }
    };
    match hosted(&ac, &domain).await {
        Ok(d) => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            thunderbird(&ac.endpoints, &d),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn autodiscover_handler(ac: Arc<Autoconfig>, req: Request) -> Response {
    let body = match axum::body::to_bytes(req.into_body(), MAX_AUTODISCOVER_BYTES).await {
        Ok(b) => b,
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large"),
    };
    let address = match parse_autodiscover(&body) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let address = match parse_address(&address) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = hosted(&ac, address.domain()).await {
        return r;
    }
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        autodiscover(&ac.endpoints, &address.to_string()),
    )
        .into_response()
}

/// Outlook's "HTTP redirect method": over plain HTTP it only GETs
/// `http://autodiscover.DOMAIN/autodiscover/autodiscover.xml` and expects
/// a 302 to an https:// URL, where it POSTs its request; the server's own
/// host name is the one its certificate names. Over HTTPS a GET is not
/// part of the protocol (405).
async fn autodiscover_get(ac: Arc<Autoconfig>, req: Request) -> Response {
    let tls = req
        .extensions()
        .get::<crate::server::ConnInfo>()
        .is_some_and(|c| c.tls);
    if tls {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST the Autodiscover request");
    }
    let host = &ac.endpoints.hostname;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
    {
        return text(StatusCode::NOT_FOUND, "no HTTPS host name to redirect to");
    }
    (
        StatusCode::FOUND,
        [(
            header::LOCATION,
            format!("https://{host}/autodiscover/autodiscover.xml"),
        )],
    )
        .into_response()
}

async fn mobileconfig_handler(ac: Arc<Autoconfig>, q: AddressQuery) -> Response {
    let Some(a) = q.emailaddress.as_deref().filter(|s| !s.trim().is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "give ?emailaddress=user@domain");
    };
    let address = match parse_address(a) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = hosted(&ac, address.domain()).await {
        return r;
    }
    let name = format!("{}.mobileconfig", address.domain().canonical());
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-apple-aspen-config".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        mobileconfig(&ac.endpoints, &address.to_string()),
    )
        .into_response()
}

/// The routes, for the console's app and for the redirect listener.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(ac: Option<Arc<Autoconfig>>) -> Router<S> {
    let Some(ac) = ac else { return Router::new() };
    let tb = {
        let ac = Arc::clone(&ac);
        move |q: Result<Query<AddressQuery>, _>, headers: HeaderMap| {
            let ac = Arc::clone(&ac);
            async move {
                let q: Result<Query<AddressQuery>, axum::extract::rejection::QueryRejection> = q;
                match q {
                    Ok(Query(q)) => thunderbird_handler(ac, q, headers).await,
                    Err(_) => text(StatusCode::BAD_REQUEST, "malformed query"),
                }
            }
        }
    };
    let ad = {
        let ac = Arc::clone(&ac);
        move |req: Request<Body>| autodiscover_handler(Arc::clone(&ac), req)
    };
    let ad_get = {
        let ac = Arc::clone(&ac);
        move |req: Request<Body>| autodiscover_get(Arc::clone(&ac), req)
    };
    let mc = {
        let ac = Arc::clone(&ac);
        move |q: Result<Query<AddressQuery>, axum::extract::rejection::QueryRejection>| {
            let ac = Arc::clone(&ac);
            async move {
                match q {
                    Ok(Query(q)) => mobileconfig_handler(ac, q).await,
                    Err(_) => text(StatusCode::BAD_REQUEST, "malformed query"),
                }
            }
        }
    };
    Router::new()
        .route("/.well-known/autoconfig/mail/config-v1.1.xml", get(tb.clone()))
        .route("/mail/config-v1.1.xml", get(tb))
        .route(
            "/autodiscover/autodiscover.xml",
            post(ad.clone()).get(ad_get.clone()),
        )
        .route("/Autodiscover/Autodiscover.xml", post(ad).get(ad_get))
        .route("/apple/mail.mobileconfig", get(mc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoints {
        Endpoints {
            hostname: "mail.example.net".into(),
            imaps: Some(993),
            imap: Some(143),
            pop3s: Some(995),
            pop3: Some(110),
            submissions: Some(465),
            submission: Some(587),
        }
    }

    const POX: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>kent@esoomllub.com</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;

    #[test]
    fn reads_the_address_of_a_pox_request() {
        assert_eq!(parse_autodiscover(POX.as_bytes()).unwrap(), "kent@esoomllub.com");
        let escaped = POX.replace("kent@", "k&amp;&#101;nt@");
        assert_eq!(
            parse_autodiscover(escaped.as_bytes()).unwrap(),
            "k&ent@esoomllub.com"
        );
    }

    #[test]
    fn refuses_malformed_requests() {
        for bad in [
            "",
            "not xml",
            "<Autodiscover><Request><EMailAddress>a@b</Request></Autodiscover>",
            "<Autodiscover><Request><EMailAddress>a@b</EMailAddress></Request>",
            "<Other><Request><EMailAddress>a@b</EMailAddress></Request></Other>",
            "<!DOCTYPE x [<!ENTITY e \"a@b\">]><Autodiscover><Request><EMailAddress>&e;</EMailAddress></Request></Autodiscover>",
            "<Autodiscover><Request><EMailAddress>&nope;</EMailAddress></Request></Autodiscover>",
            "<Autodiscover><Request></Request></Autodiscover>",
            "<Autodiscover/>",
        ] {
            assert!(parse_autodiscover(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("<Autodiscover>{}", "<a>".repeat(100));
        assert!(parse_autodiscover(deep.as_bytes()).is_err());
        let other = POX.replace("outlook/responseschema/2006a", "mobilesync/responseschema/2006");
        assert!(matches!(
            parse_autodiscover(other.as_bytes()),
            Err(AutodiscoverError::Schema(_))
        ));
    }

    #[test]
    fn everything_is_escaped() {
        let e = Endpoints {
            hostname: "a<b".into(),
            ..ep()
        };
        let hostile = "\"<x>&'\"@example.com";
        for doc in [
            thunderbird(&e, "d&<"),
            autodiscover(&e, hostile),
            mobileconfig(&e, hostile),
        ] {
            assert!(
                !doc.contains("a<b") && !doc.contains("<x>") && !doc.contains("d&<"),
                "{doc}"
            );
        }
    }

    #[test]
    fn documents_point_at_the_tls_ports() {
        let t = thunderbird(&ep(), "example.com");
        let first = t.find("<port>993</port>").unwrap();
        assert!(first < t.find("<port>143</port>").unwrap());
        assert!(t.contains("<socketType>SSL</socketType>") && t.contains("<port>465</port>"));
        let a = autodiscover(&ep(), "u@example.com");
        assert!(
            a.contains("<Port>993</Port>")
                && a.contains("<Port>465</Port>")
                && !a.contains("<Port>143</Port>")
        );
        let m = mobileconfig(&ep(), "u@example.com");
        assert!(m.contains("<integer>993</integer>") && m.contains("<integer>465</integer>"));
    }

    #[test]
    fn a_quoted_address_with_markup_is_escaped_not_refused() {
        let a = Address::parse("\"<b>&'x\"@esoomllub.com", true)
            .unwrap()
            .to_string();
        let doc = mobileconfig(&ep(), &a);
        assert!(
            doc.contains("&quot;&lt;b&gt;&amp;&apos;x&quot;@esoomllub.com"),
            "{doc}"
        );
    }

    proptest::proptest! {
        // Whatever a client POSTs, an answer or an error, never a panic.
        #[test]
        fn any_body_is_answered_without_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_autodiscover(&body);
        }

        #[test]
        fn a_damaged_request_is_answered_without_panic(cut in 0usize..POX.len(), junk in "[<>&;/a-zA-Z!\\[\\]\"']{0,8}") {
            let mut s = POX.as_bytes()[..cut].to_vec();
            s.extend_from_slice(junk.as_bytes());
            s.extend_from_slice(&POX.as_bytes()[cut..]);
            let _ = parse_autodiscover(&s);
        }
    }

    #[test]
    fn endpoints_are_the_first_configured_ports() {
        let c = postroom_config::Config::parse(
            "[server]\nhostname = \"mail.example.net\"\n[imap]\ntls_listen = [\"[::]:993\", \"0.0.0.0:994\"]\nlisten = []\n",
        )
        .unwrap();
        let e = Endpoints::from_config(&c);
        assert_eq!(
            (e.hostname.as_str(), e.imaps, e.imap),
            ("mail.example.net", Some(993), None)
        );
        // The trial's defaults: its own ports.
        let t = Endpoints::from_config(&postroom_config::Config::parse("").unwrap());
        assert_eq!((t.imaps, t.submissions), (Some(10993), Some(10465)));
    }

    #[test]
    fn payload_uuids_are_stable_and_distinct() {
        let a = stable_uuid("h", "u@example.com", "mail");
        assert_eq!(a, stable_uuid("h", "u@example.com", "mail"));
        assert_ne!(a, stable_uuid("h", "v@example.com", "mail"));
        assert_ne!(a, stable_uuid("h", "u@example.com", "profile"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }
}

//! Postroom's one configuration file. Every setting has a default that
//! serves: without a file Postroom runs as a trial instance on 127.0.0.1 and
//! unprivileged ports. `postroom config example` prints [`EXAMPLE`], the
//! production configuration with every setting documented.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use postroom_core::{Domain, IpNetList};
use serde::Deserialize;

/// The production example, every setting commented. A test checks that it
/// parses and validates, so it cannot drift from the code.
pub const EXAMPLE: &str = include_str!("example.toml");

/// Trial ports (no config file): the same whatever the uid.
pub const TRIAL_SMTP_PORT: u16 = 10025;
pub const TRIAL_POP3_PORT: u16 = 10110;
pub const TRIAL_POP3S_PORT: u16 = 10995;
pub const TRIAL_SUBMISSION_PORT: u16 = 10587;
pub const TRIAL_SUBMISSIONS_PORT: u16 = 10465;
pub const TRIAL_IMAP_PORT: u16 = 10143;
pub const TRIAL_IMAPS_PORT: u16 = 10993;
pub const TRIAL_HTTP_PORT: u16 = 10080;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub smtp: SmtpConfig,
    pub submission: SubmissionConfig,
    pub pop3: Pop3Config,
    pub imap: ImapConfig,
    pub queue: QueueConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub dns: DnsConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub acme: AcmeConfig,
    pub http: HttpConfig,
    pub filter: FilterConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub hostname: String,
    pub data_dir: Option<PathBuf>,
    pub run_as: Option<String>,
    pub postmaster: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            hostname: system_hostname(),
            data_dir: None,
            run_as: None,
            postmaster: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub listen: Vec<String>,
    pub proxy_protocol: bool,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Networks the per-client limit does not apply to, on the MX and on
    /// submission (IMAP and POP3 have their own: `imap.`/`pop3.`).
    pub connection_limit_exempt: Vec<String>,
    pub idle_timeout_secs: u64,
    /// A command line must be complete this long after its first byte.
    pub command_timeout_secs: u64,
    /// A message's content (DATA to the final dot, or all its BDAT
    /// chunks) must arrive within this.
    pub data_timeout_secs: u64,
    /// A connection's whole life, message content not counted.
    pub session_timeout_secs: u64,
    /// Message bytes held whole in memory at once, over all connections.
    pub max_in_memory_bytes: u64,
    pub max_line_length: usize,
    pub soft_error_limit: u32,
    pub hard_error_limit: u32,
    pub error_sleep_ms: u64,
    pub strict_line_endings: bool,
    pub trusted_networks: Vec<String>,
    pub relay_denied_code: u16,
    pub reject_disabled_accounts: bool,
    pub max_received_headers: usize,
    pub quota_exceeded_code: u16,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![format!("127.0.0.1:{TRIAL_SMTP_PORT}")],
            proxy_protocol: false,
            max_message_size: 45_000_000,
            max_recipients: 100,
            max_connections: 1000,
            max_connections_per_client: 10,
            connection_limit_exempt: Vec::new(),
            idle_timeout_secs: 180,
            command_timeout_secs: 180,
            data_timeout_secs: 900,
            session_timeout_secs: 1800,
            max_in_memory_bytes: 200_000_000,
            max_line_length: 2048,
            soft_error_limit: 10,
            hard_error_limit: 20,
            error_sleep_ms: 1000,
            strict_line_endings: false,
            trusted_networks: Vec::new(),
            relay_denied_code: 554,
            reject_disabled_accounts: false,
            max_received_headers: 100,
            quota_exceeded_code: 452,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionConfig {
    /// STARTTLS listeners (587, and 2525 where 587 is blocked).
    pub listen: Vec<String>,
    /// Implicit TLS listeners (465).
    pub tls_listen: Vec<String>,
    pub proxy_protocol: bool,
    /// Connections not (yet) authenticated, overall and per client.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Authenticated connections, overall and per client: a pool of their
    /// own, so a flood of unauthenticated ones cannot starve users.
    pub max_authenticated_connections: usize,
    pub max_authenticated_connections_per_client: usize,
    pub max_recipients: usize,
    /// Write the client's IP address into Received: headers.
    pub expose_client_ip: bool,
    pub max_messages_per_user_per_hour: u32,
    pub max_recipients_per_user_per_hour: u32,
    pub max_messages_per_domain_per_hour: u32,
    /// Refused attempts worth this many hourly caps hold the user's mail.
    pub hold_after_caps: u32,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listen: vec![format!("127.0.0.1:{TRIAL_SUBMISSION_PORT}")],
            tls_listen: vec![format!("127.0.0.1:{TRIAL_SUBMISSIONS_PORT}")],
            proxy_protocol: false,
            max_connections: 1000,
            max_connections_per_client: 10,
            max_authenticated_connections: 1000,
            max_authenticated_connections_per_client: 50,
            max_recipients: 1000,
            expose_client_ip: false,
            max_messages_per_user_per_hour: 500,
            max_recipients_per_user_per_hour: 2500,
            max_messages_per_domain_per_hour: 10000,
            hold_after_caps: 3,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Plain listeners (STLS before login).
    pub listen: Vec<String>,
    /// Implicit TLS listeners (995).
    pub tls_listen: Vec<String>,
    pub proxy_protocol: bool,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Networks `max_connections_per_client` does not apply to (POP3 only:
    /// an address exempt on the MX is not exempt here).
    pub connection_limit_exempt: Vec<String>,
    pub max_connections_per_user: usize,
    pub idle_timeout_secs: u64,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: vec![format!("127.0.0.1:{TRIAL_POP3_PORT}")],
            tls_listen: vec![format!("127.0.0.1:{TRIAL_POP3S_PORT}")],
            proxy_protocol: false,
            max_connections: 1000,
            max_connections_per_client: 20,
            connection_limit_exempt: Vec::new(),
            max_connections_per_user: 10,
            idle_timeout_secs: 600,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Plain listeners (STARTTLS before login).
    pub listen: Vec<String>,
    /// Implicit TLS listeners (993).
    pub tls_listen: Vec<String>,
    pub proxy_protocol: bool,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Networks `max_connections_per_client` does not apply to (IMAP only:
    /// an address exempt on the MX is not exempt here).
    pub connection_limit_exempt: Vec<String>,
    pub max_connections_per_user: usize,
    pub idle_timeout_secs: u64,
    /// The largest APPEND (advertised as APPENDLIMIT).
    pub max_append: u32,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            listen: vec![format!("127.0.0.1:{TRIAL_IMAP_PORT}")],
            tls_listen: vec![format!("127.0.0.1:{TRIAL_IMAPS_PORT}")],
            proxy_protocol: false,
            max_connections: 5000,
            max_connections_per_client: 50,
            connection_limit_exempt: Vec::new(),
            max_connections_per_user: 50,
            idle_timeout_secs: 1800,
            max_append: 50_000_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The port remote servers are reached on (25; tests use others).
    pub remote_port: u16,
    /// Connections to one destination domain at once (the seed's 2).
    pub per_destination_concurrency: usize,
    pub max_outbound_connections: usize,
    /// First retry after this, doubling up to `retry_max_secs`.
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    /// Bounce what could not be delivered after this long (5 days).
    pub lifetime_secs: u64,
    pub timeout_secs: u64,
    /// STARTTLS to remote servers whenever they offer it.
    pub opportunistic_tls: bool,
    /// A still-undelivered recipient's sender gets one delay warning (an
    /// RFC 3464 `delayed` DSN) after this long; 0 turns it off.
    pub delay_warning_secs: u64,
    /// An SMTP connection to a destination stays open this long, idle, for
    /// more mail to it (0: QUIT after each message).
    pub connection_idle_secs: u64,
    /// How often each domain's admins get the list of mail held for their
    /// domain since the last one (a day; nothing is sent when nothing was
    /// held). Tests set a second.
    pub held_report_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            remote_port: 25,
            per_destination_concurrency: 2,
            max_outbound_connections: 50,
            retry_min_secs: 300,
            retry_max_secs: 3600,
            lifetime_secs: 5 * 24 * 3600,
            timeout_secs: 300,
            opportunistic_tls: true,
            delay_warning_secs: 4 * 3600,
            connection_idle_secs: 5,
            held_report_secs: 24 * 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lets old clients log in with the local part alone.
    pub default_domain: Option<String>,
    /// Networks where a password may be sent without TLS.
    pub plaintext_networks: Vec<String>,
    pub failures_before_delay: u32,
    pub failure_window_secs: u64,
    pub max_delay_secs: u64,
    pub block_after: u32,
    /// The fewest characters a password set through the CLI may have.
    pub min_password_length: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            default_domain: None,
            plaintext_networks: Vec::new(),
            failures_before_delay: 5,
            failure_window_secs: 300,
            max_delay_secs: 15,
            block_after: 30,
            // NIST SP 800-63B 5.1.1.1: at least 8 characters for a secret
            // the user chose.
            min_password_length: 8,
        }
    }
}

/// The content filter (`crates/filter`, issue #10): every part has its
/// own table, `[filter.links]`, `[filter.sender]`, ... so each check's
/// settings live beside each other and nowhere else.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// false: every message is delivered unscored (as before the filter).
    pub enabled: bool,
    /// Symbol scores overriding the built-in ones, by symbol name
    /// (`HTML_IFRAME_HIDDEN = 4.0`).
    pub scores: std::collections::BTreeMap<String, f64>,
    /// What a score leads to, for every domain unless the domain's own
    /// settings say otherwise.
    pub policy: FilterPolicyConfig,
    /// Quarantined mail not released by then is deleted (days).
    pub quarantine_days: u64,
    pub links: FilterLinksConfig,
    pub html: FilterHtmlConfig,
    pub sender: FilterSenderConfig,
    pub attachments: FilterAttachmentsConfig,
    pub clamav: FilterClamavConfig,
    pub classifier: FilterClassifierConfig,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            enabled: true,
            scores: Default::default(),
            policy: Default::default(),
            // The (and MailScanner's usual) 30 days.
            quarantine_days: 30,
            links: Default::default(),
            html: Default::default(),
            sender: Default::default(),
            attachments: Default::default(),
            clamav: Default::default(),
            classifier: Default::default(),
        }
    }
}

/// Thresholds (MailScanner's defaults: tag at 6, quarantine at 10).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterPolicyConfig {
    /// At or above: `X-Spam-*` headers and the recipient's Junk folder.
    pub junk_at: f64,
    /// At or above: held in the quarantine for an admin's release.
    pub quarantine_at: f64,
    /// At or above: refused at SMTP time (`550 5.7.1`), or dropped when
    /// `high_action` is "discard".
    pub high_at: f64,
    /// "reject" or "discard".
    pub high_action: String,
}

impl Default for FilterPolicyConfig {
    fn default() -> Self {
        FilterPolicyConfig {
            junk_at: 6.0,
            quarantine_at: 10.0,
            high_at: 20.0,
            high_action: "reject".into(),
        }
    }
}

impl FilterPolicyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, what: String| Err(ConfigError(format!("filter.policy.{key}: {what}")));
        if !["reject", "discard"].contains(&self.high_action.as_str()) {
            return err(
                "high_action",
                format!("`{}`: must be \"reject\" or \"discard\"", self.high_action),
            );
        }
        let finite = [self.junk_at, self.quarantine_at, self.high_at]
            .iter()
            .all(|x| x.is_finite());
        if !finite || self.junk_at > self.quarantine_at || self.quarantine_at > self.high_at {
            return err(
                "junk_at",
                "thresholds must be numbers with junk_at <= quarantine_at <= high_at".into(),
            );
        }
        Ok(())
    }
}

/// Links, blocklist files and the phishing net (`crates/filter/src/links.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterLinksConfig {
    /// Files of phishing hosts or domains, one a line (MailScanner's
    /// `phishing.bad.sites` format; `#` comments). A link to one rejects
    /// the message whatever its score, whitelisted sender or not. Reread
    /// when they change on disk, while the server runs.
    pub phishing_blocklists: Vec<PathBuf>,
    /// Files of spam hosts or domains, the same format: a link to one
    /// scores `LINK_SPAM_BLOCKLIST`.
    pub spam_blocklists: Vec<PathBuf>,
    /// Files of safe sites (known redirectors, the provider's own
    /// trackers), the same format: links to them are exempt from the
    /// phishing net and the spam lists. A phishing-listed target hidden
    /// in a safe redirector's parameters is still found.
    pub safe_sites: Vec<PathBuf>,
    /// The phishing net (MailScanner's): a link whose visible text names
    /// another host than its target, or a numeric-IP link, scores and is
    /// disarmed.
    pub phishing_net: bool,
    /// Links examined per message; past this, the rest are not looked at
    /// (`LINK_TOO_MANY` names it).
    pub max_links: usize,
}

impl Default for FilterLinksConfig {
    fn default() -> Self {
        FilterLinksConfig {
            phishing_blocklists: Vec::new(),
            spam_blocklists: Vec::new(),
            safe_sites: Vec::new(),
            phishing_net: true,
            // A newsletter carries 50-200 links; 1,000 keeps every real
            // one and bounds the cost of a message made of links.
            max_links: 1000,
        }
    }
}

/// HTML disarming (`crates/filter/src/html.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterHtmlConfig {
    /// false: HTML is scored but delivered as sent.
    pub disarm: bool,
    /// Put at the start of the Subject of a disarmed message; "" adds
    /// nothing (the seed lets a customer turn the tag off).
    pub subject_tag: String,
}

impl Default for FilterHtmlConfig {
    fn default() -> Self {
        FilterHtmlConfig {
            disarm: true,
            subject_tag: "{Cleaned}".into(),
        }
    }
}

/// Sender checks: rDNS, HELO, SPF, DKIM, DMARC, ARC, DNS blocklists
/// (`crates/filter/src/sender.rs`). Their DNS lookups use `[dns]`; with
/// `dns.enabled = false` only the HELO checks run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSenderConfig {
    /// false: no sender checks and no Authentication-Results header.
    pub enabled: bool,
    /// DNS blocklist zones the client's IP is looked up under
    /// (`dnsbl.example.net`). None is preset: the public ones need
    /// registration above a small volume.
    pub dnsbl_zones: Vec<String>,
    /// An SPF `fail` (the MAIL FROM domain says the client may not send
    /// its mail) is refused with `550 5.7.1` (RFC 7208 8.4), unless a
    /// valid DKIM signature of that domain vouches for the message. false:
    /// it only scores (`SPF_FAIL`).
    pub spf_fail_rejects: bool,
    /// false: mail from this machine itself (a loopback client: a local
    /// application, `swaks` on the host) skips the sender checks, as
    /// rspamd's `local_addrs` do. Its reverse name is `localhost`, no SPF
    /// record lists 127.0.0.1, and blocklists answer for 127.0.0.2 as
    /// their test entry: every such check would only mislead.
    pub check_local_clients: bool,
}

impl Default for FilterSenderConfig {
    fn default() -> Self {
        FilterSenderConfig {
            enabled: true,
            check_local_clients: false,
            dnsbl_zones: Vec::new(),
            // What Postfix's policyd-spf does by default, which the
            // installations Postroom replaces run.
            spf_fail_rejects: true,
        }
    }
}

impl FilterSenderConfig {
    /// More zones than this is a configuration mistake: each is one more
    /// lookup per message.
    pub const MAX_DNSBL_ZONES: usize = 16;

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |what: String| Err(ConfigError(format!("filter.sender.dnsbl_zones: {what}")));
        if self.dnsbl_zones.len() > Self::MAX_DNSBL_ZONES {
            return err(format!("at most {} zones", Self::MAX_DNSBL_ZONES));
        }
        for zone in &self.dnsbl_zones {
            let name = zone.trim_end_matches('.');
            if Domain::parse(name).is_err() || !name.contains('.') {
                return err(format!("`{zone}` is not a DNS zone"));
            }
        }
        Ok(())
    }
}

/// Attachment name and type rules (`crates/filter/src/attachments.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterAttachmentsConfig {
    /// The provider's own rules, tried in order before the built-in ones;
    /// the first that matches decides.
    pub rules: Vec<AttachmentRule>,
    /// false: only `rules` apply (the built-in rules deny executables and
    /// scripts by name and by content, as Gmail does).
    pub default_rules: bool,
    /// A file name longer than this (characters) is refused (MailScanner's
    /// "very long filename" rule, 150).
    pub max_name_length: usize,
    /// A password-protected archive: "reject", "score"
    /// (`ATTACH_ENCRYPTED_ARCHIVE`) or "allow".
    pub encrypted_archives: String,
    /// Entries looked at in one zip archive.
    pub max_zip_entries: usize,
    /// Zips inside zips followed this deep.
    pub max_zip_depth: usize,
    /// A zip inside a zip is opened only up to this size (bytes,
    /// uncompressed).
    pub max_nested_zip_bytes: u64,
}

impl Default for FilterAttachmentsConfig {
    fn default() -> Self {
        FilterAttachmentsConfig {
            rules: Vec::new(),
            default_rules: true,
            max_name_length: 150,
            // MailScanner's own default ("Allow Password-Protected
            // Archives = no"): nothing can scan inside them, and
            // password-protected zips with the password in the body are
            // how Emotet and Qakbot were delivered.
            encrypted_archives: "reject".into(),
            // Real archives mailed as attachments hold tens of files; a
            // thousand entries is ample and bounds the work per archive.
            max_zip_entries: 1000,
            max_zip_depth: 2,
            max_nested_zip_bytes: 4 << 20,
        }
    }
}

impl FilterAttachmentsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !["reject", "score", "allow"].contains(&self.encrypted_archives.as_str()) {
            return Err(ConfigError(format!(
                "filter.attachments.encrypted_archives: \"{}\" is not \"reject\", \"score\" or \"allow\"",
                self.encrypted_archives
            )));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !["allow", "deny"].contains(&rule.action.as_str()) {
                return Err(ConfigError(format!(
                    "filter.attachments.rules[{i}].action: \"{}\" is not \"allow\" or \"deny\"",
                    rule.action
                )));
            }
            if rule.name.is_none() && rule.content_type.is_none() {
                return Err(ConfigError(format!(
                    "filter.attachments.rules[{i}]: give a name pattern, a type, or both"
                )));
            }
        }
        Ok(())
    }
}

/// One attachment rule: a file-name pattern (`*` and `?`, case-insensitive,
/// e.g. "*.exe") and/or a content type detected from the file's first
/// bytes (e.g. "application/x-executable"); both must match when both are
/// given.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRule {
    /// "allow" or "deny".
    pub action: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub content_type: Option<String>,
    /// Said in the rejection and the report.
    #[serde(default)]
    pub reason: String,
}

/// clamd (`crates/filter/src/clamav.rs`): `socket` or `address`, neither
/// means no virus scan. Configured, an unreachable or slow clamd tempfails
/// the message (`451 4.7.1`): it is never accepted unscanned.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterClamavConfig {
    /// clamd's unix socket (`LocalSocket`), e.g. `/run/clamav/clamd.ctl`.
    pub socket: Option<String>,
    /// clamd's TCP address (`TCPAddr:TCPSocket`), e.g. `127.0.0.1:3310`.
    pub address: Option<String>,
    /// Bytes of a message sent to clamd: at most clamd's own
    /// `StreamMaxLength`, which closes the stream with an error above it.
    /// A larger message has only its first `max_stream_bytes` scanned
    /// (the `CLAMAV_PARTIAL` symbol names it).
    pub max_stream_bytes: u64,
}

impl Default for FilterClamavConfig {
    fn default() -> Self {
        FilterClamavConfig {
            socket: None,
            address: None,
            // clamd's StreamMaxLength as Debian's clamav-daemon writes it
            // (25M); smtp.max_message_size (45 MB) is larger, so the
            // largest messages are scanned in part.
            max_stream_bytes: 25 * 1024 * 1024,
        }
    }
}

impl FilterClamavConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, what: String| Err(ConfigError(format!("filter.clamav.{key}: {what}")));
        if self.socket.is_some() && self.address.is_some() {
            return err("socket", "set socket or address, not both".into());
        }
        if let Some(a) = &self.address {
            if a.parse::<SocketAddr>().is_err() {
                return err(
                    "address",
                    format!("`{a}` is not an address:port (127.0.0.1:3310)"),
                );
            }
        }
        if let Some(s) = &self.socket {
            if !s.starts_with('/') {
                return err("socket", format!("`{s}` is not an absolute path"));
            }
        }
        if self.max_stream_bytes == 0 || self.max_stream_bytes > u64::from(u32::MAX) {
            return err(
                "max_stream_bytes",
                "must be more than 0 and less than 4 GiB (clamd's limit)".into(),
            );
        }
        Ok(())
    }
}

/// The statistical classifier (`crates/filter/src/classifier.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterClassifierConfig {
    /// false: the classifier neither scores nor trains from IMAP moves or
    /// the report address (`postroom spam train` still trains).
    pub enabled: bool,
    /// The classifier votes only once trained on this many spam and this
    /// many ham messages: with fewer, a handful of messages would decide
    /// (SpamAssassin waits for 200 of each, `bayes_min_spam_num`).
    pub min_spam: u32,
    pub min_ham: u32,
    /// How often (seconds) the server looks for training made by other
    /// nodes on the same PostgreSQL database (or by `postroom spam`) and
    /// reloads the model when there is some.
    pub reload_secs: u64,
    /// An address (on a hosted domain) that authenticated users forward
    /// spam to, attached as message/rfc822: each attached message trains
    /// the classifier as spam; the forward itself is not delivered.
    /// Empty: none.
    pub report_address: String,
    /// Moving a message into a `\Junk` folder over IMAP trains it as spam,
    /// moving it out of one trains it as ham.
    pub train_on_move: bool,
}

impl Default for FilterClassifierConfig {
    fn default() -> Self {
        FilterClassifierConfig {
            enabled: true,
            min_spam: 200,
            min_ham: 200,
            reload_secs: 60,
            report_address: String::new(),
            train_on_move: true,
        }
    }
}

impl FilterClassifierConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.reload_secs == 0 {
            return Err(ConfigError(
                "filter.classifier.reload_secs: must be at least 1".into(),
            ));
        }
        let a = self.report_address.trim();
        if !a.is_empty() && postroom_core::Address::parse(a, true).is_err() {
            return Err(ConfigError(format!(
                "filter.classifier.report_address: `{a}` is not an address"
            )));
        }
        Ok(())
    }
}

/// The web console and the HTTP API (`crates/http`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Plain HTTP listeners. With `tls_listen` empty they serve the
    /// console (the trial, on loopback); otherwise they only redirect to
    /// HTTPS.
    pub listen: Vec<String>,
    /// HTTPS listeners (443), with the `[tls]` certificates and SNI.
    pub tls_listen: Vec<String>,
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The longest a request may take, from its first byte to its answer.
    pub request_timeout_secs: u64,
    /// A console session ends after this long without a request.
    pub session_idle_secs: u64,
    /// A console session ends this long after its login, however busy.
    pub session_max_secs: u64,
    /// Who may read `/metrics` without a session (a provider admin's
    /// session or token reads it from anywhere).
    pub metrics_networks: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: vec![format!("127.0.0.1:{TRIAL_HTTP_PORT}")],
            tls_listen: Vec::new(),
            // A console has a handful of staff and customers' admins at a
            // time; 256 leaves room for browsers' 6 connections each
            // without letting one client hold thousands of sockets.
            max_connections: 256,
            // The largest API request is an alias with 10,000 targets of
            // about 30 bytes (admin::MAX_TARGETS): 300 KB. 1 MiB covers
            // it with room to spare.
            max_body_bytes: 1 << 20,
            request_timeout_secs: 30,
            // OWASP session management: 15-30 minutes idle for a
            // privileged application, and an absolute lifetime of a
            // working day (12 h).
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            // A Prometheus on the same host; others are listed explicitly.
            metrics_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// More certificates, chosen by SNI.
    pub certificates: Vec<CertPair>,
    /// Without any certificate: make a self-signed one for the host name.
    pub self_signed: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            certificates: Vec::new(),
            self_signed: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsConfig {
    /// Every configured pair, the default (`cert`/`key`) first.
    pub fn pairs(&self) -> Vec<CertPair> {
        let mut v = Vec::new();
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            v.push(CertPair {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        v.extend(self.certificates.iter().cloned());
        v
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub enabled: bool,
    pub resolvers: Vec<String>,
    pub timeout_secs: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            resolvers: Vec::new(),
            timeout_secs: 5,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    /// `text` (one line per event, `key=value` fields) or `json` (one
    /// object per line).
    pub format: String,
    /// `stderr`, `journal` (systemd's journal, fields as journal fields),
    /// or an absolute file path (appended to; reopened on SIGHUP).
    pub output: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
            output: "stderr".into(),
        }
    }
}

/// Certificates from an ACME CA (RFC 8555), made and renewed by the server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    pub enabled: bool,
    /// The CA's directory URL.
    pub directory: String,
    /// `mailto:` addresses the CA writes to about the account.
    pub contact: Vec<String>,
    /// The names on the certificate; empty: `server.hostname`.
    pub names: Vec<String>,
    /// `http-01` or `tls-alpn-01`.
    pub challenge: String,
    /// Extra listeners for HTTP-01 tokens; empty: the console's plain
    /// listeners (`[http] listen`, port 80 in production) answer them.
    pub http_listen: Vec<String>,
    pub renew_before_days: u32,
    /// A PEM root for the directory's own HTTPS (a private or test CA).
    pub directory_ca: Option<PathBuf>,
}

/// Let's Encrypt's production directory (RFC 8555 7.1.1).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            enabled: false,
            directory: LETS_ENCRYPT.into(),
            contact: Vec::new(),
            names: Vec::new(),
            challenge: "http-01".into(),
            http_listen: Vec::new(),
            // Let's Encrypt's certificates last 90 days and it advises
            // renewing with a third of that left.
            renew_before_days: 30,
            directory_ca: None,
        }
    }
}

impl AcmeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, what: String| Err(ConfigError(format!("acme.{key}: {what}")));
        if !self.directory.starts_with("https://") {
            return err(
                "directory",
                format!("`{}` is not an https:// URL", self.directory),
            );
        }
        if !["http-01", "tls-alpn-01"].contains(&self.challenge.as_str()) {
            return err(
                "challenge",
                format!("`{}`: must be \"http-01\" or \"tls-alpn-01\"", self.challenge),
            );
        }
        for addr in &self.http_listen {
            if addr.parse::<SocketAddr>().is_err() {
                return err(
                    "http_listen",
                    format!("`{addr}` is not an address:port (IPv6 as [::]:80)"),
                );
            }
        }
        for name in &self.names {
            if Domain::parse(name).is_err() {
                return err("names", format!("`{name}` is not a host name"));
            }
        }
        for c in &self.contact {
            if !c.starts_with("mailto:") {
                return err("contact", format!("`{c}`: must be a mailto: URL"));
            }
        }
        if !(1..=60).contains(&self.renew_before_days) {
            return err("renew_before_days", "must be 1 to 60".into());
        }
        Ok(())
    }

    /// The names on the certificate.
    pub fn names_or(&self, hostname: &str) -> Vec<String> {
        if self.names.is_empty() {
            vec![hostname.to_string()]
        } else {
            self.names.clone()
        }
    }
}

/// Where the store keeps its data: the metadata in the embedded SQLite
/// database in the data folder (`database` unset) or in PostgreSQL (a
/// `postgres://` URL); message bodies in `blobs` (default: the data
/// folder's `blobs/`) on both.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user[:password]@host:port/dbname`.
    pub database: Option<String>,
    /// The password's file (its first line), instead of in the URL; else
    /// `PGPASSWORD`.
    pub password_file: Option<PathBuf>,
    /// The message bodies' folder.
    pub blobs: Option<PathBuf>,
}

impl StoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, what: &str| Err(ConfigError(format!("store.{key}: {what}")));
        if self.blobs.as_ref().is_some_and(|b| !b.is_absolute()) {
            return err("blobs", "must be an absolute path");
        }
        let Some(url) = &self.database else {
            if self.password_file.is_some() {
                return err("password_file", "set without store.database");
            }
            return Ok(());
        };
        let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        else {
            return err(
                "database",
                "must look like postgres://user[:password]@host:port/dbname",
            );
        };
        // The user and password end at the last '@' before the host.
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let Some((userinfo, host)) = authority.rsplit_once('@') else {
            return err("database", "names no user (postgres://user@host/dbname)");
        };
        if userinfo.is_empty() || host.is_empty() {
            return err(
                "database",
                "names no user or no host (postgres://user@host/dbname)",
            );
        }
        if userinfo.contains(':') && self.password_file.is_some() {
            return err(
                "password_file",
                "the URL has a password already: give it in one place",
            );
        }
        Ok(())
    }
}

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, what: String| Err(ConfigError(format!("{key}: {what}")));
        self.store.validate()?;
        self.acme.validate()?;
        self.filter.policy.validate()?;
        self.filter.sender.validate()?;
        self.filter.clamav.validate()?;
        self.filter.attachments.validate()?;
        self.filter.classifier.validate()?;
        if self.filter.quarantine_days == 0 || self.filter.quarantine_days > 3650 {
            return Err(ConfigError(
                "filter.quarantine_days: must be between 1 and 3650".into(),
            ));
        }
        if self.acme.enabled && self.acme.challenge == "http-01" {
            // The CA asks on port 80 (RFC 8555 8.3): someone must answer.
            if self.acme.http_listen.is_empty() && self.http.listen.is_empty() {
                return err(
                    "acme.http_listen",
                    "http-01 needs a plain-HTTP listener: set http.listen (port 80) or acme.http_listen"
                        .into(),
                );
            }
            if let Some(both) = self
                .acme
                .http_listen
                .iter()
                .find(|a| self.http.listen.contains(a))
            {
                return err(
                    "acme.http_listen",
                    format!("`{both}` is in http.listen too, which answers HTTP-01 already"),
                );
            }
        }
        if let Err(e) = Domain::parse(&self.server.hostname) {
            return err(
                "server.hostname",
                format!("`{}` is not a host name ({e})", self.server.hostname),
            );
        }
        for addr in &self.smtp.listen {
            if addr.parse::<SocketAddr>().is_err() {
                return err(
                    "smtp.listen",
                    format!("`{addr}` is not an address:port (IPv6 as [::1]:25)"),
                );
            }
        }
        for (key, list) in [
            ("submission.listen", &self.submission.listen),
            ("submission.tls_listen", &self.submission.tls_listen),
            ("pop3.listen", &self.pop3.listen),
            ("pop3.tls_listen", &self.pop3.tls_listen),
            ("http.listen", &self.http.listen),
            ("http.tls_listen", &self.http.tls_listen),
        ] {
            for addr in list {
                if addr.parse::<SocketAddr>().is_err() {
                    return err(
                        key,
                        format!("`{addr}` is not an address:port (IPv6 as [::1]:110)"),
                    );
                }
            }
        }
        if let Err(e) = IpNetList::parse(&self.auth.plaintext_networks) {
            return err("auth.plaintext_networks", e);
        }
        if let Some(d) = &self.auth.default_domain {
            if Domain::parse(d).is_err() {
                return err("auth.default_domain", format!("`{d}` is not a domain"));
            }
        }
        if let Err(e) = IpNetList::parse(&self.smtp.trusted_networks) {
            return err("smtp.trusted_networks", e);
        }
        for (name, list) in [
            ("smtp.connection_limit_exempt", &self.smtp.connection_limit_exempt),
            ("pop3.connection_limit_exempt", &self.pop3.connection_limit_exempt),
            ("imap.connection_limit_exempt", &self.imap.connection_limit_exempt),
            ("http.metrics_networks", &self.http.metrics_networks),
        ] {
            if let Err(e) = IpNetList::parse(list) {
                return err(name, e);
            }
        }
        for (key, v) in [
            ("http.max_connections", self.http.max_connections as u64),
            ("http.max_body_bytes", self.http.max_body_bytes as u64),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
            ("http.session_idle_secs", self.http.session_idle_secs),
            ("http.session_max_secs", self.http.session_max_secs),
        ] {
            if v == 0 {
                return err(key, "must be more than 0".into());
            }
        }
        if ![452, 552].contains(&self.smtp.quota_exceeded_code) {
            return err("smtp.quota_exceeded_code", "must be 452 or 552".into());
        }
        if ![550, 554].contains(&self.smtp.relay_denied_code) {
            return err("smtp.relay_denied_code", "must be 550 or 554".into());
        }
        let positive = [
            ("smtp.max_message_size", self.smtp.max_message_size),
            ("smtp.max_recipients", self.smtp.max_recipients as u64),
            ("smtp.max_connections", self.smtp.max_connections as u64),
            (
                "smtp.max_connections_per_client",
                self.smtp.max_connections_per_client as u64,
            ),
            ("smtp.idle_timeout_secs", self.smtp.idle_timeout_secs),
            ("smtp.command_timeout_secs", self.smtp.command_timeout_secs),
            ("smtp.data_timeout_secs", self.smtp.data_timeout_secs),
            ("smtp.session_timeout_secs", self.smtp.session_timeout_secs),
            ("smtp.max_in_memory_bytes", self.smtp.max_in_memory_bytes),
            (
                "submission.max_connections",
                self.submission.max_connections as u64,
            ),
            (
                "submission.max_connections_per_client",
                self.submission.max_connections_per_client as u64,
            ),
            (
                "submission.max_authenticated_connections",
                self.submission.max_authenticated_connections as u64,
            ),
            (
                "submission.max_authenticated_connections_per_client",
                self.submission.max_authenticated_connections_per_client as u64,
            ),
            ("smtp.hard_error_limit", self.smtp.hard_error_limit as u64),
            ("smtp.max_received_headers", self.smtp.max_received_headers as u64),
            ("dns.timeout_secs", self.dns.timeout_secs),
            ("submission.max_recipients", self.submission.max_recipients as u64),
            (
                "submission.max_messages_per_user_per_hour",
                u64::from(self.submission.max_messages_per_user_per_hour),
            ),
            (
                "submission.max_recipients_per_user_per_hour",
                u64::from(self.submission.max_recipients_per_user_per_hour),
            ),
            (
                "submission.max_messages_per_domain_per_hour",
                u64::from(self.submission.max_messages_per_domain_per_hour),
            ),
            (
                "submission.hold_after_caps",
                u64::from(self.submission.hold_after_caps),
            ),
            ("queue.remote_port", u64::from(self.queue.remote_port)),
            (
                "queue.per_destination_concurrency",
                self.queue.per_destination_concurrency as u64,
            ),
            (
                "queue.max_outbound_connections",
                self.queue.max_outbound_connections as u64,
            ),
            ("queue.retry_min_secs", self.queue.retry_min_secs),
            ("queue.lifetime_secs", self.queue.lifetime_secs),
            ("queue.timeout_secs", self.queue.timeout_secs),
            ("queue.held_report_secs", self.queue.held_report_secs),
            ("pop3.max_connections", self.pop3.max_connections as u64),
            (
                "pop3.max_connections_per_client",
                self.pop3.max_connections_per_client as u64,
            ),
            ("pop3.idle_timeout_secs", self.pop3.idle_timeout_secs),
            ("imap.max_connections", self.imap.max_connections as u64),
            (
                "imap.max_connections_per_client",
                self.imap.max_connections_per_client as u64,
            ),
            ("imap.idle_timeout_secs", self.imap.idle_timeout_secs),
            (
                "imap.max_connections_per_user",
                self.imap.max_connections_per_user as u64,
            ),
            (
                "pop3.max_connections_per_user",
                self.pop3.max_connections_per_user as u64,
            ),
            ("imap.max_append", u64::from(self.imap.max_append)),
            ("auth.failure_window_secs", self.auth.failure_window_secs),
            ("auth.block_after", self.auth.block_after as u64),
            ("auth.min_password_length", self.auth.min_password_length as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return err(key, "must be greater than 0".into());
            }
        }
        if self.smtp.max_line_length < 512 {
            // RFC 5321 4.5.3.1.4: command lines of 512 octets must be accepted.
            return err(
                "smtp.max_line_length",
                "must be at least 512 (RFC 5321 4.5.3.1.4)".into(),
            );
        }
        for r in &self.dns.resolvers {
            let ok = r.parse::<SocketAddr>().is_ok() || r.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                return err(
                    "dns.resolvers",
                    format!("`{r}` is not an IP address or address:port"),
                );
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return err("tls", "cert and key are set together".into());
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return err("log.level", "one of error, warn, info, debug, trace".into());
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return err(
                "log.format",
                format!("`{}`: must be \"text\" or \"json\"", self.log.format),
            );
        }
        let out = self.log.output.as_str();
        if !(out == "stderr" || out == "journal" || Path::new(out).is_absolute()) {
            return err(
                "log.output",
                format!("`{out}`: must be \"stderr\", \"journal\" or an absolute file path"),
            );
        }
        Ok(())
    }

    /// Warnings worth printing at start (the server still runs).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Ok(d) = Domain::parse(&self.server.hostname) {
            if !d.is_fully_qualified() {
                w.push(format!(
                    "server.hostname `{}` is not a fully qualified public name: other servers will \
                     distrust our HELO (set it to the name the MX's IP address resolves to)",
                    self.server.hostname
                ));
            }
        }
        w
    }

    /// The data folder: the configured one, or `/var/lib/postroom` for root,
    /// else `$XDG_DATA_HOME/postroom` (`~/.local/share/postroom`).
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.server.data_dir {
            return d.clone();
        }
        default_data_dir()
    }
}

pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/postroom");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("postroom");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/postroom")
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // or truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if Domain::parse(&name).is_ok() {
        name
    } else {
        "localhost".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_valid() {
        let cfg = Config::parse(EXAMPLE).unwrap();
        assert!(cfg.smtp.listen.iter().any(|l| l.ends_with(":25")));
        assert!(cfg.smtp.listen.iter().any(|l| l.starts_with('[')));
        // The packaged service runs as `postroom`, not root: without this
        // its data folder would be that user's $XDG_DATA_HOME.
        assert_eq!(
            cfg.server.data_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/postroom"))
        );
    }

    #[test]
    fn filter_content_tables_parse_and_validate() {
        let cfg = Config::parse(EXAMPLE).unwrap();
        assert!(cfg.filter.html.disarm);
        assert_eq!(cfg.filter.html.subject_tag, "{Cleaned}");
        assert_eq!(cfg.filter.attachments.encrypted_archives, "reject");
        let cfg = Config::parse(
            "[filter.attachments]\nrules = [{ action = \"allow\", name = \"*.js\" }, { action = \"deny\", type = \"application/zip\", reason = \"no\" }]\n",
        )
        .unwrap();
        assert_eq!(cfg.filter.attachments.rules.len(), 2);
        assert_eq!(
            cfg.filter.attachments.rules[1].content_type.as_deref(),
            Some("application/zip")
        );
        for bad in [
            "[filter.attachments]\nencrypted_archives = \"maybe\"\n",
            "[filter.attachments]\nrules = [{ action = \"drop\", name = \"*.js\" }]\n",
            "[filter.attachments]\nrules = [{ action = \"deny\" }]\n",
        ] {
            let err = Config::parse(bad).unwrap_err().to_string();
            assert!(err.contains("filter.attachments"), "{err}");
        }
    }

    #[test]
    fn defaults_are_the_trial() {
        let cfg = Config::parse("").unwrap();
        assert_eq!(cfg.smtp.listen, ["127.0.0.1:10025"]);
        assert_eq!(cfg.smtp.max_message_size, 45_000_000);
        assert!(cfg.smtp.trusted_networks.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::parse("[smtp]\nmax_recipient = 5\n").unwrap_err();
        assert!(e.0.contains("max_recipient"), "{e}");
        let e = Config::parse("[smtp]\nlisten = [\"nowhere\"]\n").unwrap_err();
        assert!(e.0.starts_with("smtp.listen"), "{e}");
        let e = Config::parse("[smtp]\ntrusted_networks = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert!(e.0.starts_with("smtp.trusted_networks"), "{e}");
        let e = Config::parse("[smtp]\nmax_message_size = \"big\"\n").unwrap_err();
        assert!(e.0.contains("max_message_size"), "{e}");
    }

    /// Each protocol has its own connection-limit exemptions: the MX's
    /// (`smtp.`) used to exempt IMAP and POP3 too.
    #[test]
    fn connection_limit_exemptions_are_per_protocol() {
        let cfg = Config::parse("[smtp]\nconnection_limit_exempt = [\"127.0.0.0/8\"]\n").unwrap();
        assert_eq!(cfg.smtp.connection_limit_exempt, ["127.0.0.0/8"]);
        assert!(cfg.imap.connection_limit_exempt.is_empty());
        assert!(cfg.pop3.connection_limit_exempt.is_empty());
        let cfg = Config::parse(
            "[imap]\nconnection_limit_exempt = [\"10.0.0.0/8\"]\n[pop3]\nconnection_limit_exempt = [\"::1\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.imap.connection_limit_exempt, ["10.0.0.0/8"]);
        assert_eq!(cfg.pop3.connection_limit_exempt, ["::1"]);
        assert!(cfg.smtp.connection_limit_exempt.is_empty());
        for proto in ["imap", "pop3"] {
            let e = Config::parse(&format!(
                "[{proto}]\nconnection_limit_exempt = [\"10.0.0.0/99\"]\n"
            ))
            .unwrap_err();
            assert!(
                e.0.starts_with(&format!("{proto}.connection_limit_exempt")),
                "{e}"
            );
        }
        let example = Config::parse(EXAMPLE).unwrap();
        assert!(example.imap.connection_limit_exempt.is_empty());
        assert!(EXAMPLE.matches("connection_limit_exempt = []").count() == 3);
    }

    #[test]
    fn log_format_and_output_are_checked() {
        let cfg = Config::parse("").unwrap();
        assert_eq!(
            (cfg.log.format.as_str(), cfg.log.output.as_str()),
            ("text", "stderr")
        );
        assert!(Config::parse("[log]\nformat = \"json\"\noutput = \"journal\"\n").is_ok());
        assert!(Config::parse("[log]\noutput = \"/var/log/postroom.log\"\n").is_ok());
        let e = Config::parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(e.0.starts_with("log.format"), "{e}");
        let e = Config::parse("[log]\noutput = \"postroom.log\"\n").unwrap_err();
        assert!(e.0.starts_with("log.output"), "{e}");
    }

    #[test]
    fn acme_is_off_by_default_and_checked() {
        let cfg = Config::parse("").unwrap();
        assert!(!cfg.acme.enabled);
        assert_eq!(cfg.acme.names_or("mx.example.com"), ["mx.example.com"]);
        let cfg = Config::parse(
            "[acme]\nenabled = true\nchallenge = \"tls-alpn-01\"\nnames = [\"a.example.com\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.acme.names_or("mx.example.com"), ["a.example.com"]);
        for (bad, key) in [
            ("challenge = \"dns-01\"", "acme.challenge"),
            ("directory = \"http://ca.example/dir\"", "acme.directory"),
            ("contact = [\"hostmaster@example.com\"]", "acme.contact"),
            ("names = [\"not a name\"]", "acme.names"),
            ("http_listen = [\"80\"]", "acme.http_listen"),
            (
                "enabled = true\nhttp_listen = [\"127.0.0.1:10080\"]",
                "acme.http_listen",
            ),
            ("renew_before_days = 0", "acme.renew_before_days"),
        ] {
            let e = Config::parse(&format!("[acme]\n{bad}\n")).unwrap_err();
            assert!(e.0.starts_with(key), "{bad}: {e}");
        }
    }

    #[test]
    fn http_defaults_and_checks() {
        let cfg = Config::parse("").unwrap();
        assert_eq!(cfg.http.listen, ["127.0.0.1:10080"]);
        assert!(cfg.http.tls_listen.is_empty());
        assert_eq!(
            (cfg.http.session_idle_secs, cfg.http.session_max_secs),
            (1800, 43200)
        );
        let example = Config::parse(EXAMPLE).unwrap();
        assert!(example.http.tls_listen.iter().any(|l| l.ends_with(":443")));
        assert!(example.http.listen.iter().any(|l| l.ends_with(":80")));
        let e = Config::parse("[http]\nlisten = [\"nowhere\"]\n").unwrap_err();
        assert!(e.0.starts_with("http.listen"), "{e}");
        let e = Config::parse("[http]\nmax_body_bytes = 0\n").unwrap_err();
        assert!(e.0.starts_with("http.max_body_bytes"), "{e}");
        let e = Config::parse("[http]\nmetrics_networks = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert!(e.0.starts_with("http.metrics_networks"), "{e}");
        assert_eq!(
            Config::parse("").unwrap().http.metrics_networks,
            ["127.0.0.0/8", "::1/128"]
        );
    }

    #[test]
    fn min_password_length_defaults_to_8() {
        assert_eq!(Config::parse("").unwrap().auth.min_password_length, 8);
        let cfg = Config::parse("[auth]\nmin_password_length = 12\n").unwrap();
        assert_eq!(cfg.auth.min_password_length, 12);
        let e = Config::parse("[auth]\nmin_password_length = 0\n").unwrap_err();
        assert!(e.0.starts_with("auth.min_password_length"), "{e}");
    }

    #[test]
    fn the_database_is_embedded_or_a_postgres_url() {
        assert!(Config::parse("").unwrap().store.database.is_none());
        let cfg = Config::parse(
            "[store]\ndatabase = \"postgres://mail@db.example:5432/postroom\"\npassword_file = \"/etc/pw\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.store.database.as_deref(),
            Some("postgres://mail@db.example:5432/postroom")
        );
        for (toml, key) in [
            ("database = \"mysql://a@b/c\"", "store.database"),
            ("database = \"postgres://db.example/p\"", "store.database"),
            ("password_file = \"/etc/pw\"", "store.password_file"),
            ("blobs = \"relative/blobs\"", "store.blobs"),
            (
                "database = \"postgres://a:b@h/p\"\npassword_file = \"/etc/pw\"",
                "store.password_file",
            ),
        ] {
            let e = Config::parse(&format!("[store]\n{toml}\n")).unwrap_err();
            assert!(e.0.starts_with(key), "{toml}: {e}");
        }
    }

    #[test]
    fn internal_hostnames_warn() {
        let cfg = Config::parse("[server]\nhostname = \"server1.local\"\n").unwrap();
        assert_eq!(cfg.warnings().len(), 1);
        let cfg = Config::parse("[server]\nhostname = \"mail.example.com\"\n").unwrap();
        assert!(cfg.warnings().is_empty());
    }

    #[test]
    fn filter_sender_and_clamav_tables() {
        let example = Config::parse(EXAMPLE).unwrap();
        assert!(example.filter.sender.enabled && example.filter.sender.spf_fail_rejects);
        assert!(example.filter.sender.dnsbl_zones.is_empty());
        assert_eq!(example.filter.clamav.socket, None);
        assert_eq!(example.filter.clamav.max_stream_bytes, 25 * 1024 * 1024);
        let cfg = Config::parse(
            "[filter.sender]\ndnsbl_zones = [\"bl.example.net.\"]\n[filter.clamav]\naddress = \"127.0.0.1:3310\"\n",
        )
        .unwrap();
        assert_eq!(cfg.filter.sender.dnsbl_zones, ["bl.example.net."]);
        assert_eq!(cfg.filter.clamav.address.as_deref(), Some("127.0.0.1:3310"));
        for (toml, key) in [
            (
                "[filter.sender]\ndnsbl_zones = [\"not a zone\"]",
                "filter.sender.dnsbl_zones",
            ),
            (
                "[filter.sender]\ndnsbl_zones = [\"com\"]",
                "filter.sender.dnsbl_zones",
            ),
            (
                "[filter.clamav]\naddress = \"localhost\"",
                "filter.clamav.address",
            ),
            ("[filter.clamav]\nsocket = \"clamd.ctl\"", "filter.clamav.socket"),
            (
                "[filter.clamav]\nsocket = \"/run/c\"\naddress = \"127.0.0.1:3310\"",
                "filter.clamav.socket",
            ),
            (
                "[filter.clamav]\nmax_stream_bytes = 0",
                "filter.clamav.max_stream_bytes",
            ),
        ] {
            let e = Config::parse(&format!("{toml}\n")).unwrap_err();
            assert!(e.0.starts_with(key), "{toml}: {e}");
        }
    }
}

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Postroom: inbound MX, mailboxes and administration in one program.
#[derive(Parser, Debug)]
#[command(name = "postroom", version, propagate_version = true)]
pub struct Cli {
    /// The configuration file (default: /etc/postroom/postroom.toml when it
    /// exists, as the package installs it; otherwise none, the embedded trial
    /// defaults).
    #[arg(long, global = true, env = "POSTROOM_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data folder (overrides server.data_dir).
    #[arg(long, global = true, env = "POSTROOM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (makes the data folder and an empty store when
    /// there is none yet).
    Serve,
    /// Make the running server re-read its configuration file, TLS
    /// certificates and log file (as SIGHUP does), and say what took effect:
    /// connection limits and the log level change at once; any other changed
    /// setting is named as needing a restart. Exit code 1 when something
    /// could not be applied or no server runs on the data folder.
    Reload,
    /// Make the data folder (private to this user, 0700) and an empty
    /// store in it, or in the PostgreSQL database of `[store] database`.
    /// On an existing store it says so and changes nothing. Every command
    /// but `serve` and `init` refuses a folder without a store, so a
    /// mistyped --data-dir never makes a new one.
    Init,
    /// Whether the server runs, its version, uptime, listeners, open
    /// connections and certificates (asked over DATA_DIR/control.sock),
    /// and, running or not, the queue by state, held mail by reason and
    /// the data folder's disk use.
    ///
    /// Exit status: 0 running, 3 not running (as `systemctl status`),
    /// 1 on an error (no store, or a running server that did not answer).
    Status {
        /// One JSON object instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print or check configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Hosted domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Mailboxes.
    #[command(subcommand)]
    User(UserCmd),
    /// The provider's administrators: they log in to the web console and
    /// manage every domain (a domain's own admins are mailboxes: `user
    /// admin`).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Customers (tenants): they own domains, within caps on domains,
    /// mailboxes, aliases and storage set here.
    #[command(subcommand)]
    Customer(CustomerCmd),
    /// API tokens (`Authorization: Bearer`), acting as a provider or
    /// domain admin; never valid for IMAP, POP3 or SMTP.
    #[command(subcommand)]
    ApiToken(ApiTokenCmd),
    /// Aliases, mailing lists and catch-alls.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Import from other mail servers.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Messages in a mailbox.
    #[command(subcommand)]
    Mail(MailCmd),
    /// The outbound queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// TLS certificates.
    #[command(subcommand)]
    Tls(TlsCmd),
    /// DKIM signing keys.
    #[command(subcommand)]
    Dkim(DkimCmd),
    /// SRS (forwarding): `srs rotate` makes a new secret; bounces for mail
    /// forwarded under the previous one are still accepted.
    #[command(subcommand)]
    Srs(SrsCmd),
    /// The content filter's statistical classifier: `spam train --spam
    /// DIR --ham DIR`, `spam report [--ham] FILE`, `spam stats`.
    #[command(subcommand)]
    Spam(SpamCmd),
    /// Checks: `check smtp HOST[:PORT]` tests a mail server as we would
    /// reach it (banner, EHLO, STARTTLS, certificate).
    #[command(subcommand)]
    Check(CheckCmd),
    /// The content filter: `filter check FILE|DIR...` scores messages
    /// offline; `filter policy DOMAIN` shows or sets a domain's
    /// thresholds and {Cleaned}.
    #[command(subcommand)]
    Filter(FilterCmd),
    /// Senders whose mail skips the spam score, per domain or mailbox
    /// (never the virus scan, the phishing blocklist or the attachment
    /// rules; not when the sender's SPF, DKIM or DMARC fails).
    #[command(subcommand)]
    Whitelist(WhitelistCmd),
    /// Mail the content filter held for an administrator.
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// Why the filter did what it did with a message: every check, its
    /// symbols' scores and details, and the action per recipient (any
    /// message of the last 30 days).
    Explain {
        /// A queue id (from the `250` or the log) or a Message-ID.
        id: String,
        /// The stored report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Admin changes, newest first: when, who, from where, what.
    Audit {
        /// Only changes to this address or domain (as shown).
        #[arg(long)]
        object: Option<String>,
        /// Only changes in this domain.
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Copy a running (or stopped) embedded installation into DIR, which
    /// must be new or empty: a consistent snapshot of the database, then
    /// every message body it names (deletions wait meanwhile; delivery
    /// goes on), all fsynced, with a manifest of checksums written last.
    /// On PostgreSQL the database is copied by pg_dump, run meanwhile.
    Backup {
        /// The backup folder (made private, 0700).
        dir: PathBuf,
    },
    /// Put a backup made by `postroom backup` into an empty (or missing)
    /// data folder, with the server stopped. Every checksum is verified;
    /// an incomplete or damaged backup, one from a newer Postroom and a
    /// data folder with anything in it are refused. On PostgreSQL the
    /// dump is loaded with pg_restore into an empty database.
    Restore {
        /// The backup folder.
        dir: PathBuf,
    },
    /// Copy this embedded installation (the SQLite database in the data
    /// folder) into PostgreSQL, with the server stopped: every id clients
    /// have seen (UIDVALIDITY, UIDs, MODSEQs, POP3 UIDLs) and the queue
    /// stay as they are. Run it again to resume an interrupted copy. At
    /// the end it checks rows and body references and prints the [store]
    /// lines for the configuration. The bodies stay in the blobs folder.
    Migrate {
        /// postgres://user[:password]@host[:port]/dbname (an empty
        /// database, or one an interrupted run of this command left).
        #[arg(long, value_name = "URL")]
        to: String,
        /// A file whose first line is the database password (instead of
        /// one in the URL, or PGPASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Send a message from standard input, like /usr/sbin/sendmail
    /// (-t, -i, -oi, -f, -F; recipients as arguments). Postroom can be
    /// linked as /usr/sbin/sendmail.
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SpamCmd {
    /// Train on folders of messages: Maildirs (cur/ and new/) or folders
    /// with one message a file, with their full headers.
    Train {
        /// A folder of spam (repeatable).
        #[arg(long, value_name = "DIR")]
        spam: Vec<PathBuf>,
        /// A folder of ham, wanted mail (repeatable).
        #[arg(long, value_name = "DIR")]
        ham: Vec<PathBuf>,
    },
    /// Report spam the filter did not catch (or, with --ham, wanted mail
    /// it took for spam): the message as saved, with its full headers;
    /// `-` reads standard input.
    Report {
        #[arg(long)]
        ham: bool,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// What the classifier was trained on: messages, tokens, whether it
    /// votes yet.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SrsCmd {
    /// Replace the SRS secret, keeping the previous one for verification.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// Connect to HOST (port 25 unless given) and report what happens.
    Smtp { target: String },
}

#[derive(Subcommand, Debug)]
pub enum DkimCmd {
    /// Make an RSA-2048 and an Ed25519 key for DOMAIN (selectors named by
    /// date) and print the DNS TXT records to publish.
    Generate { domain: String },
    /// Print the TXT records of a domain's keys.
    Show { domain: String },
}

#[derive(Subcommand, Debug)]
pub enum TlsCmd {
    /// Make a self-signed certificate and key for HOST (kept if they exist).
    SelfSigned {
        host: String,
        /// Where to write HOST.crt and HOST.key (default: DATA_DIR/tls).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print a production configuration with every setting documented.
    Example,
    /// Validate a configuration file (default: the one given by --config).
    Check { file: Option<PathBuf> },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Host a domain.
    Add {
        /// A public domain name: at least two labels, no trailing dot, not an
        /// IP address, localhost or this server's host name, valid under
        /// IDNA2008, each label in one script.
        domain: String,
        /// Make this domain an alias of a hosted one (user@this reaches
        /// user@that).
        #[arg(long, conflicts_with = "relay_to")]
        alias_of: Option<String>,
        /// Gateway mode: accept this domain's mail (for the recipients
        /// given with `domain recipients`, or verified with --verify) and
        /// relay it to the customer's own server, HOST:PORT (its A/AAAA
        /// records, no MX lookup).
        #[arg(long, value_name = "HOST:PORT")]
        relay_to: Option<String>,
        /// Gateway mode: accept recipients not on the list when the
        /// customer's server accepts them (a callout, cached).
        #[arg(long, requires = "relay_to")]
        verify: bool,
        /// The customer that owns the domain (checked against its
        /// domains cap). An alias domain belongs to its target's customer.
        #[arg(long)]
        customer: Option<String>,
    },
    /// Change a domain's settings.
    Set {
        domain: String,
        /// The subaddress separator (`+` by default; `-` for qmail-style,
        /// empty to turn subaddressing off).
        #[arg(long)]
        subaddress_separator: Option<String>,
        /// Quota for new mailboxes without their own (`none` removes it).
        #[arg(long)]
        default_quota: Option<String>,
        /// Gateway mode on (HOST:PORT) or off (`none`).
        #[arg(long, value_name = "HOST:PORT")]
        relay_to: Option<String>,
        /// Gateway mode: verify unlisted recipients by callout (or not,
        /// with --verify=false).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        verify: Option<bool>,
    },
    /// A gateway domain's accepted recipients: add or remove some, then
    /// print the list.
    Recipients {
        domain: String,
        /// Comma-separated local parts (or addresses) to accept.
        #[arg(long)]
        add: Option<String>,
        /// Comma-separated local parts (or addresses) to remove.
        #[arg(long)]
        remove: Option<String>,
    },
    /// List hosted domains.
    List,
    /// A domain's settings, mailbox and alias counts, alias domains and
    /// queued mail.
    Show { domain: String },
    /// Remove a domain with its aliases, DKIM keys and alias domains.
    /// Refused while it has mailboxes, alias domains or queued mail,
    /// unless --force (which deletes its mailboxes and their mail now).
    Remove {
        domain: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input (at least
    /// auth.min_password_length characters, 8 by default).
    #[arg(long)]
    pub password_stdin: bool,
    /// Store an existing hash ({SHA512-CRYPT}$6$..., $argon2id$..., ...).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_hash: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Add a provider admin; the password is the first line of standard
    /// input.
    Add {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set a provider admin's password (from standard input); their
    /// console sessions end.
    Passwd {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// The provider admins.
    List,
    /// A provider admin's permissions: --manage-domains lets them act as
    /// a domain's admin in the console and API ("manage this domain"),
    /// every use audited; --manage-domains=false takes it away.
    Set {
        address: String,
        #[arg(long, num_args = 0..=1, default_missing_value = "true", required = true)]
        manage_domains: Option<bool>,
    },
    /// Remove a provider admin; their console sessions end.
    Remove { address: String },
}

/// A customer's caps as typed: a number, or `none` for no cap.
#[derive(Args, Debug, Default)]
pub struct CapArgs {
    /// The most domains (alias domains included), or `none`.
    #[arg(long, value_name = "N|none")]
    pub max_domains: Option<String>,
    /// The most mailboxes, or `none`.
    #[arg(long, value_name = "N|none")]
    pub max_mailboxes: Option<String>,
    /// The most aliases (lists and catch-alls included), or `none`.
    #[arg(long, value_name = "N|none")]
    pub max_aliases: Option<String>,
    /// The most the mailboxes' quotas may add up to (e.g. 50G), or
    /// `none`. Under a storage cap every mailbox needs a quota.
    #[arg(long, value_name = "SIZE|none")]
    pub max_storage: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CustomerCmd {
    /// Add a customer (no caps unless given).
    Add {
        name: String,
        #[command(flatten)]
        caps: CapArgs,
    },
    /// Change a customer's caps, give it domains or take them away.
    /// Lowering a cap below what is used takes nothing away; it stops
    /// further additions.
    Set {
        name: String,
        #[command(flatten)]
        caps: CapArgs,
        /// Give a hosted domain (with its alias domains) to the customer.
        #[arg(long, value_name = "DOMAIN")]
        add_domain: Vec<String>,
        /// Take a domain (with its alias domains) from the customer.
        #[arg(long, value_name = "DOMAIN")]
        remove_domain: Vec<String>,
    },
    /// The customers with their usage against their caps.
    List,
    /// A customer's caps, usage and domains.
    Show { name: String },
    /// Remove a customer; refused while it owns domains.
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ApiTokenCmd {
    /// Make a token and print it (once: only its digest is kept).
    Create {
        /// The provider admin or domain admin it acts as.
        #[arg(long = "for")]
        login: String,
        /// Only reads (GET).
        #[arg(long)]
        read_only: bool,
        /// Days until it expires (at most 366).
        #[arg(long, default_value_t = 90)]
        expires_days: i64,
        /// Networks it may be used from (e.g. 192.0.2.0/24); anywhere
        /// when not given.
        #[arg(long, value_delimiter = ',')]
        allow_from: Vec<String>,
    },
    /// The tokens (never their secrets).
    List {
        #[arg(long = "for")]
        login: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a mailbox.
    Add {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Quota: bytes, or with K, M, G or T (powers of 1024).
        #[arg(long)]
        quota: Option<String>,
        /// The user administers the domain (and receives postmaster@ and
        /// abuse@ unless those exist).
        #[arg(long)]
        domain_admin: bool,
    },
    /// Set a new password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Disable: the mailbox keeps its mail (and by default keeps receiving)
    /// but cannot log in.
    Disable { address: String },
    /// Enable a disabled mailbox.
    Enable { address: String },
    /// Make a user a domain admin, or (--off) no longer one.
    Admin {
        address: String,
        #[arg(long)]
        off: bool,
        /// The domain admin's permissions, comma-separated: quarantine,
        /// spam-policy, forward-outside, quotas, gateway (or all, none).
        /// Not given: as they were.
        #[arg(long, conflicts_with = "off", value_name = "LIST")]
        permissions: Option<String>,
    },
    /// Forward a mailbox's mail to other addresses (comma-separated),
    /// keeping a copy unless --no-copy; --off stops forwarding. Outside
    /// addresses get it with an SRS envelope sender.
    Forward {
        address: String,
        targets: Option<String>,
        #[arg(long)]
        no_copy: bool,
        #[arg(long, conflicts_with_all = ["targets", "no_copy"])]
        off: bool,
    },
    /// Save a copy of every message the user submits (Bcc recipients
    /// included) in their Sent folder, or (--off) stop. A client that also
    /// saves it there within 10 minutes gets the existing copy.
    SentCopy {
        address: String,
        #[arg(long)]
        off: bool,
    },
    /// List mailboxes (of one domain, or all).
    List { domain: Option<String> },
    /// A mailbox's usage, quota, last login, forwarding and flags.
    Show { address: String },
    /// Change a mailbox's settings.
    Set {
        address: String,
        /// Bytes, or with K, M, G or T (powers of 1024); `none` for the
        /// domain's default.
        #[arg(long)]
        quota: String,
    },
    /// Remove a mailbox: disabled at once, its mail deleted after 7 days
    /// (by the server, which checks hourly), or at once with --now.
    Remove {
        address: String,
        #[arg(long)]
        now: bool,
    },
    /// Give a mailbox a new address (in its domain or another hosted one);
    /// its folders, UIDVALIDITY and UIDs stay, so mail clients keep their
    /// caches.
    Rename { old: String, new: String },
}

#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Add targets to an alias (created if new). `@domain` is the catch-all.
    Add {
        alias: String,
        /// Comma-separated addresses; a bare name means name@the alias's
        /// domain. A target with a space inside is refused.
        targets: String,
    },
    /// Remove an alias.
    Remove { alias: String },
    /// List aliases (of one domain, or all).
    List { domain: Option<String> },
    /// Add or remove members of an alias or list.
    #[command(subcommand)]
    Members(MembersCmd),
}

#[derive(Subcommand, Debug)]
pub enum MembersCmd {
    /// Add members (addresses, or names in the alias's domain) to an
    /// existing alias.
    Add {
        alias: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members; an alias left with none is removed.
    Remove {
        alias: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImportCmd {
    /// A Postfix virtual alias map (`address targets` per line).
    Virtual {
        file: PathBuf,
        /// Domain for bare names (Postfix's myorigin).
        #[arg(long)]
        origin: Option<String>,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MailCmd {
    /// One line per message: uid, date, from, subject, size.
    List {
        address: String,
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
    /// Print one message as stored (with its Received: trace).
    Show {
        address: String,
        uid: i64,
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
    /// Delete stored message bodies that no message or queue entry refers
    /// to (left behind by a crash; the server also does this 10 minutes
    /// after it starts and daily). Only bodies stored more than --min-age
    /// minutes ago are considered, so mail being delivered is never touched
    /// (--min-age 0 only while no server or other command is running).
    Sweep {
        /// Minutes since a body was stored before it is considered.
        #[arg(long, default_value_t = 10)]
        min_age: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum FilterCmd {
    /// Score messages offline (no DNS, no clamd), one line per message:
    /// file, score, action, symbols. A folder is read whole (a Maildir's
    /// cur/ and new/ too).
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// One JSON object a line: file, score, action, symbols
        /// ({name, score, detail}).
        #[arg(long)]
        json: bool,
    },
    /// Show a domain's filter settings, or change them; unset ones are the
    /// server's `[filter.policy]`.
    Policy {
        domain: String,
        /// Score from which mail goes to the Junk folder.
        #[arg(long)]
        junk_at: Option<f64>,
        /// Score from which mail is quarantined.
        #[arg(long)]
        quarantine_at: Option<f64>,
        /// Score from which mail is refused (or discarded).
        #[arg(long)]
        high_at: Option<f64>,
        /// Above high_at: reject (550 at SMTP time) or discard.
        #[arg(long, value_parser = ["reject", "discard"])]
        high_action: Option<String>,
        /// {Cleaned} in the Subject of disarmed mail: on or off.
        #[arg(long, value_parser = ["on", "off"])]
        cleaned: Option<String>,
        /// Back to the server's settings first.
        #[arg(long)]
        reset: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WhitelistCmd {
    /// Whitelist SENDER (an address, or a domain for all its addresses;
    /// matched against the envelope sender and the From: addresses) for
    /// SCOPE (a hosted domain, or a mailbox's address).
    Add {
        scope: String,
        sender: String,
    },
    Remove {
        scope: String,
        sender: String,
    },
    /// Every entry, or a domain's (its mailboxes' too) or a mailbox's.
    List {
        scope: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCmd {
    /// Quarantined messages: queue id, held since, sender, recipients, why.
    List {
        /// Only those for this domain's recipients.
        #[arg(long)]
        domain: Option<String>,
        /// One JSON object per message, a line each.
        #[arg(long)]
        json: bool,
    },
    /// The message as it was held, and the filter's report.
    Show { id: String },
    /// Deliver it, unchanged, to the mailboxes it was for.
    Release { id: String },
    /// Delete it (no bounce).
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// The waiting outbound items: queue id, state, sender, recipient,
    /// reason in words and, for held items, the reason's code
    /// (unknown-member, no-postmaster, ...).
    List {
        /// Only the held items (as `--state held`).
        #[arg(long)]
        held: bool,
        /// Only items in this state: queued, deferred or held.
        #[arg(long, value_parser = ["queued", "deferred", "held"])]
        state: Option<String>,
        /// Only items whose sender contains this (case-insensitive).
        #[arg(long)]
        sender: Option<String>,
        /// Only items whose recipient contains this (case-insensitive).
        #[arg(long)]
        recipient: Option<String>,
        /// Only items for recipients at this domain.
        #[arg(long)]
        domain: Option<String>,
        /// One JSON object per item, a line each, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Try every waiting item (queued or deferred, not held) now, as
    /// Postfix's `postqueue -f`; the running server picks them up.
    Flush,
    /// Every item of one message (or one item by its number).
    Show { id: String },
    /// Try again now.
    Retry { id: String },
    /// Keep from delivery until released.
    Hold { id: String },
    /// Let held items go.
    Release { id: String },
    /// Drop items without a bounce.
    Delete { id: String },
}

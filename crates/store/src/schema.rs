//! Schema versions and forward-only migrations. `PRAGMA user_version` holds
//! the version; a binary refuses a data folder newer than itself, and backs
//! the metadata up before it migrates an older one.

use std::path::Path;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Version 1: the foundation. Every later change appends a migration.
const V1: &str = r#"
CREATE TABLE domains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,            -- canonical: lower-case IDNA ASCII
    display TEXT NOT NULL,
    alias_of INTEGER REFERENCES domains(id),
    subaddress_separator TEXT NOT NULL DEFAULT '+',
    default_quota INTEGER,                -- bytes; NULL = unlimited
    created INTEGER NOT NULL
);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- immutable: addresses may change
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    local TEXT NOT NULL,                  -- canonical local part
    display TEXT NOT NULL,                -- local part as entered
    password_hash TEXT,
    quota INTEGER,                        -- bytes; NULL = the domain default
    enabled INTEGER NOT NULL DEFAULT 1,
    domain_admin INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    UNIQUE (domain_id, local)
);
CREATE TABLE aliases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    local TEXT NOT NULL,                  -- canonical; '' is the catch-all
    display TEXT NOT NULL,
    targets TEXT NOT NULL,                -- comma-separated addresses
    created INTEGER NOT NULL,
    UNIQUE (domain_id, local)
);
CREATE TABLE folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- also the UIDVALIDITY: never reused
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    special_use TEXT,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    subscribed INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    folder_id INTEGER NOT NULL REFERENCES folders(id),
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags INTEGER NOT NULL DEFAULT 0,     -- bit set of the system flags
    keywords TEXT NOT NULL DEFAULT '',    -- space-separated
    internal_date INTEGER NOT NULL,       -- unix seconds
    size INTEGER NOT NULL,                -- exact: prefix + blob
    pop3_uidl TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    prefix BLOB NOT NULL,                 -- Return-Path, Delivered-To, Received
    queue_id TEXT,
    UNIQUE (folder_id, uid)
);
CREATE INDEX messages_blob ON messages(blob_id);
CREATE TABLE expunged (                   -- tombstones for QRESYNC
    folder_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
);
CREATE TABLE outbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    prefix BLOB NOT NULL,
    sender TEXT NOT NULL,                 -- '' is the null sender
    recipient TEXT NOT NULL,
    state TEXT NOT NULL,                  -- queued | held | deferred | sent | bounced
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX outbound_state ON outbound(state, next_attempt);
"#;

/// Version 2 (IMAP): the highest UID some session has seen as \Recent
/// (RFC 3501 2.3.2), and keywords on queued copies are not needed.
const V2: &str = r#"
ALTER TABLE folders ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 3 (outbound): DKIM signing keys per domain.
const V3: &str = r#"
CREATE TABLE dkim_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,              -- rsa-sha256 | ed25519-sha256
    private_key BLOB NOT NULL,            -- PKCS#8 DER
    public_key TEXT NOT NULL,             -- base64, as published in DNS
    created INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    UNIQUE (domain_id, selector)
);
"#;

/// Version 4 (forwarding): server-wide settings kept in the store, such
/// as the SRS secrets.
const V4: &str = r#"
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Version 5 (sending): mailbox forwarding and the server-side Sent copy
/// per account; gateway domains whose mail is relayed to the customer's own
/// server, with their accepted recipients and a callout cache; the delay
/// warning already sent for a queue item; the Sent copies made at
/// submission, so a client's own APPEND of the same message is not stored
/// twice. Rows the v4 queue parked as expired are made due, so they bounce.
const V5: &str = r#"
ALTER TABLE accounts ADD COLUMN forward_to TEXT NOT NULL DEFAULT '';   -- comma-separated
ALTER TABLE accounts ADD COLUMN forward_keep INTEGER NOT NULL DEFAULT 1;
ALTER TABLE accounts ADD COLUMN sent_copy INTEGER NOT NULL DEFAULT 0;
ALTER TABLE domains ADD COLUMN relay_to TEXT;                  -- host:port; NULL = not a gateway domain
ALTER TABLE domains ADD COLUMN relay_verify INTEGER NOT NULL DEFAULT 0;  -- callout to relay_to
CREATE TABLE relay_recipients (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    local TEXT NOT NULL,                  -- canonical local part
    PRIMARY KEY (domain_id, local)
);
CREATE TABLE callout_cache (
    address TEXT PRIMARY KEY,             -- canonical recipient
    accepted INTEGER NOT NULL,
    reply TEXT NOT NULL,
    checked INTEGER NOT NULL              -- unix seconds
);
ALTER TABLE outbound ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;
-- Version 4 put rows past their lifetime off to a far future instead of
-- bouncing them; due now, they bounce (4.4.7) on the next pass.
UPDATE outbound SET next_attempt = 0
    WHERE state = 'deferred' AND reason LIKE 'expired:%' AND next_attempt > 4000000000;
CREATE TABLE sent_copies (
    folder_id INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    uid INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX sent_copies_by_id ON sent_copies(folder_id, message_id);
"#;

/// Version 6 (storage): the bytes each account stores, kept as a running
/// total. Summing the account's messages at every RCPT made each delivery
/// pay for every message already stored: ingest into one mailbox fell from
/// 417 to 80 messages/s as it grew from 0 to 40,000 messages. Triggers keep
/// the total right for every path that inserts or deletes a message
/// (delivery, APPEND, COPY, MOVE, expunge, the CLI); the migration fills it
/// in once.
const V6: &str = r#"
ALTER TABLE accounts ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET used_bytes = COALESCE((
    SELECT SUM(m.size) FROM messages m JOIN folders f ON m.folder_id = f.id
    WHERE f.account_id = accounts.id), 0);
CREATE TRIGGER messages_usage_insert AFTER INSERT ON messages BEGIN
    UPDATE accounts SET used_bytes = used_bytes + NEW.size
        WHERE id = (SELECT account_id FROM folders WHERE id = NEW.folder_id);
END;
CREATE TRIGGER messages_usage_delete AFTER DELETE ON messages BEGIN
    UPDATE accounts SET used_bytes = used_bytes - OLD.size
        WHERE id = (SELECT account_id FROM folders WHERE id = OLD.folder_id);
END;
CREATE TRIGGER messages_usage_update AFTER UPDATE OF size, folder_id ON messages BEGIN
    UPDATE accounts SET used_bytes = used_bytes - OLD.size
        WHERE id = (SELECT account_id FROM folders WHERE id = OLD.folder_id);
    UPDATE accounts SET used_bytes = used_bytes + NEW.size
        WHERE id = (SELECT account_id FROM folders WHERE id = NEW.folder_id);
END;
"#;

/// Version 7 (admin service): a directory version, bumped by triggers in
/// the transaction of every change that can alter where mail goes
/// (aliases, forwarding, mailbox addresses, domains), so the cycle check
/// of `alias add` and `user forward` can read many rows, then write only
/// if nothing moved meanwhile (`add_alias_targets_if`, `set_forwarding_if`);
/// each mailbox's last login and pending removal (`user remove` deletes the
/// mail after a grace period); and the audit trail of admin changes.
const V7: &str = r#"
CREATE TABLE directory_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);
CREATE TRIGGER aliases_version_insert AFTER INSERT ON aliases BEGIN
    UPDATE directory_version SET version = version + 1;
END;
CREATE TRIGGER aliases_version_update AFTER UPDATE ON aliases BEGIN
    UPDATE directory_version SET version = version + 1;
END;
CREATE TRIGGER aliases_version_delete AFTER DELETE ON aliases BEGIN
    UPDATE directory_version SET version = version + 1;
END;
CREATE TRIGGER accounts_version_insert AFTER INSERT ON accounts BEGIN
    UPDATE directory_version SET version = version + 1;
END;
-- Not on used_bytes or last_login: deliveries and logins change those
-- all the time and never change where mail goes.
CREATE TRIGGER accounts_version_update AFTER UPDATE OF domain_id, local, forward_to, forward_keep, enabled
    ON accounts BEGIN
    UPDATE directory_version SET version = version + 1;
END;
CREATE TRIGGER accounts_version_delete AFTER DELETE ON accounts BEGIN
    UPDATE directory_version SET version = version + 1;
END;
CREATE TRIGGER domains_version_insert AFTER INSERT ON domains BEGIN
    UPDATE directory_version SET version = version + 1;
END;
CREATE TRIGGER domains_version_update AFTER UPDATE OF name, alias_of, subaddress_separator, relay_to
    ON domains BEGIN
    UPDATE directory_version SET version = version + 1;
END;
CREATE TRIGGER domains_version_delete AFTER DELETE ON domains BEGIN
    UPDATE directory_version SET version = version + 1;
END;
ALTER TABLE accounts ADD COLUMN last_login INTEGER;     -- unix seconds; NULL = never
ALTER TABLE accounts ADD COLUMN delete_after INTEGER;   -- unix seconds; NULL = not removed
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,                  -- unix seconds
    actor TEXT NOT NULL,                  -- cli:<unix user>, api:<login>
    origin TEXT NOT NULL,                 -- cli, or the client's IP address
    operation TEXT NOT NULL,              -- e.g. user.add, alias.members.remove
    object TEXT NOT NULL,                 -- the address or domain changed
    domain TEXT NOT NULL DEFAULT '',      -- canonical domain of the object
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_object ON audit(object, id);
CREATE INDEX audit_domain ON audit(domain, id);
"#;

/// Version 8 (held deliveries): a held queue row says why it is held, as
/// a code (`held::HoldReason`; the words stay in `reason`), and, for a
/// local copy (the filter's quarantine), the mailbox and folder role it
/// was for, so `queue release` puts it into that mailbox instead of
/// sending it out by MX, where its Delivered-To would read as a loop.
/// Rows held before are `other`; with no mailbox recorded, their release
/// resolves the recipient again.
const V8: &str = r#"
ALTER TABLE outbound ADD COLUMN hold_reason TEXT NOT NULL DEFAULT '';  -- held::HoldReason code; '' when not held
ALTER TABLE outbound ADD COLUMN local_account INTEGER;                 -- held local copy: the mailbox
ALTER TABLE outbound ADD COLUMN local_folder TEXT NOT NULL DEFAULT ''; -- and its roles::FolderTarget
UPDATE outbound SET hold_reason = 'other' WHERE state = 'held';
"#;

/// Version 9 (the web console): the provider's administrators, who log
/// in to the console only, and API tokens. A domain's admins are
/// mailboxes with the admin flag (`accounts.domain_admin`) and need no
/// row here.
const V9: &str = r#"
CREATE TABLE provider_admins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE,         -- canonical address
    display TEXT NOT NULL,                -- as typed
    password_hash TEXT NOT NULL,          -- argon2, as mailbox passwords
    created INTEGER NOT NULL              -- unix seconds
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL UNIQUE,          -- SHA-256 of the token (hex); the token is shown once
    login TEXT NOT NULL,                  -- canonical address of a provider or domain admin
    read_only INTEGER NOT NULL DEFAULT 0,
    allow_from TEXT NOT NULL DEFAULT '',  -- networks, comma-separated; '' = anywhere
    expires INTEGER NOT NULL,             -- unix seconds
    created INTEGER NOT NULL
);
CREATE INDEX api_tokens_login ON api_tokens(login);
"#;

/// Version 10 (cost must not grow with the mailbox, issue #9): what changed
/// in a folder since a MODSEQ (`folder_changes`, which brings the IMAP
/// sessions' shared snapshot up to date after every APPEND, delivery or
/// flag change made elsewhere) is found by an index instead of by reading
/// every message of the folder: in a 100,000-message INBOX that read cost
/// every APPEND about as much as a SELECT of the whole list.
const V10: &str = r#"
CREATE INDEX IF NOT EXISTS messages_modseq ON messages(folder_id, modseq);
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(folder_id, modseq);
"#;

/// Version 11 (the content filter, issue #10): each domain's filter
/// settings (JSON: thresholds, `{Cleaned}`), the whitelists of domains
/// and mailboxes, and each message's filter report for `postroom
/// explain` (kept 30 days). Domains and mailboxes are named, not
/// referenced by id, so removing one is never refused for these rows.
const V11: &str = r#"
CREATE TABLE filter_domains (
    domain TEXT PRIMARY KEY,              -- canonical domain name
    settings TEXT NOT NULL                -- JSON
);
CREATE TABLE filter_whitelist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,                  -- a canonical domain, or a mailbox's canonical address
    sender TEXT NOT NULL,                 -- lower case: an address or a domain
    created INTEGER NOT NULL,             -- unix seconds
    UNIQUE (scope, sender)
);
CREATE INDEX filter_whitelist_sender ON filter_whitelist(sender);
CREATE TABLE filter_results (
    queue_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL DEFAULT '',  -- without <>
    at INTEGER NOT NULL,                  -- unix seconds
    report TEXT NOT NULL                  -- JSON
);
CREATE INDEX filter_results_message_id ON filter_results(message_id);
CREATE INDEX filter_results_at ON filter_results(at);
"#;

/// Version 12 (the content filter's classifier, issue #10): per token (a
/// 64-bit hash made by the filter's tokenizer), the spam and ham messages
/// it was seen in; and the messages trained, with a generation that every
/// training moves so other nodes know to reload.
const V12: &str = r#"
CREATE TABLE classifier_tokens (
    token INTEGER PRIMARY KEY,            -- the tokenizer's 64-bit hash
    spam INTEGER NOT NULL DEFAULT 0,      -- spam messages trained that had it
    ham INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE classifier_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    spam INTEGER NOT NULL DEFAULT 0,      -- spam messages trained
    ham INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0 -- moved by every training batch
);
INSERT INTO classifier_totals (id, spam, ham, generation) VALUES (1, 0, 0, 0);
"#;

/// Version 13 (issue #11, roles and limits): customers (tenants) with the
/// caps the provider sets, and which customer owns which domain. A domain
/// has at most one owner; a removed domain leaves its customer with it.
/// And the permission flags the provider gives a domain admin.
const V13: &str = r#"
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,            -- lower case
    max_domains INTEGER,                  -- NULL = no cap
    max_mailboxes INTEGER,
    max_aliases INTEGER,
    max_storage INTEGER,                  -- bytes: the sum of the mailboxes' quotas
    created INTEGER NOT NULL              -- unix seconds
);
CREATE TABLE customer_domains (
    domain_id INTEGER PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
    customer_id INTEGER NOT NULL REFERENCES customers(id)
);
CREATE INDEX customer_domains_customer ON customer_domains(customer_id);
CREATE TABLE domain_admin_permissions (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    permissions INTEGER NOT NULL          -- bit set: postroom_admin::Permissions
);
CREATE TABLE provider_admin_permissions (
    address TEXT PRIMARY KEY REFERENCES provider_admins(address) ON DELETE CASCADE,
    permissions INTEGER NOT NULL          -- bit set: postroom_admin::ProviderPermissions
);
"#;

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Brings the database to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection, db_path: &Path) -> Result<()> {
    migrate_to(conn, db_path, SCHEMA_VERSION)
}

/// Brings the database to `target` (tests make older data folders with it).
pub fn migrate_to(conn: &mut Connection, db_path: &Path, target: i64) -> Result<()> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found >= target {
        return Ok(());
    }
    if found > 0 {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let backup = db_path.with_extension(format!("sqlite.backup-v{found}-{secs}"));
        conn.execute("VACUUM INTO ?1", [backup.to_string_lossy()])?;
        tracing::info!(backup = %backup.display(), from = found, to = target, "migrating the store");
    }
    // One step at a time, each under the write lock with the version read
    // inside it: the server and the CLI may start migrating at once, and
    // only one may apply a step.
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now >= target {
            tx.commit()?;
            return Ok(());
        }
        let Some(sql) = MIGRATIONS.get(now as usize) else {
            return Err(StoreError::TooNew {
                found: now,
                supported: SCHEMA_VERSION,
            });
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", now + 1)?;
        tx.commit()?;
    }
}

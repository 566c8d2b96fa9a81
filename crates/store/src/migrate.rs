//! Moving an embedded installation to PostgreSQL (`postroom migrate --to
//! postgres://...`): every row of the SQLite database is copied with its
//! ids, so UIDVALIDITY (a folder's id), UIDs, MODSEQs, POP3 UIDLs, queue
//! ids and tombstones stay what clients have already seen. The bodies stay
//! where they are (`blobs/`, shared by both back ends).
//!
//! The server must be stopped while it runs. The copy is resumable: each
//! table is copied in id order, [`CHUNK`] rows a transaction, and a run
//! starts each table after the last row the previous run committed (rows
//! already there are skipped). At the end the row counts of every table
//! and the set of bodies the rows refer to are compared.
//!
//! This half reads SQLite; `pg::migrate` writes PostgreSQL.

use rusqlite::types::ValueRef;

use crate::pg::Postgres;
use crate::{Db, Result, StoreError};

/// Rows per PostgreSQL transaction: large enough that commits are not the
/// cost (one WAL flush per 1,000 rows), small enough that an interrupted
/// run loses little.
pub const CHUNK: usize = 1000;

/// One column value, in neither database's types.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A table to copy and its columns (the same names on both back ends).
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    /// The table has an `id` identity column, which orders and resumes
    /// the copy. Tables without one are small or keyed, and are copied
    /// again whole (rows already there skipped).
    pub has_id: bool,
}

/// In the order the foreign keys need (a domain alias names an older
/// domain, so domains by id are in order too).
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "domains",
        columns: &[
            "id",
            "name",
            "display",
            "alias_of",
            "subaddress_separator",
            "default_quota",
            "created",
            "relay_to",
            "relay_verify",
        ],
        has_id: true,
    },
    Table {
        name: "accounts",
        // used_bytes is not copied: the triggers count the messages as
        // they arrive, so the total is right however often a run resumes.
        columns: &[
            "id",
            "domain_id",
            "local",
            "display",
            "password_hash",
            "quota",
            "enabled",
            "domain_admin",
            "created",
            "forward_to",
            "forward_keep",
            "sent_copy",
            "last_login",
            "delete_after",
        ],
        has_id: true,
    },
    Table {
        name: "aliases",
        columns: &["id", "domain_id", "local", "display", "targets", "created"],
        has_id: true,
    },
    Table {
        name: "folders",
        columns: &[
            "id",
            "account_id",
            "name",
            "special_use",
            "uidvalidity",
            "uidnext",
            "highestmodseq",
            "subscribed",
            "recent_uid",
        ],
        has_id: true,
    },
    Table {
        name: "messages",
        columns: &[
            "id",
            "folder_id",
            "uid",
            "modseq",
            "flags",
            "keywords",
            "internal_date",
            "size",
            "pop3_uidl",
            "blob_id",
            "prefix",
            "queue_id",
        ],
        has_id: true,
    },
    Table {
        name: "expunged",
        columns: &["folder_id", "uid", "modseq"],
        has_id: false,
    },
    Table {
        name: "outbound",
        columns: &[
            "id",
            "queue_id",
            "blob_id",
            "prefix",
            "sender",
            "recipient",
            "state",
            "reason",
            "attempts",
            "next_attempt",
            "created",
            "warned",
            "hold_reason",
            "local_account",
            "local_folder",
        ],
        has_id: true,
    },
    Table {
        name: "dkim_keys",
        columns: &[
            "id",
            "domain_id",
            "selector",
            "algorithm",
            "private_key",
            "public_key",
            "created",
            "active",
        ],
        has_id: true,
    },
    Table {
        name: "settings",
        columns: &["key", "value"],
        has_id: false,
    },
    Table {
        name: "relay_recipients",
        columns: &["domain_id", "local"],
        has_id: false,
    },
    Table {
        name: "callout_cache",
        columns: &["address", "accepted", "reply", "checked"],
        has_id: false,
    },
    Table {
        name: "sent_copies",
        columns: &["folder_id", "message_id", "uid", "created"],
        has_id: false,
    },
    Table {
        name: "audit",
        columns: &[
            "id",
            "at",
            "actor",
            "origin",
            "operation",
            "object",
            "domain",
            "detail",
        ],
        has_id: true,
    },
    Table {
        name: "provider_admins",
        columns: &["id", "address", "display", "password_hash", "created"],
        has_id: true,
    },
    Table {
        name: "api_tokens",
        columns: &[
            "id",
            "digest",
            "login",
            "read_only",
            "allow_from",
            "expires",
            "created",
        ],
        has_id: true,
    },
    Table {
        name: "filter_domains",
        columns: &["domain", "settings"],
        has_id: false,
    },
    Table {
        name: "filter_whitelist",
        columns: &["id", "scope", "sender", "created"],
        has_id: true,
    },
    Table {
        name: "filter_results",
        columns: &["queue_id", "message_id", "at", "report"],
        has_id: false,
    },
    Table {
        name: "classifier_tokens",
        columns: &["token", "spam", "ham"],
        has_id: false,
    },
    Table {
        name: "classifier_totals",
        columns: &["id", "spam", "ham", "generation"],
        has_id: false,
    },
    Table {
        name: "customers",
        columns: &[
            "id",
            "name",
            "max_domains",
            "max_mailboxes",
            "max_aliases",
            "max_storage",
            "created",
        ],
        has_id: true,
    },
    Table {
        name: "customer_domains",
        columns: &["domain_id", "customer_id"],
        has_id: false,
    },
    Table {
        name: "domain_admin_permissions",
        columns: &["account_id", "permissions"],
        has_id: false,
    },
    Table {
        name: "provider_admin_permissions",
        columns: &["address", "permissions"],
        has_id: false,
    },
];

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// (table, rows in both databases at the end), in copy order.
    pub tables: Vec<(String, u64)>,
    /// Rows copied by this run (fewer than the total when it resumed).
    pub copied: u64,
    /// Distinct bodies the rows refer to.
    pub blobs: u64,
    /// Accounts whose running total in SQLite was not the sum of their
    /// messages (PostgreSQL's is: it was counted as they were copied).
    pub usage_corrected: Vec<i64>,
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        // No column holds a REAL; kept exactly as SQLite would print it.
        ValueRef::Real(f) => Cell::Text(f.to_string()),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Cell::Text(s.to_string()),
            Err(_) => Cell::Bytes(t.to_vec()),
        },
        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
    }
}

/// Up to [`CHUNK`] rows of `table` after `after` (its rowid, which is the
/// id where there is one), with their rowids.
fn read_chunk(db: &Db, table: &Table, after: i64) -> Result<Vec<(i64, Vec<Cell>)>> {
    db.read(|c| {
        let sql = format!(
            "SELECT rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            table.columns.join(", "),
            table.name
        );
        let mut st = c.prepare(&sql)?;
        let mut rows = st.query(rusqlite::params![after, CHUNK as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let rowid: i64 = r.get(0)?;
            let cells = (1..=table.columns.len())
                .map(|i| r.get_ref(i).map(cell))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.push((rowid, cells));
        }
        Ok(out)
    })
}

fn count(db: &Db, table: &str) -> Result<u64> {
    db.read(|c| {
        Ok(c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })? as u64)
    })
}

/// Every body id the rows refer to, sorted (the CLI checks each is in
/// the blob folder).
pub fn blob_ids(db: &Db) -> Result<Vec<String>> {
    db.read(|c| {
        let mut st =
            c.prepare("SELECT blob_id FROM messages UNION SELECT blob_id FROM outbound ORDER BY 1")?;
        let ids = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    })
}

/// Before resuming: the partial copy must be of this data folder as it is
/// now. Rows already there are skipped, never compared, so a copy of
/// another installation (or of this one before the server ran again)
/// would otherwise be merged with this one, or keep stale flags. The last
/// row copied of each table is compared with the same row here: another
/// installation's differ in dates, names or body ids, and a message
/// changed since differs in its MODSEQ. Nothing is written before this
/// check.
async fn check_partial_copy(db: &Db, pg: &Postgres) -> Result<()> {
    for table in TABLES.iter().filter(|t| t.has_id) {
        let last = pg.migration_last_id(table.name).await?;
        if last == 0 {
            continue;
        }
        let here = read_chunk(db, table, last - 1)?.into_iter().next();
        let same = match here {
            Some((rowid, cells)) if rowid == last => pg.migration_row_matches(table, last, &cells).await?,
            _ => false,
        };
        if !same {
            return Err(StoreError::Invalid(format!(
                "the PostgreSQL database holds a partial copy that does not match this data folder \
                 ({} row {last} differs: another installation's, or this one changed since): \
                 migrate into an empty database",
                table.name
            )));
        }
    }
    Ok(())
}

/// Copies everything in `db` to `pg` (see the module comment); `progress`
/// hears (table, rows of it copied so far, its rows in SQLite) after each
/// chunk. The target must be empty or hold an earlier run's partial copy
/// of this same source (checked: [`check_partial_copy`]).
pub async fn copy_sqlite_to(
    db: &Db,
    pg: &Postgres,
    mut progress: impl FnMut(&str, u64, u64),
) -> Result<MigrationReport> {
    let mut report = MigrationReport::default();
    if pg.migration_begin().await? {
        check_partial_copy(db, pg).await?;
    }
    for table in TABLES {
        let total = count(db, table.name)?;
        // A table with ids resumes after the last one committed; one
        // without is copied again whole (its keys skip what is there;
        // sent_copies, which has none, is replaced in one transaction).
        let mut after = if table.has_id {
            pg.migration_last_id(table.name).await?
        } else {
            // The lowest rowid: classifier_tokens' rowid is the token's
            // hash, negative for half of them.
            i64::MIN
        };
        let mut done = if after > 0 {
            pg.migration_count(table.name).await?
        } else {
            0
        };
        // classifier_totals' one row exists on both sides from the start:
        // SQLite's replaces PostgreSQL's zeros.
        let mut replace = table.name == "sent_copies" || table.name == "classifier_totals";
        loop {
            let chunk = read_chunk(db, table, after)?;
            let Some(&(last, _)) = chunk.last() else {
                break;
            };
            let rows: Vec<Vec<Cell>> = chunk.into_iter().map(|(_, cells)| cells).collect();
            let n = rows.len() as u64;
            report.copied += pg.migration_insert(table, &rows, replace).await?;
            replace = false;
            after = last;
            done += n;
            progress(table.name, done.min(total), total);
        }
        if table.has_id {
            pg.migration_advance_ids(table.name).await?;
        }
    }
    // Verify: the same rows, the same bodies.
    for table in TABLES {
        let (here, there) = (count(db, table.name)?, pg.migration_count(table.name).await?);
        if here != there {
            return Err(StoreError::Invalid(format!(
                "migration check failed: {} has {here} rows in SQLite, {there} in PostgreSQL",
                table.name
            )));
        }
        report.tables.push((table.name.to_string(), here));
    }
    let (here, there) = (blob_ids(db)?, pg.migration_blob_ids().await?);
    if here != there {
        let missing = here.iter().filter(|b| there.binary_search(b).is_err()).count();
        return Err(StoreError::Invalid(format!(
            "migration check failed: the rows refer to {} bodies in SQLite, {} in PostgreSQL ({missing} missing)",
            here.len(),
            there.len()
        )));
    }
    report.blobs = here.len() as u64;
    let sqlite_usage: Vec<(i64, i64)> = db.read(|c| {
        let mut st = c.prepare("SELECT id, used_bytes FROM accounts ORDER BY id")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    })?;
    let pg_usage = pg.migration_usage().await?;
    report.usage_corrected = sqlite_usage
        .iter()
        .filter(|(id, used)| pg_usage.iter().any(|(i, u)| i == id && u != used))
        .map(|(id, _)| *id)
        .collect();
    pg.migration_end().await?;
    Ok(report)
}

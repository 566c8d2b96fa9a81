//! The PostgreSQL half of `crate::migrate`: writing the rows read from
//! SQLite, with their ids, and the counts the check compares.

use tokio_postgres::types::{ToSql, Type};

use super::Postgres;
use crate::migrate::{Cell, Table};
use crate::{Result, StoreError};

/// The settings key that marks a migration in progress (and lets a later
/// run resume into a database that is no longer empty).
const MARK: &str = "migration:from-sqlite";

/// A value converted to its column's type.
#[derive(PartialEq)]
enum Param {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Param {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Int(v) => v,
            Param::Bool(v) => v,
            Param::Text(v) => v,
            Param::Bytes(v) => v,
        }
    }
}

fn convert(table: &str, column: &str, ty: &Type, cell: &Cell) -> Result<Param> {
    let bad = || {
        StoreError::Invalid(format!(
            "migration: {table}.{column} holds {cell:?}, which does not fit a {ty} column"
        ))
    };
    Ok(match (ty, cell) {
        (&Type::INT8, Cell::Null) => Param::Int(None),
        (&Type::INT8, Cell::Int(i)) => Param::Int(Some(*i)),
        (&Type::BOOL, Cell::Null) => Param::Bool(None),
        (&Type::BOOL, Cell::Int(i)) => Param::Bool(Some(*i != 0)),
        (&Type::TEXT, Cell::Null) => Param::Text(None),
        (&Type::TEXT, Cell::Text(s)) => Param::Text(Some(s.clone())),
        (&Type::TEXT, Cell::Int(i)) => Param::Text(Some(i.to_string())),
        (&Type::BYTEA, Cell::Null) => Param::Bytes(None),
        (&Type::BYTEA, Cell::Bytes(b)) => Param::Bytes(Some(b.clone())),
        (&Type::BYTEA, Cell::Text(s)) => Param::Bytes(Some(s.as_bytes().to_vec())),
        _ => return Err(bad()),
    })
}

/// Only names from `crate::migrate::TABLES` reach the SQL below.
fn known(table: &str) -> Result<&str> {
    crate::migrate::TABLES
        .iter()
        .find(|t| t.name == table)
        .map(|t| t.name)
        .ok_or_else(|| StoreError::Invalid(format!("migration: unknown table {table}")))
}

impl Postgres {
    /// Refuses a target that holds data of its own; marks it as being
    /// migrated into. True when the mark was there already: an earlier
    /// run's partial copy, to resume.
    pub(crate) async fn migration_begin(&self) -> Result<bool> {
        let c = self.client().await?;
        let marked = c
            .query_opt("SELECT 1 FROM settings WHERE key = $1", &[&MARK])
            .await?
            .is_some();
        if !marked {
            let used: bool = c
                .query_one(
                    "SELECT EXISTS(SELECT 1 FROM domains) OR EXISTS(SELECT 1 FROM outbound)
                         OR EXISTS(SELECT 1 FROM settings)",
                    &[],
                )
                .await?
                .try_get(0)?;
            if used {
                return Err(StoreError::Invalid(
                    "the PostgreSQL database already holds data: migrate into an empty one".into(),
                ));
            }
            c.execute(
                "INSERT INTO settings (key, value) VALUES ($1, 'in progress')",
                &[&MARK],
            )
            .await?;
        }
        Ok(marked)
    }

    /// Whether the row of `table` with this id holds `cells` (the same
    /// values as [`Postgres::migration_insert`] would write); false when
    /// there is no such row.
    pub(crate) async fn migration_row_matches(&self, table: &Table, id: i64, cells: &[Cell]) -> Result<bool> {
        let t = known(table.name)?;
        let c = self.client().await?;
        let st = c
            .prepare(&format!(
                "SELECT {} FROM {t} WHERE id = $1",
                table.columns.join(", ")
            ))
            .await?;
        let Some(row) = c.query_opt(&st, &[&id]).await? else {
            return Ok(false);
        };
        for (i, (col, cell)) in st.columns().iter().zip(cells).enumerate() {
            let ty = col.type_();
            let want = convert(t, col.name(), ty, cell)?;
            let have = match *ty {
                Type::INT8 => Param::Int(row.try_get(i)?),
                Type::BOOL => Param::Bool(row.try_get(i)?),
                Type::TEXT => Param::Text(row.try_get(i)?),
                Type::BYTEA => Param::Bytes(row.try_get(i)?),
                _ => return Ok(false),
            };
            if have != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(crate) async fn migration_end(&self) -> Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM settings WHERE key = $1", &[&MARK]).await?;
        self.committed(&[]);
        Ok(())
    }

    /// The highest id copied so far (0: none).
    pub(crate) async fn migration_last_id(&self, table: &str) -> Result<i64> {
        let t = known(table)?;
        let c = self.client().await?;
        let row = c
            .query_one(&format!("SELECT COALESCE(MAX(id), 0) FROM {t}"), &[])
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Rows in a table (the migration's own mark not counted).
    pub(crate) async fn migration_count(&self, table: &str) -> Result<u64> {
        let t = known(table)?;
        let c = self.client().await?;
        let row = if t == "settings" {
            c.query_one("SELECT COUNT(*) FROM settings WHERE key <> $1", &[&MARK])
                .await?
        } else {
            c.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[]).await?
        };
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    /// Inserts rows in one transaction, skipping any already there;
    /// `replace` empties the table first (a table without a key).
    /// Returns how many were inserted.
    pub(crate) async fn migration_insert(
        &self,
        table: &Table,
        rows: &[Vec<Cell>],
        replace: bool,
    ) -> Result<u64> {
        let t = known(table.name)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if replace {
            tx.execute(&format!("DELETE FROM {t}"), &[]).await?;
        }
        let marks: Vec<String> = (1..=table.columns.len()).map(|i| format!("${i}")).collect();
        let st = tx
            .prepare(&format!(
                "INSERT INTO {t} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
                table.columns.join(", "),
                marks.join(", ")
            ))
            .await?;
        let types = st.params().to_vec();
        let mut inserted = 0;
        for row in rows {
            let params = row
                .iter()
                .zip(table.columns)
                .zip(&types)
                .map(|((cell, col), ty)| convert(t, col, ty, cell))
                .collect::<Result<Vec<Param>>>()?;
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
            inserted += tx.execute(&st, &refs).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Moves a table's id sequence past the copied ids, so new rows (and
    /// new folders' UIDVALIDITYs) never repeat one.
    pub(crate) async fn migration_advance_ids(&self, table: &str) -> Result<()> {
        let t = known(table)?;
        let c = self.client().await?;
        c.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{t}', 'id'), GREATEST((SELECT MAX(id) FROM {t}), 1),
                               (SELECT MAX(id) FROM {t}) IS NOT NULL)"
            ),
            &[],
        )
        .await?;
        Ok(())
    }

    /// Every body id the rows refer to, sorted as SQLite sorts them.
    pub(crate) async fn migration_blob_ids(&self) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT b FROM (SELECT blob_id FROM messages UNION SELECT blob_id FROM outbound) AS u(b) ORDER BY b COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// (account, used_bytes) of every account.
    pub(crate) async fn migration_usage(&self) -> Result<Vec<(i64, i64)>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT id, used_bytes FROM accounts ORDER BY id", &[])
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}

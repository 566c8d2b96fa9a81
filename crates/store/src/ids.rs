//! Typed identities. Every row id, UID and MODSEQ the store hands out has
//! its own type, so `copy_messages(from, uids, to)` cannot be called with a
//! folder where a UID belongs, or with its folders swapped for an account.
//! Back ends convert them to and from their column types; nothing else
//! looks inside except the protocols' wire formats.

use std::fmt;

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

row_id!(
    /// A hosted (or alias, or gateway) domain.
    DomainId
);
row_id!(
    /// A mailbox account.
    AccountId
);
row_id!(
    /// One folder of one account; its UIDs and MODSEQs are its own.
    FolderId
);
row_id!(
    /// An alias or list.
    AliasId
);
row_id!(
    /// One remote recipient of one queued message.
    OutboundId
);

row_id!(
    /// The directory's version: a counter every change to where mail goes
    /// (aliases, forwarding, mailbox addresses, domains) moves, in the same
    /// transaction. A check that reads many rows writes only if it has not
    /// moved since ([`crate::AdminMeta::add_alias_targets_if`]).
    DirectoryVersion
);

/// A message's IMAP UID within its folder (RFC 9051 2.3.1.1: a 32-bit
/// unsigned number, never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(pub u32);

impl Uid {
    pub fn get(self) -> u32 {
        self.0
    }

    /// The column value (both back ends store 64-bit integers).
    pub fn as_i64(self) -> i64 {
        i64::from(self.0)
    }

    /// A stored value; `None` when it is outside the UID range (only a
    /// damaged database can hold one).
    pub fn from_i64(v: i64) -> Option<Uid> {
        u32::try_from(v).ok().filter(|&v| v != 0).map(Uid)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// POP3 UIDLs are UIDVALIDITY and UID in hexadecimal.
impl fmt::UpperHex for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::UpperHex::fmt(&self.0, f)
    }
}

/// A modification sequence (RFC 7162 3.1.1: a positive 63-bit number,
/// which both back ends store as a signed 64-bit integer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ModSeq(pub i64);

impl ModSeq {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ModSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// SQLite columns: these are all INTEGER.
mod sqlite_columns {
    use super::*;
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    macro_rules! sql_i64 {
        ($($name:ident),*) => {$(
            impl ToSql for $name {
                fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                    Ok(ToSqlOutput::from(self.0))
                }
            }
            impl FromSql for $name {
                fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                    i64::column_result(v).map($name)
                }
            }
        )*};
    }
    sql_i64!(
        DomainId,
        AccountId,
        FolderId,
        AliasId,
        OutboundId,
        ModSeq,
        DirectoryVersion
    );

    impl ToSql for Uid {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(i64::from(self.0)))
        }
    }
    impl FromSql for Uid {
        fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
            let n = i64::column_result(v)?;
            Uid::from_i64(n).ok_or(FromSqlError::OutOfRange(n))
        }
    }
}

//! The database schema, its version (`PRAGMA user_version`) and the forward migrations run on
//! open.

use rusqlite::{Connection, TransactionBehavior};

use es_core::StoreError;

use crate::error::{Context, sqlite_error};

/// `MIGRATIONS[n]` takes a database from schema version `n` to `n + 1`. Append new versions at
/// the end; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: events, snapshots and projection checkpoints (dropped by 1 → 2).
    //
    // `position` is the store-wide order. With AUTOINCREMENT a rowid is never reused, even
    // after the newest rows are gone, so a reader's checkpoint can never point past a position
    // that a later event takes. Every event id is a 16-byte blob (the UUID's bytes).
    //
    // No index beyond the two UNIQUE ones: a read of all events walks the table in position
    // order (the rowid), filters in the same pass and stops at its page size, so an index on
    // stream or event type would only speed up very selective filters and would slow every
    // append. The (stream_type, stream_id, stream_version) index serves stream reads and the
    // version check.
    "CREATE TABLE events (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        stream_type TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        stream_version INTEGER NOT NULL,
        event_id BLOB NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        payload TEXT NOT NULL,
        metadata TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        UNIQUE (stream_type, stream_id, stream_version)
    ) STRICT;
    CREATE TABLE snapshots (
        stream_type TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        snapshot_version INTEGER NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (stream_type, stream_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE projection_checkpoints (
        name TEXT NOT NULL PRIMARY KEY,
        position INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 1 → 2: the store's identity, which every checkpoint it hands out carries (so that a
    // checkpoint of another database is refused), replaces `projection_checkpoints`, made
    // before projections were designed: a checkpoint is the store's own value now, kept by
    // whoever reads, in the read model's own tables.
    "CREATE TABLE store_meta (
        key TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO store_meta (key, value) VALUES ('store_id', lower(
        hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||
        substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))));
    DROP TABLE projection_checkpoints;",
];

/// The schema version this code writes and understands.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database's schema up to [`SCHEMA_VERSION`], all in one transaction.
///
/// A database already at the current version is only read (no write lock is taken), so opening
/// a store does not wait for another process's append.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    if check(user_version(connection)?)? == SCHEMA_VERSION {
        return Ok(());
    }
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot start the schema migration")?;
    // Read again under the write lock: another process may have migrated in between.
    let found = check(user_version(&transaction)?)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        transaction
            .execute_batch(migration)
            .map_err(|error| sqlite_error(format!("schema migration from version {from} failed"), error))?;
    }
    transaction.pragma_update(None, "user_version", SCHEMA_VERSION).context("cannot record the schema version")?;
    transaction.commit().context("cannot commit the schema migration")
}

/// The store's id, written by the migration to version 2.
pub(crate) fn store_id(connection: &Connection) -> Result<uuid::Uuid, StoreError> {
    let text: String = connection
        .query_row("SELECT value FROM store_meta WHERE key = 'store_id'", [], |row| row.get(0))
        .context("cannot read the store's id")?;
    uuid::Uuid::parse_str(&text).map_err(|_| {
        StoreError::corrupt(es_core::store::Corruption::new(es_core::store::CorruptProblem::Unreadable {
            field: "store_meta.store_id".into(),
            reason: format!("holds `{}`, not a UUID", es_core::store::bounded(&text)),
        }))
    })
}

fn user_version(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context("cannot read the schema version (PRAGMA user_version)")
}

/// The schema version as a number this code can migrate from.
fn check(found: i64) -> Result<u32, StoreError> {
    let found = u32::try_from(found).map_err(|_| {
        StoreError::corrupt(es_core::store::Corruption::new(es_core::store::CorruptProblem::Unreadable {
            field: "PRAGMA user_version".into(),
            reason: format!("holds {found}, a schema version no version of es writes"),
        }))
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    Ok(found)
}

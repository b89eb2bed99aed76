//! The store's schema: its name (a validated identifier), the SQL texts built once from it,
//! the version kept in the schema's own `meta` table, and the forward migrations run on
//! connect.

use tokio_postgres::Client;
use tokio_postgres::types::Type;
use uuid::Uuid;

use es_core::StoreError;
use es_core::store::{BackendErrorKind, CorruptProblem, Corruption, bounded};

use crate::error::{Context, backend, pg_error};

/// `MIGRATIONS[n]` takes a schema from version `n` to `n + 1`; `{schema}` stands for the
/// quoted schema name. Append new versions at the end; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: events, the position frontier, snapshots.
    //
    // `position` is handed out by `head` (see the crate docs, "Reading all events"), never by
    // a sequence: positions follow commit order and have no holes. `payload`, `metadata` and
    // snapshot `state` are `text`, not `jsonb`: jsonb rejects `\u0000` inside strings and
    // reorders keys, so it would refuse JSON that serde writes and hand back other text than
    // was appended. The store checks that payloads are JSON before writing (`kit::check_batch`).
    // `schema_version` is `bigint` because a `u32` does not fit in `integer`.
    "CREATE TABLE {schema}.events (
        position bigint PRIMARY KEY,
        stream_type text NOT NULL,
        stream_id text NOT NULL,
        stream_version bigint NOT NULL,
        event_id uuid NOT NULL UNIQUE,
        event_type text NOT NULL,
        schema_version bigint NOT NULL,
        payload text NOT NULL,
        metadata text NOT NULL,
        recorded_at timestamptz NOT NULL,
        UNIQUE (stream_type, stream_id, stream_version)
    );
    CREATE TABLE {schema}.head (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        last_position bigint NOT NULL
    );
    INSERT INTO {schema}.head (singleton, last_position) VALUES (true, 0);
    CREATE TABLE {schema}.snapshots (
        stream_type text NOT NULL,
        stream_id text NOT NULL,
        version bigint NOT NULL,
        snapshot_version bigint NOT NULL,
        state text NOT NULL,
        PRIMARY KEY (stream_type, stream_id)
    );",
    // 1 → 2: the append statement as a function, so that the server plans it once per
    // connection (PL/pgSQL caches the plan) instead of once per append, with nothing named on
    // the client's side (PgBouncer in transaction mode needs no prepared statements for it).
    //
    // It reads each stream's version (one probe of the stream index), keeps the appends whose
    // expectation holds, takes the frontier's row lock (held to commit) with the next
    // positions for their rows in array order, and inserts them, all in the one statement
    // that calls it: no round trip happens under the lock. The version read is the
    // statement's snapshot, taken before the lock; a writer that took the same stream
    // versions since then is caught by the unique index on (stream, version), which rolls the
    // whole statement back. Nothing is ever inserted at a version whose predecessor is not
    // stored.
    //
    // $1 the time; per append: $2 stream type, $3 stream id, $4 the expected version (-1 any,
    // 0 no stream, n exactly n); per row: $5 its append (from 1), then one array per column.
    // One row per append: the version read, whether the append was kept, the position before
    // the first row inserted and how many rows were.
    "CREATE FUNCTION {schema}.append(timestamptz, text[], text[], bigint[], bigint[], uuid[], text[], bigint[],
                                     text[], text[])
    RETURNS TABLE (o_actual bigint, o_kept boolean, o_base bigint, o_inserted bigint)
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY
        WITH jobs AS MATERIALIZED (
            SELECT j.job, j.stream_type, j.stream_id, j.expected,
                   (SELECT COALESCE(MAX(v.stream_version), 0) FROM {schema}.events v
                    WHERE v.stream_type = j.stream_type AND v.stream_id = j.stream_id) AS actual
            FROM UNNEST($2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS j(stream_type, stream_id,
                                                                                   expected, job)
         ),
         kept AS MATERIALIZED (
            SELECT k.stream_type, k.stream_id,
                   k.actual + row_number() OVER (PARTITION BY r.job ORDER BY r.ord) AS stream_version,
                   row_number() OVER (ORDER BY r.ord) AS rank,
                   r.event_id, r.event_type, r.schema_version, r.payload, r.metadata
            FROM UNNEST($5::bigint[], $6::uuid[], $7::text[], $8::bigint[], $9::text[], $10::text[])
                     WITH ORDINALITY AS r(job, event_id, event_type, schema_version, payload, metadata, ord)
            JOIN jobs k ON k.job = r.job AND (k.expected < 0 OR k.actual = k.expected)
         ),
         frontier AS (
            UPDATE {schema}.head SET last_position = last_position + (SELECT count(*) FROM kept)
            WHERE EXISTS (SELECT 1 FROM kept)
            RETURNING last_position - (SELECT count(*) FROM kept) AS base
         ),
         inserted AS (
            INSERT INTO {schema}.events (position, stream_type, stream_id, stream_version, event_id, event_type,
                                    schema_version, payload, metadata, recorded_at)
            SELECT frontier.base + k.rank, k.stream_type, k.stream_id, k.stream_version, k.event_id,
                   k.event_type, k.schema_version, k.payload, k.metadata, $1
            FROM frontier, kept k
            RETURNING 1
         )
         SELECT j.actual, (j.expected < 0 OR j.actual = j.expected),
                (SELECT base FROM frontier), (SELECT count(*) FROM inserted)
         FROM jobs j ORDER BY j.job;
    END
    $fn$;",
    // 2 → 3: the same function (same arguments, same rows back, so a process still running
    // the code of version 2 keeps working), written as plain statements. Version 2's one
    // statement of CTEs and window functions was planned again at every call: PL/pgSQL keeps
    // a custom plan when the generic one's estimates (ten rows per UNNEST) look dearer, and
    // planning it cost more than running it. These statements are cheap to plan and keep
    // their generic plans; an append to one stream, the common case, needs no window function.
    //
    // Each statement of a VOLATILE function takes a new snapshot (READ COMMITTED), so the
    // version reads still happen before the frontier's lock, as in version 2; the unique index
    // on (stream, version) still catches a writer that took the same versions since.
    "CREATE OR REPLACE FUNCTION {schema}.append(timestamptz, text[], text[], bigint[], bigint[], uuid[], text[],
                                                bigint[], text[], text[])
    RETURNS TABLE (o_actual bigint, o_kept boolean, o_base bigint, o_inserted bigint)
    LANGUAGE plpgsql VOLATILE AS $fn$
    DECLARE
        jobs integer := cardinality($2);
        actual bigint[];
        kept boolean[];
        wanted bigint;
        base bigint;
        inserted bigint := 0;
    BEGIN
        IF jobs = 1 THEN
            -- ORDER BY ... LIMIT 1, not MAX(): on a table whose statistics are stale the
            -- planner may aggregate over the whole stream instead of reading one index entry.
            o_actual := COALESCE((SELECT v.stream_version FROM {schema}.events v
                                  WHERE v.stream_type = $2[1] AND v.stream_id = $3[1]
                                  ORDER BY v.stream_version DESC LIMIT 1), 0);
            o_kept := $4[1] < 0 OR o_actual = $4[1];
            o_inserted := 0;
            IF o_kept AND cardinality($6) > 0 THEN
                UPDATE {schema}.head SET last_position = last_position + cardinality($6)
                RETURNING last_position - cardinality($6) INTO o_base;
                IF o_base IS NOT NULL THEN
                    INSERT INTO {schema}.events (position, stream_type, stream_id, stream_version, event_id,
                                                 event_type, schema_version, payload, metadata, recorded_at)
                    SELECT o_base + r.ord, $2[1], $3[1], o_actual + r.ord, r.event_id, r.event_type,
                           r.schema_version, r.payload, r.metadata, $1
                    FROM UNNEST($6, $7, $8, $9, $10) WITH ORDINALITY
                             AS r(event_id, event_type, schema_version, payload, metadata, ord);
                    GET DIAGNOSTICS o_inserted = ROW_COUNT;
                END IF;
            END IF;
            RETURN NEXT;
            RETURN;
        END IF;
        SELECT array_agg(a.actual ORDER BY j.job), array_agg(j.expected < 0 OR a.actual = j.expected ORDER BY j.job)
        INTO actual, kept
        FROM UNNEST($2, $3, $4) WITH ORDINALITY AS j(stream_type, stream_id, expected, job),
             LATERAL (SELECT COALESCE((SELECT v.stream_version FROM {schema}.events v
                                       WHERE v.stream_type = j.stream_type AND v.stream_id = j.stream_id
                                       ORDER BY v.stream_version DESC LIMIT 1), 0) AS actual) a;
        SELECT count(*) INTO wanted FROM UNNEST($5) AS r(job) WHERE kept[r.job];
        IF wanted > 0 THEN
            UPDATE {schema}.head SET last_position = last_position + wanted
            RETURNING last_position - wanted INTO base;
            IF base IS NOT NULL THEN
                INSERT INTO {schema}.events (position, stream_type, stream_id, stream_version, event_id,
                                             event_type, schema_version, payload, metadata, recorded_at)
                SELECT base + row_number() OVER (ORDER BY r.ord), $2[r.job], $3[r.job],
                       actual[r.job] + row_number() OVER (PARTITION BY r.job ORDER BY r.ord),
                       r.event_id, r.event_type, r.schema_version, r.payload, r.metadata, $1
                FROM UNNEST($5, $6, $7, $8, $9, $10) WITH ORDINALITY
                         AS r(job, event_id, event_type, schema_version, payload, metadata, ord)
                WHERE kept[r.job];
                GET DIAGNOSTICS inserted = ROW_COUNT;
            END IF;
        END IF;
        RETURN QUERY SELECT actual[j], kept[j], base, inserted FROM generate_series(1, jobs) AS j;
    END
    $fn$;",
];

/// The schema version this code writes and understands.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// A schema name that is safe to put in SQL: lower-case ASCII letters, digits and `_`, not
/// starting with a digit nor with `pg_`, at most 63 bytes (PostgreSQL's limit).
pub(crate) fn check_identifier(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 && !name.starts_with("pg_") {
        return Ok(());
    }
    Err(backend(
        BackendErrorKind::Other,
        format!(
            "`{}` cannot name the store's schema: use 1 to 63 lower-case ASCII letters, digits and `_`, \
             not starting with a digit or `pg_`",
            bounded(name)
        ),
    ))
}

/// The columns `rows::event` reads, in its order.
pub(crate) const EVENT_COLUMNS: &str = "position, stream_type, stream_id, stream_version, event_id, event_type, \
                                        schema_version, payload, metadata, recorded_at";

/// Every statement the store runs, built once for its schema.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) stream_version: String,
    pub(crate) find_event: String,
    pub(crate) find_events: String,
    pub(crate) insert: String,
    pub(crate) read_stream: String,
    pub(crate) read_all: String,
    pub(crate) head: String,
    pub(crate) save_snapshot: String,
    pub(crate) load_snapshot: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = quote(schema);
        let cols = EVENT_COLUMNS;
        Self {
            stream_version: format!(
                "SELECT COALESCE((SELECT stream_version FROM {s}.events WHERE stream_type = $1 AND stream_id = $2 \
                 ORDER BY stream_version DESC LIMIT 1), 0)"
            ),
            find_event: format!("SELECT {cols} FROM {s}.events WHERE event_id = $1"),
            find_events: format!("SELECT {cols} FROM {s}.events WHERE event_id = ANY($1)"),
            // The append statement is the schema's function (written by 1 → 2, rewritten by 2 → 3): one row
            // per append.
            insert: format!("SELECT * FROM {s}.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            read_stream: format!(
                "SELECT {cols} FROM {s}.events WHERE stream_type = $1 AND stream_id = $2 AND stream_version >= $3 \
                 ORDER BY stream_version LIMIT $4"
            ),
            // The frontier and the page in one statement, so in one snapshot: every position up
            // to `last_position` is committed and visible in it (crate docs, "Reading all events").
            // A NULL list admits everything; lists are bound as arrays, never spliced in.
            //
            // The last column says whether the event's predecessor in its stream is stored before
            // it (one probe of the stream index per row), so that a version gap is `Corrupt` on
            // this read path too, even where the filter or a page boundary hides the predecessor.
            read_all: format!(
                "SELECT h.last_position, e.* FROM {s}.head h LEFT JOIN LATERAL (
                    SELECT {cols},
                           (ev.stream_version <= 1 OR EXISTS (
                               SELECT 1 FROM {s}.events p
                               WHERE p.stream_type = ev.stream_type AND p.stream_id = ev.stream_id
                                 AND p.stream_version = ev.stream_version - 1 AND p.position < ev.position
                           )) AS has_predecessor
                    FROM {s}.events ev
                    WHERE position > $1 AND position <= h.last_position
                      AND ($3::text[] IS NULL OR stream_type = ANY($3))
                      AND ($4::text[] IS NULL OR event_type = ANY($4))
                    ORDER BY position LIMIT $2
                 ) e ON true"
            ),
            head: format!("SELECT last_position FROM {s}.head"),
            save_snapshot: format!(
                "INSERT INTO {s}.snapshots (stream_type, stream_id, version, snapshot_version, state) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream_type, stream_id) DO UPDATE SET version = excluded.version, \
                 snapshot_version = excluded.snapshot_version, state = excluded.state \
                 WHERE excluded.version >= {s}.snapshots.version"
            ),
            load_snapshot: format!(
                "SELECT version, snapshot_version, state FROM {s}.snapshots WHERE stream_type = $1 AND stream_id = $2"
            ),
        }
    }
}

/// A checked identifier, quoted.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

/// A 64-bit key for the migration's advisory lock, the same in every process for one schema
/// (FNV-1a of the name, in a namespace of its own).
pub(crate) fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "es-postgres migration ".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Brings `schema` up to [`SCHEMA_VERSION`] in one transaction under an advisory lock (so two
/// processes connecting at once migrate once), creating it if needed, and returns the store's
/// id.
///
/// A schema already at the current version is only read: no lock, no DDL, so connecting does
/// not queue behind another process's migration check and works on a read-only hot standby.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<Uuid, StoreError> {
    let s = quote(schema);
    if let Some(id) = current(client, schema, &s).await? {
        return Ok(id);
    }
    let transaction = client.transaction().await.context("cannot start the schema migration")?;
    transaction
        .query_typed("SELECT pg_advisory_xact_lock($1)", &[(&lock_key(schema), Type::INT8)])
        .await
        .context("cannot take the schema migration lock")?;
    // Only create what is missing: `CREATE SCHEMA IF NOT EXISTS` needs the right to create
    // schemas even when the schema exists.
    let exists = !transaction
        .query_typed("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[(&schema, Type::TEXT)])
        .await
        .context("cannot look up the store's schema")?
        .is_empty();
    if !exists {
        transaction
            .batch_execute(&format!("CREATE SCHEMA {s}"))
            .await
            .map_err(|error| pg_error(format!("cannot create the schema `{schema}`"), error))?;
    }
    transaction
        .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL)"))
        .await
        .context("cannot create the store's meta table")?;
    let found = check_version(read_meta(&transaction, &s, "schema_version").await?)?;
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        transaction
            .batch_execute(&migration.replace("{schema}", &s))
            .await
            .map_err(|error| pg_error(format!("schema migration from version {from} failed"), error))?;
    }
    let version = SCHEMA_VERSION.to_string();
    let new_id = Uuid::new_v4().to_string();
    let upsert = format!(
        "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    );
    transaction.query_typed(&upsert, &[(&version, Type::TEXT)]).await.context("cannot record the schema version")?;
    let insert_id = format!("INSERT INTO {s}.meta (key, value) VALUES ('store_id', $1) ON CONFLICT (key) DO NOTHING");
    transaction.query_typed(&insert_id, &[(&new_id, Type::TEXT)]).await.context("cannot record the store's id")?;
    let id = parse_id(&read_meta(&transaction, &s, "store_id").await?.unwrap_or_default())?;
    transaction.commit().await.context("cannot commit the schema migration")?;
    Ok(id)
}

/// The store's id when `schema` exists at the current version; `None` when it must be created
/// or migrated.
async fn current(client: &Client, schema: &str, s: &str) -> Result<Option<Uuid>, StoreError> {
    let table = format!("{s}.meta");
    let exists = client
        .query_typed("SELECT to_regclass($1) IS NOT NULL", &[(&table, Type::TEXT)])
        .await
        .context("cannot look up the store's meta table")?;
    if !exists.first().is_some_and(|row| row.try_get::<_, bool>(0).unwrap_or(false)) {
        return Ok(None);
    }
    let rows = client
        .query_typed(&format!("SELECT key, value FROM {s}.meta WHERE key IN ('schema_version', 'store_id')"), &[])
        .await
        .map_err(|error| pg_error(format!("cannot read the meta table of schema `{schema}`"), error))?;
    let value = |key: &str| {
        rows.iter()
            .find(|row| row.try_get::<_, String>(0).is_ok_and(|found| found == key))
            .and_then(|row| row.try_get::<_, String>(1).ok())
    };
    if check_version(value("schema_version"))? != SCHEMA_VERSION {
        return Ok(None);
    }
    match value("store_id") {
        Some(id) => parse_id(&id).map(Some),
        None => Ok(None),
    }
}

/// The schema version as stored (0 when not recorded yet), refused when newer than this code.
fn check_version(found: Option<String>) -> Result<u32, StoreError> {
    let found = match found {
        None => 0,
        Some(text) => text.parse::<u32>().map_err(|_| {
            StoreError::corrupt(Corruption::new(CorruptProblem::Unreadable {
                field: "meta.schema_version".into(),
                reason: format!("holds `{}`, a schema version no version of es writes", bounded(&text)),
            }))
        })?,
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    Ok(found)
}

fn parse_id(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| {
        StoreError::corrupt(Corruption::new(CorruptProblem::Unreadable {
            field: "meta.store_id".into(),
            reason: format!("holds `{}`, not a UUID", bounded(text)),
        }))
    })
}

async fn read_meta(
    transaction: &tokio_postgres::Transaction<'_>,
    schema: &str,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let rows = transaction
        .query_typed(&format!("SELECT value FROM {schema}.meta WHERE key = $1"), &[(&key, Type::TEXT)])
        .await
        .context("cannot read the store's meta table")?;
    match rows.first() {
        None => Ok(None),
        Some(row) => row.try_get::<_, String>(0).map(Some).map_err(|error| {
            StoreError::corrupt(Corruption::new(CorruptProblem::Unreadable {
                field: "meta.value".into(),
                reason: format!("cannot be read: {}", bounded(&error.to_string())),
            }))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_name_a_schema() {
        for good in ["es", "es_test_1", "_x", &"a".repeat(63)] {
            assert!(check_identifier(good).is_ok(), "{good}");
        }
        for bad in ["", "1es", "Es", "es-test", "es\"; DROP", "pg_catalog", "é", &"a".repeat(64)] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_row_reader_knows_how_many_event_columns_there_are() {
        assert_eq!(EVENT_COLUMNS.split(',').count(), crate::rows::EVENT_COLUMN_COUNT);
    }

    #[test]
    fn the_lock_key_depends_on_the_schema_only() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("a"), lock_key("b"));
    }
}

//! Schemas that older versions of es wrote, migrated forward on connect: the tables and the
//! append function are created here exactly as those versions created them (the frozen DDL in
//! `tests/fixtures/`), events are written the way those versions wrote them, and the current
//! code must read every one back unchanged, keep appending after them, migrate once however
//! many processes connect at once, and refuse a schema newer than it knows.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use es_core::{
    Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent, Position, RawEvent, ReadAllFilter, Snapshot,
    StoreError, StoredEvent, StreamId, Version,
};
use es_postgres::{PostgresOptions, PostgresStore};
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// Migration 0 → 1 and 1 → 2 as released (`{schema}` is the quoted schema name).
const MIGRATIONS: [&str; 2] = [include_str!("fixtures/migration_1.sql"), include_str!("fixtures/migration_2.sql")];

/// The append statement of schema version 1 (git 1371919, `Sql::insert`): the frontier's
/// update and the insert in one statement, the stream's version read before by the caller.
/// $1 events, $2/$3 the stream, $4 the version before the batch, $5 the time, then one array
/// per column.
const V1_INSERT: &str = "WITH frontier AS (
        UPDATE {schema}.head SET last_position = last_position + $1 RETURNING last_position - $1 AS base
     )
     INSERT INTO {schema}.events (position, stream_type, stream_id, stream_version, event_id, event_type,
                                  schema_version, payload, metadata, recorded_at)
     SELECT frontier.base + e.ord, $2, $3, $4 + e.ord, e.event_id, e.event_type, e.schema_version,
            e.payload, e.metadata, $5
     FROM frontier,
          UNNEST($6::uuid[], $7::text[], $8::bigint[], $9::text[], $10::text[])
              WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ord)
     RETURNING position, stream_version";

/// The append statement of schema version 2 (its function, one append per call here).
const V2_INSERT: &str = "SELECT * FROM {schema}.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// A schema as es left it at `version`: the meta table the migration creates first, the
/// released migrations up to `version`, the version and a store id.
async fn old_schema(client: &Client, schema: &str, version: usize, store_id: Uuid) {
    let s = format!("\"{schema}\"");
    let mut ddl = format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL);
         INSERT INTO {s}.meta (key, value) VALUES ('schema_version', '{version}'), ('store_id', '{store_id}');"
    );
    for migration in &MIGRATIONS[..version] {
        ddl.push_str(&migration.replace("{schema}", &s));
    }
    client
        .batch_execute(&ddl)
        .await
        .unwrap_or_else(|error| panic!("cannot create a version {version} schema: {error}"));
}

/// A time PostgreSQL keeps exactly (whole microseconds).
fn micros(at: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_000_000 + at)
}

/// The events of history: `count` on `stream`, with metadata, from stream version `after + 1`
/// and position `first`.
fn history(stream: &StreamId, after: u64, first: u64, count: u64, at: SystemTime) -> Vec<StoredEvent> {
    (0..count)
        .map(|n| StoredEvent {
            position: Position(first + n),
            stream: stream.clone(),
            stream_version: Version(after + n + 1),
            event_id: Uuid::now_v7(),
            metadata: Metadata::new().with_correlation_id(Uuid::now_v7()).with_header("n", n.to_string()),
            recorded_at: at,
            event: RawEvent::new("Deposited", 2, format!(r#"{{"amount":{n},"note":"ü \u0000 \"x\""}}"#)),
        })
        .collect()
}

/// The columns of a batch, as both old statements take them.
struct Columns {
    ids: Vec<Uuid>,
    types: Vec<String>,
    schema_versions: Vec<i64>,
    payloads: Vec<String>,
    metadata: Vec<String>,
}

fn columns(events: &[StoredEvent]) -> Columns {
    Columns {
        ids: events.iter().map(|e| e.event_id).collect(),
        types: events.iter().map(|e| e.event.event_type.clone()).collect(),
        schema_versions: events.iter().map(|e| i64::from(e.event.schema_version)).collect(),
        payloads: events.iter().map(|e| e.event.payload.clone()).collect(),
        metadata: events.iter().map(|e| serde_json::to_string(&e.metadata).expect("metadata")).collect(),
    }
}

/// Writes `events` (one stream, consecutive versions) with version 1's statement.
async fn write_v1(client: &Client, schema: &str, events: &[StoredEvent]) {
    let first = &events[0];
    let c = columns(events);
    let count = events.len() as i64;
    let before = first.stream_version.0 as i64 - 1;
    let sql = V1_INSERT.replace("{schema}", &format!("\"{schema}\""));
    let params: [(&(dyn ToSql + Sync), Type); 10] = [
        (&count, Type::INT8),
        (&first.stream.stream_type(), Type::TEXT),
        (&first.stream.id(), Type::TEXT),
        (&before, Type::INT8),
        (&first.recorded_at, Type::TIMESTAMPTZ),
        (&c.ids, Type::UUID_ARRAY),
        (&c.types, Type::TEXT_ARRAY),
        (&c.schema_versions, Type::INT8_ARRAY),
        (&c.payloads, Type::TEXT_ARRAY),
        (&c.metadata, Type::TEXT_ARRAY),
    ];
    let rows = client.query_typed(&sql, &params).await.expect("version 1's insert");
    let positions: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(positions, events.iter().map(|e| e.position.0 as i64).collect::<Vec<_>>());
}

/// Writes `batches` (each one stream's consecutive versions) in one call of version 2's
/// function, as its group commit did.
async fn write_v2(client: &Client, schema: &str, batches: &[&[StoredEvent]]) {
    let at = batches[0][0].recorded_at;
    let stream_types: Vec<&str> = batches.iter().map(|b| b[0].stream.stream_type()).collect();
    let stream_ids: Vec<&str> = batches.iter().map(|b| b[0].stream.id()).collect();
    let expected: Vec<i64> = batches.iter().map(|b| b[0].stream_version.0 as i64 - 1).collect();
    let all: Vec<StoredEvent> = batches.iter().flat_map(|b| b.iter().cloned()).collect();
    let of_job: Vec<i64> = batches.iter().enumerate().flat_map(|(job, b)| vec![job as i64 + 1; b.len()]).collect();
    let c = columns(&all);
    let sql = V2_INSERT.replace("{schema}", &format!("\"{schema}\""));
    let params: [(&(dyn ToSql + Sync), Type); 10] = [
        (&at, Type::TIMESTAMPTZ),
        (&stream_types, Type::TEXT_ARRAY),
        (&stream_ids, Type::TEXT_ARRAY),
        (&expected, Type::INT8_ARRAY),
        (&of_job, Type::INT8_ARRAY),
        (&c.ids, Type::UUID_ARRAY),
        (&c.types, Type::TEXT_ARRAY),
        (&c.schema_versions, Type::INT8_ARRAY),
        (&c.payloads, Type::TEXT_ARRAY),
        (&c.metadata, Type::TEXT_ARRAY),
    ];
    let rows = client.query_typed(&sql, &params).await.expect("version 2's append function");
    let kept: Vec<bool> = rows.iter().map(|row| row.get(1)).collect();
    assert_eq!(kept, vec![true; batches.len()], "version 2's function kept every append");
    let base: i64 = rows[0].get(2);
    assert_eq!(base as u64 + 1, all[0].position.0);
}

async fn meta_version(client: &Client, schema: &str) -> String {
    let sql = format!("SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'");
    client.query_one(&sql, &[]).await.expect("meta").get(0)
}

/// The text of the schema's append function.
async fn append_source(client: &Client, schema: &str) -> String {
    let sql = "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
               WHERE n.nspname = $1 AND p.proname = 'append'";
    let rows = client.query(sql, &[&schema]).await.expect("pg_proc");
    assert_eq!(rows.len(), 1, "one append function");
    rows[0].get(0)
}

/// `count` stores connecting to `schema` at the same moment; every connect must succeed.
async fn connect_at_once(schema: &str, count: usize) -> Vec<PostgresStore> {
    let start = Arc::new(tokio::sync::Barrier::new(count));
    let mut connecting = Vec::new();
    for _ in 0..count {
        let (schema, start) = (schema.to_owned(), Arc::clone(&start));
        connecting.push(tokio::spawn(async move {
            start.wait().await;
            let options = PostgresOptions::new().schema(schema).max_connections(2);
            PostgresStore::connect_with(&common::database_url(), options).await
        }));
    }
    let mut stores = Vec::new();
    for task in connecting {
        stores.push(task.await.expect("a connect panicked").expect("a concurrent connect (and migration) failed"));
    }
    stores
}

async fn everything(store: &PostgresStore) -> Vec<StoredEvent> {
    store.read_all(&Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.expect("read_all").events
}

/// What the current code must find in a migrated schema: every event as written, on every
/// read path, and the same store (checkpoints) from every connection; then appends go on at
/// the next position and version.
async fn check_migrated(stores: &[PostgresStore], written: &[StoredEvent], streams: &[StreamId]) {
    let store = &stores[0];
    assert_eq!(everything(store).await, written, "every event reads back as written, in its position");
    for stream in streams {
        let expected: Vec<StoredEvent> = written.iter().filter(|e| &e.stream == stream).cloned().collect();
        assert_eq!(store.read_stream(stream, Version(1), usize::MAX).await.expect("read_stream"), expected);
        let version = expected.last().map_or(Version::NONE, |e| e.stream_version);
        assert_eq!(store.stream_version(stream).await.expect("stream_version"), version);
    }
    let last = written.last().expect("history");
    assert_eq!(store.find_event(last.event_id).await.expect("find_event").as_ref(), Some(last));
    let head = store.head().await.expect("head");
    for other in &stores[1..] {
        assert_eq!(other.head().await.expect("head"), head, "every connect opened the same store");
    }
    // Appending goes on where history stops, through the current append function.
    let stream = &streams[0];
    let version = store.stream_version(stream).await.expect("stream_version");
    let stale = ExpectedVersion::Exact(Version(version.0 - 1));
    let new = || (0..2).map(|n| NewEvent::new(RawEvent::new("Deposited", 2, format!(r#"{{"amount":{n}}}"#))));
    match store.append(stream, stale, new().collect()).await {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, version),
        other => panic!("a stale expectation after the migration: {other:?}"),
    }
    let appended = stores[1].append(stream, ExpectedVersion::Exact(version), new().collect()).await.expect("append");
    let positions: Vec<u64> = appended.events.iter().map(|e| e.position.0).collect();
    assert_eq!(positions, vec![last.position.0 + 1, last.position.0 + 2]);
    assert_eq!(appended.events[0].stream_version, Version(version.0 + 1));
    let page = store.read_all(&head, &ReadAllFilter::all(), 10).await.expect("read_all after the head");
    assert_eq!(page.events, appended.events, "a reader at the old head sees exactly the new events");
}

/// A schema version 1 made and filled: connecting with the current code migrates it to the
/// current version once, although eight connect at the same moment (migration 1 → 2 creates
/// the append function, which fails if it already exists, so two connects that both migrated
/// would not both succeed), and every event reads back as version 1 wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_1_schema_migrates_with_every_event_intact() {
    let raw = common::raw_client().await;
    let schema = common::unique_schema("from_v1");
    let store_id = Uuid::new_v4();
    old_schema(&raw, &schema, 1, store_id).await;
    let (a, b) = (StreamId::new("Account", "a"), StreamId::new("Account", "b"));
    let mut written = Vec::new();
    for (stream, count, at) in [(&a, 3, 1), (&b, 1, 2), (&a, 2, 3), (&b, 4, 4)] {
        let after = written.iter().filter(|e: &&StoredEvent| &e.stream == stream).count() as u64;
        let batch = history(stream, after, written.len() as u64 + 1, count, micros(at));
        write_v1(&raw, &schema, &batch).await;
        written.extend(batch);
    }
    let state = r#"{"balance":7,"nul":"\u0000"}"#;
    raw.execute(&format!("INSERT INTO \"{schema}\".snapshots VALUES ('Account', 'a', 5, 3, $1)"), &[&state])
        .await
        .expect("a version 1 snapshot");

    let stores = connect_at_once(&schema, 8).await;
    assert_eq!(meta_version(&raw, &schema).await, PostgresStore::SCHEMA_VERSION.to_string());
    let snapshot = stores[0].load_snapshot(&a).await.expect("load_snapshot");
    let expected = Snapshot { stream: a.clone(), version: Version(5), snapshot_version: 3, state: state.to_owned() };
    assert_eq!(snapshot, Some(expected));
    check_migrated(&stores, &written, &[a, b]).await;
    // The store id of version 1 is kept: checkpoints it handed out stay valid.
    let expected_origin = es_core::store::StoreOrigin::new("postgres", store_id);
    let checkpoint = Checkpoint::new(&expected_origin, [written.len() as u64, 0]);
    let page = stores[0].read_all(&checkpoint, &ReadAllFilter::all(), 10).await.expect("an old checkpoint");
    assert_eq!(page.events.len(), 2, "the two events appended after the migration");
    common::drop_schema(&stores[0]).await;
}

/// A schema version 2 filled through version 2's own append function (groups of appends
/// included): the current code replaces the function, keeps every event, and appends on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_2_schema_migrates_with_every_event_intact() {
    let raw = common::raw_client().await;
    let schema = common::unique_schema("from_v2");
    old_schema(&raw, &schema, 2, Uuid::new_v4()).await;
    let (a, b, c) = (StreamId::new("Account", "a"), StreamId::new("Account", "b"), StreamId::new("Order", "c"));
    let first_a = history(&a, 0, 1, 2, micros(10));
    write_v2(&raw, &schema, &[&first_a]).await;
    let (second_b, second_c) = (history(&b, 0, 3, 3, micros(11)), history(&c, 0, 6, 1, micros(11)));
    write_v2(&raw, &schema, &[&second_b, &second_c]).await;
    let third_a = history(&a, 2, 7, 1, micros(12));
    write_v2(&raw, &schema, &[&third_a]).await;
    let written: Vec<StoredEvent> = [first_a, second_b, second_c, third_a].concat();
    let before = append_source(&raw, &schema).await;

    let stores = connect_at_once(&schema, 4).await;
    assert_eq!(meta_version(&raw, &schema).await, PostgresStore::SCHEMA_VERSION.to_string());
    assert_ne!(append_source(&raw, &schema).await, before, "the migration replaced the append function");
    check_migrated(&stores, &written, &[a, b, c]).await;
    common::drop_schema(&stores[0]).await;
}

/// A schema whose version is newer than this code is refused with `SchemaTooNew`, and left
/// exactly as it was.
#[tokio::test]
async fn a_newer_schema_is_refused_and_left_alone() {
    let store = common::store("too_new").await;
    store
        .append(
            &StreamId::new("Account", "a"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new("Opened", 1, "{}"))],
        )
        .await
        .expect("append");
    let raw = common::raw_client().await;
    let schema = store.schema().to_owned();
    let newer = PostgresStore::SCHEMA_VERSION + 1;
    raw.execute(
        &format!("UPDATE \"{schema}\".meta SET value = $1 WHERE key = 'schema_version'"),
        &[&newer.to_string()],
    )
    .await
    .expect("update");
    let function = append_source(&raw, &schema).await;
    match PostgresStore::connect_with(&common::database_url(), PostgresOptions::new().schema(schema.clone())).await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (newer, PostgresStore::SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(meta_version(&raw, &schema).await, newer.to_string(), "the version is left as found");
    assert_eq!(append_source(&raw, &schema).await, function, "the function is left as found");
    let count: i64 =
        raw.query_one(&format!("SELECT count(*) FROM \"{schema}\".events"), &[]).await.expect("count").get(0);
    assert_eq!(count, 1);
    common::drop_schema(&store).await;
}

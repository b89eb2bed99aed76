//! Appends through `SqliteStore::append` beside the same rows written straight with rusqlite in
//! the same transaction pattern: the engine's own limit for this schema and these settings.
//!
//! Both write to a file in a temporary directory, with the same schema and indexes (the raw
//! database is created by `SqliteStore::open`), WAL and `synchronous = FULL`, one IMMEDIATE
//! transaction per append that looks up every event id, reads the stream's version and inserts
//! the rows. Building the events is outside the timing for both.
//!
//! `cargo bench -p es-sqlite --bench append`

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, RawEvent, StreamId, Version};
use es_sqlite::SqliteStore;
use rusqlite::{Connection, TransactionBehavior, params};
use uuid::Uuid;

fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| {
            NewEvent::new(RawEvent::new("MoneyDeposited", 2, format!(r#"{{"amount":{n},"reference":"salary"}}"#)))
                .with_metadata(Metadata::new().with_correlation_id(Uuid::now_v7()).with_header("user", "ann"))
        })
        .collect()
}

const SELECT_BY_ID: &str = "SELECT position, stream_type, stream_id, stream_version, event_id, event_type, \
     schema_version, payload, metadata, recorded_at FROM events WHERE event_id = ?1";
const SELECT_STREAM_VERSION: &str =
    "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_type = ?1 AND stream_id = ?2";
const INSERT_EVENT: &str = "INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, \
     schema_version, payload, metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// One append with plain rusqlite: the store's statements, no store around them. The metadata
/// JSON comes ready-made.
fn raw_append(connection: &mut Connection, stream: &StreamId, expected: i64, batch: &[(NewEvent, String)]) -> i64 {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
    {
        let mut by_id = transaction.prepare_cached(SELECT_BY_ID).unwrap();
        for (event, _) in batch {
            let mut rows = by_id.query([event.event_id.as_bytes()]).unwrap();
            assert!(rows.next().unwrap().is_none());
        }
    }
    let actual: i64 = transaction
        .prepare_cached(SELECT_STREAM_VERSION)
        .unwrap()
        .query_row(params![stream.stream_type(), stream.id()], |row| row.get(0))
        .unwrap();
    assert_eq!(actual, expected);
    let micros = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros() as i64;
    let mut last = 0;
    {
        let mut insert = transaction.prepare_cached(INSERT_EVENT).unwrap();
        for (offset, (event, metadata)) in batch.iter().enumerate() {
            insert
                .execute(params![
                    stream.stream_type(),
                    stream.id(),
                    actual + offset as i64 + 1,
                    event.event_id.as_bytes(),
                    event.event.event_type,
                    event.event.schema_version,
                    event.event.payload,
                    metadata,
                    micros,
                ])
                .unwrap();
            last = transaction.last_insert_rowid();
        }
    }
    transaction.commit().unwrap();
    last
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stream = StreamId::new("BankAccount", "bench");

    for (name, size) in [("append_batch_100", 100usize), ("append_single", 1)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(size as u64));

        let store = SqliteStore::open(dir.path().join(format!("{name}-store.db"))).unwrap();
        let mut version = 0u64;
        group.bench_function("SqliteStore::append", |b| {
            b.iter_batched(
                || events(size),
                |batch| {
                    let committed = runtime
                        .block_on(store.append(&stream, ExpectedVersion::Exact(Version(version)), batch))
                        .unwrap();
                    version += committed.events.len() as u64;
                    black_box(committed)
                },
                BatchSize::SmallInput,
            );
        });

        let raw_path = dir.path().join(format!("{name}-raw.db"));
        drop(SqliteStore::open(&raw_path).unwrap()); // the same schema and indexes
        let mut connection = Connection::open(&raw_path).unwrap();
        connection.busy_timeout(Duration::from_secs(10)).unwrap();
        connection.pragma_update(None, "journal_mode", "WAL").unwrap();
        connection.pragma_update(None, "synchronous", "FULL").unwrap();
        let mut raw_version = 0i64;
        group.bench_function("rusqlite", |b| {
            b.iter_batched(
                || {
                    events(size)
                        .into_iter()
                        .map(|e| (serde_json::to_string(&e.metadata).unwrap(), e))
                        .map(|(m, e)| (e, m))
                        .collect::<Vec<_>>()
                },
                |batch| {
                    let last = raw_append(&mut connection, &stream, raw_version, &batch);
                    raw_version += batch.len() as i64;
                    black_box(last)
                },
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(6));
    targets = append
}
criterion_main!(benches);

//! Appends per second through `PostgresStore::append` beside raw tokio-postgres writing the
//! same rows into a table of the same shape with a `bigserial` position (no frontier, no
//! version check, no idempotency): one prepared INSERT per row in a transaction per batch, and
//! one `UNNEST` statement per batch.
//!
//! Batches of 100 events and single-event commits, with 1, 4 and 16 concurrent writers, each
//! on its own stream and its own connection. Throughput is in events.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p es-postgres --bench append`
//!
//! With `ES_BENCH_NO_NOTIFY=1` the store runs with `notify_commits(false)`, to see what the
//! commit notification (LISTEN/NOTIFY for followers) costs the writers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, RawEvent, StreamId};
use es_postgres::{PostgresOptions, PostgresStore};
use tokio::runtime::Runtime;
use tokio_postgres::NoTls;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    }
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| {
            NewEvent::new(RawEvent::new("MoneyDeposited", 2, format!(r#"{{"amount":{n},"reference":"salary"}}"#)))
                .with_metadata(Metadata::new().with_correlation_id(Uuid::now_v7()).with_header("user", "ann"))
        })
        .collect()
}

const RAW_TABLE: &str = "CREATE TABLE {s}.raw_events (
    position bigserial PRIMARY KEY,
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
)";

#[derive(Clone, Copy)]
enum Writer {
    Store,
    RawRows,
    RawUnnest,
}

struct Setup {
    store: PostgresStore,
    schema: String,
}

async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `per_writer` batches of `size` events by each of `writers` concurrent writers; the time.
async fn run(setup: Arc<Setup>, how: Writer, writers: usize, per_writer: u64, size: usize) -> Duration {
    let mut tasks = Vec::new();
    // Connecting and building the events is outside the timing: all writers start together.
    let start = Arc::new(tokio::sync::Barrier::new(writers));
    for _ in 0..writers {
        let setup = Arc::clone(&setup);
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("Bench", Uuid::now_v7().to_string());
            let batches: Vec<Vec<NewEvent>> = (0..per_writer).map(|_| events(size)).collect();
            let client = match how {
                Writer::Store => None,
                Writer::RawRows | Writer::RawUnnest => Some(raw_client().await),
            };
            let s = format!("\"{}\"", setup.schema);
            let insert_row = format!(
                "INSERT INTO {s}.raw_events (stream_type, stream_id, stream_version, event_id, event_type, \
                 schema_version, payload, metadata, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            );
            let insert_unnest = format!(
                "INSERT INTO {s}.raw_events (stream_type, stream_id, stream_version, event_id, event_type, \
                 schema_version, payload, metadata, recorded_at) \
                 SELECT $1, $2, v, id, t, sv, p, m, $3 FROM UNNEST($4::bigint[], $5::uuid[], $6::text[], \
                 $7::bigint[], $8::text[], $9::text[]) AS u(v, id, t, sv, p, m)"
            );
            let statement = match &client {
                Some(client) if matches!(how, Writer::RawRows) => {
                    Some(client.prepare(&insert_row).await.expect("prepare"))
                }
                _ => None,
            };
            let mut version = 0i64;
            start.wait().await;
            let begin = Instant::now();
            for batch in batches {
                match (&client, how) {
                    (_, Writer::Store) => {
                        setup.store.append(&stream, ExpectedVersion::Any, batch).await.expect("append");
                    }
                    (Some(client), Writer::RawRows) => {
                        let Some(statement) = &statement else { unreachable!("prepared above") };
                        client.batch_execute("BEGIN").await.expect("begin");
                        let now = SystemTime::now();
                        for event in &batch {
                            version += 1;
                            let metadata = serde_json::to_string(&event.metadata).expect("metadata");
                            let schema_version = i64::from(event.event.schema_version);
                            client
                                .execute(
                                    statement,
                                    &[
                                        &stream.stream_type(),
                                        &stream.id(),
                                        &version,
                                        &event.event_id,
                                        &event.event.event_type,
                                        &schema_version,
                                        &event.event.payload,
                                        &metadata,
                                        &now,
                                    ],
                                )
                                .await
                                .expect("insert");
                        }
                        client.batch_execute("COMMIT").await.expect("commit");
                    }
                    (Some(client), Writer::RawUnnest) => {
                        let versions: Vec<i64> = (1..=batch.len() as i64).map(|v| version + v).collect();
                        version += batch.len() as i64;
                        let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
                        let types: Vec<&str> = batch.iter().map(|e| e.event.event_type.as_str()).collect();
                        let schema_versions: Vec<i64> =
                            batch.iter().map(|e| i64::from(e.event.schema_version)).collect();
                        let payloads: Vec<&str> = batch.iter().map(|e| e.event.payload.as_str()).collect();
                        let metadata: Vec<String> =
                            batch.iter().map(|e| serde_json::to_string(&e.metadata).expect("metadata")).collect();
                        let now = SystemTime::now();
                        let params: [(&(dyn ToSql + Sync), Type); 9] = [
                            (&stream.stream_type(), Type::TEXT),
                            (&stream.id(), Type::TEXT),
                            (&now, Type::TIMESTAMPTZ),
                            (&versions, Type::INT8_ARRAY),
                            (&ids, Type::UUID_ARRAY),
                            (&types, Type::TEXT_ARRAY),
                            (&schema_versions, Type::INT8_ARRAY),
                            (&payloads, Type::TEXT_ARRAY),
                            (&metadata, Type::TEXT_ARRAY),
                        ];
                        client.query_typed(&insert_unnest, &params).await.expect("insert");
                    }
                    (None, _) => unreachable!("raw writers have a client"),
                }
            }
            begin.elapsed()
        }));
    }
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.expect("a writer panicked"));
    }
    slowest
}

fn appends(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let schema = format!("es_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let setup = runtime.block_on(async {
        let options = PostgresOptions::new()
            .schema(schema.clone())
            .max_connections(16)
            .notify_commits(std::env::var_os("ES_BENCH_NO_NOTIFY").is_none());
        let store = PostgresStore::connect_with(&database_url(), options)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to DATABASE_URL (is the server up?): {error}"));
        raw_client().await.batch_execute(&RAW_TABLE.replace("{s}", &format!("\"{schema}\""))).await.expect("raw table");
        Arc::new(Setup { store, schema: schema.clone() })
    });
    for (name, size) in [("batch_of_100", 100usize), ("single_event", 1)] {
        let mut group = c.benchmark_group(format!("append/{name}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        for writers in [1usize, 4, 16] {
            group.throughput(Throughput::Elements((size * writers) as u64));
            for (label, how) in [
                ("es_postgres", Writer::Store),
                ("raw_insert_per_row", Writer::RawRows),
                ("raw_unnest", Writer::RawUnnest),
            ] {
                group.bench_with_input(
                    BenchmarkId::new(label, format!("{writers}_writers")),
                    &writers,
                    |b, &writers| {
                        // One iteration: every writer commits one batch (so `size * writers` events).
                        b.iter_custom(|iters| runtime.block_on(run(Arc::clone(&setup), how, writers, iters, size)));
                    },
                );
            }
        }
        group.finish();
    }
    runtime.block_on(async {
        let _ = raw_client().await.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    });
}

criterion_group!(benches, appends);
criterion_main!(benches);

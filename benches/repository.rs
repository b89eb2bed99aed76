//! Repository figures: `execute` on one aggregate at 1,000 vs 100,000 events in its stream,
//! with snapshots (every 100 events) and without; `load` of a 10,000-event stream with and
//! without a snapshot. On the SQLite file store (the default), in memory and, with the
//! `postgres` feature, on PostgreSQL at `DATABASE_URL` (in a schema of its own, dropped after).
//!
//! `cargo bench --bench repository` (`--features postgres -- postgres` for PostgreSQL alone)

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use es::prelude::*;
use es::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, SqliteStore, StreamId};
use tokio::runtime::Runtime;

/// Money was paid in.
#[event(version = 1)]
pub struct Deposited {
    /// How much.
    pub amount: u64,
}

/// An account that is snapshotted every 100 events.
#[derive(Aggregate, Default, Debug, Clone, Serialize, Deserialize)]
#[aggregate(id = String, events(Deposited), snapshot(every = 100, version = 1))]
pub struct Snapshotted {
    balance: u64,
}

/// The same account, never snapshotted.
#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(Deposited))]
pub struct Replayed {
    balance: u64,
}

impl Apply<Deposited> for Snapshotted {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

impl Apply<Deposited> for Replayed {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

fn deposit(balance: u64) -> Result<Deposited, std::convert::Infallible> {
    Ok(Deposited { amount: balance % 7 + 1 })
}

/// Writes `events` events to the stream of aggregate `A` with id `id`, in batches, and the
/// snapshot the repository would have written at the last multiple of 100.
async fn fill<A: Aggregate, S: EventStore>(store: &S, id: &str, events: u64) {
    let stream = StreamId::new(A::TYPE, id);
    let mut written = 0;
    while written < events {
        let batch: Vec<NewEvent> = (0..(events - written).min(1000))
            .map(|_| NewEvent::new(RawEvent::new("Deposited", 1, r#"{"amount":3}"#)))
            .collect();
        written += batch.len() as u64;
        store.append(&stream, ExpectedVersion::Any, batch).await.expect("fill failed");
    }
    if let Some(policy) = A::SNAPSHOT {
        let at = events / policy.every * policy.every;
        let state = serde_json::json!({ "balance": at * 3 }).to_string();
        let snapshot = es::Snapshot { stream, version: Version(at), snapshot_version: policy.version, state };
        store.save_snapshot(snapshot).await.expect("snapshot failed");
    }
}

/// Each execute appends one event, so a benchmark on one stream would measure a growing stream.
/// Commands rotate over `streams` streams filled to the same length instead, so none grows by
/// more than a few per cent while it is measured.
fn execute<S: EventStore + Clone>(c: &mut Criterion, store_name: &str, store: &S, rt: &Runtime) {
    let mut group = c.benchmark_group(format!("execute/{store_name}"));
    group.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for events in [1_000u64, 100_000] {
        let streams = (100_000 / events).clamp(1, 100);
        let ids: Vec<String> = (0..streams).map(|k| format!("exec-{events}-{k}")).collect();
        for id in &ids {
            rt.block_on(fill::<Snapshotted, _>(store, id, events));
            rt.block_on(fill::<Replayed, _>(store, id, events));
        }
        let snapshotted = Repository::<Snapshotted, _>::new(store.clone());
        let mut next = ids.iter().cycle();
        group.bench_function(BenchmarkId::new("snapshots", events), |b| {
            b.iter(|| {
                let id = next.next().expect("cycle never ends");
                rt.block_on(snapshotted.execute(id, |a| deposit(a.balance))).expect("execute failed")
            });
        });
        let replayed = Repository::<Replayed, _>::new(store.clone());
        let mut next = ids.iter().cycle();
        group.bench_function(BenchmarkId::new("no-snapshots", events), |b| {
            b.iter(|| {
                let id = next.next().expect("cycle never ends");
                rt.block_on(replayed.execute(id, |a| deposit(a.balance))).expect("execute failed")
            });
        });
    }
    group.finish();
}

fn load<S: EventStore + Clone>(c: &mut Criterion, store_name: &str, store: &S, rt: &Runtime) {
    let mut group = c.benchmark_group(format!("load-10000/{store_name}"));
    group.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let id = "load".to_owned();
    rt.block_on(fill::<Snapshotted, _>(store, &id, 10_000));
    rt.block_on(fill::<Replayed, _>(store, &id, 10_000));
    // No cache: a load then reads the snapshot and the tail, or the whole stream.
    let snapshotted = Repository::<Snapshotted, _>::new(store.clone()).with_cache(0);
    let replayed = Repository::<Replayed, _>::new(store.clone()).with_cache(0);
    group.bench_function("snapshot", |b| {
        b.iter(|| black_box(rt.block_on(snapshotted.load(&id)).expect("load failed").balance));
    });
    group.bench_function("no-snapshot", |b| {
        b.iter(|| black_box(rt.block_on(replayed.load(&id)).expect("load failed").balance));
    });
    group.finish();
}

fn repository(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(dir.path().join("bench.db")).expect("open");
    execute(c, "sqlite", &sqlite, &rt);
    load(c, "sqlite", &sqlite, &rt);
    let memory = InMemoryStore::new();
    execute(c, "memory", &memory, &rt);
    load(c, "memory", &memory, &rt);
    #[cfg(feature = "postgres")]
    postgres(c, &rt);
}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion, rt: &Runtime) {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("es_bench_repository_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let options = es::PostgresOptions::new().schema(schema.clone());
    let store = rt.block_on(es::PostgresStore::connect_with(&url, options)).expect("cannot connect to DATABASE_URL");
    execute(c, "postgres", &store, rt);
    load(c, "postgres", &store, rt);
    rt.block_on(async {
        let client = store.pool().get().await.expect("connection");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("drop the bench schema");
    });
}

criterion_group!(benches, repository);
criterion_main!(benches);

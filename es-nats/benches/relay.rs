//! The relay against the bare client, and end-to-end lag, on the NATS server at
//! 127.0.0.1:4222 (or `NATS_URL`): `cargo bench -p es-nats --bench relay`.
//!
//! 1. **Throughput.** 20,000 events in a SQLite store, published by the relay (read from the
//!    store in batches of 500, every batch's acknowledgements awaited, the checkpoint saved)
//!    beside a bare async-nats loop publishing the same messages (the same headers built the
//!    same way, the same payloads, the same policy: a batch of 500 sent, then its
//!    acknowledgements awaited). Each run has a stream of its own (file storage), so that no
//!    message is dropped as a duplicate of another run's.
//! 2. **Lag.** A steady write load (one event every 2 ms for 10 s) on a SQLite store, the
//!    relay publishing, a consumer feeding a SQLite read model in the same process: the time
//!    from the append's commit (`recorded_at`) to the consumer's commit of the read model,
//!    median and p99.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream;
use es_core::projection::{HandlerError, InMemoryCheckpointStore, ProjectionOptions};
use es_core::store::{Checkpoint, EventStore, ExpectedVersion, ReadAllFilter};
use es_core::{Envelope, NewEvent, RawEvent, StoredEvent, StreamId};
use es_nats::sqlite::{SqliteReadModel, relay_checkpoints};
use es_nats::{Consumer, ConsumerOptions, Relay, RelayOptions, StreamSettings, message};
use es_sqlite::SqliteStore;
use es_sqlite::rusqlite::Transaction;

const EVENTS: usize = 20_000;
const BATCH: usize = 500;
const RUNS: usize = 3;

fn settings(label: &str) -> StreamSettings {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("ES_BENCH_{label}_{}", &id[20..]);
    StreamSettings::new(name.clone(), name.to_lowercase())
}

fn payload(n: usize) -> String {
    serde_json::json!({ "amount": n, "reference": format!("invoice {n:08} for services rendered in the month"), "currency": "EUR" })
        .to_string()
}

async fn fill(store: &SqliteStore) {
    for chunk in 0..EVENTS / 10 {
        let stream = StreamId::new("BankAccount", format!("account-{}", chunk % 50));
        let events =
            (0..10).map(|k| NewEvent::new(RawEvent::new("MoneyDeposited", 2, payload(chunk * 10 + k)))).collect();
        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    }
}

async fn bare(jetstream: &jetstream::Context, events: &[StoredEvent]) -> Duration {
    let settings = settings("BARE");
    let config = jetstream::stream::Config {
        name: settings.name.clone(),
        subjects: vec![settings.subjects.wildcard()],
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    };
    jetstream.create_stream(config).await.unwrap();
    let started = Instant::now();
    for batch in events.chunks(BATCH) {
        let mut acks = Vec::with_capacity(batch.len());
        for event in batch {
            acks.push(jetstream.send_publish(settings.subjects.subject(event), message(event)).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let elapsed = started.elapsed();
    jetstream.delete_stream(&settings.name).await.unwrap();
    elapsed
}

async fn relay(jetstream: &jetstream::Context, store: &SqliteStore) -> Duration {
    let settings = settings("RELAY");
    let checkpoints = relay_checkpoints(store.clone()).await.unwrap();
    let options = RelayOptions { batch_size: BATCH, ..RelayOptions::default() };
    // The stream exists before the clock starts, as for the bare loop; each run its own
    // checkpoint (named after the stream), so each publishes everything.
    let config = jetstream::stream::Config {
        name: settings.name.clone(),
        subjects: vec![settings.subjects.wildcard()],
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    };
    jetstream.create_stream(config).await.unwrap();
    let head = store.head().await.unwrap();
    let relay = Relay::new(store.clone(), checkpoints, jetstream.clone(), settings.clone()).with_options(options);
    let handle = relay.handle();
    let started = Instant::now();
    let task = tokio::spawn(relay.run());
    assert!(handle.wait_for(&head, Duration::from_secs(300)).await, "{:?}", handle.state());
    let elapsed = started.elapsed();
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(handle.published(), (EVENTS as u64, 0));
    jetstream.delete_stream(&settings.name).await.unwrap();
    elapsed
}

fn rate(elapsed: Duration) -> f64 {
    EVENTS as f64 / elapsed.as_secs_f64()
}

/// Notes the time of each event it is handed; the flush turns it into lag at commit time.
#[derive(Default)]
struct Lag {
    pending: Vec<SystemTime>,
    lags: Arc<Mutex<Vec<Duration>>>,
}

impl es_core::projection::Projection for Lag {
    const NAME: &'static str = "lag";
    const VERSION: u32 = 1;
    const SELECTION: &'static [es_core::projection::Selected] = &[];

    fn dispatch(&mut self, record: &StoredEvent) -> Result<bool, es_core::projection::DispatchError> {
        self.pending.push(record.recorded_at);
        Ok(true)
    }
}

fn flush_lag(tx: &Transaction<'_>, lag: &mut Lag) -> Result<(), HandlerError> {
    tx.execute_batch("CREATE TABLE IF NOT EXISTS seen (n INTEGER)")?;
    tx.execute("INSERT INTO seen (n) VALUES (?1)", [lag.pending.len() as i64])?;
    let now = SystemTime::now();
    let mut lags = lag.lags.lock().unwrap();
    for recorded in lag.pending.drain(..) {
        lags.push(now.duration_since(recorded).unwrap_or_default());
    }
    Ok(())
}

async fn lag(jetstream: &jetstream::Context) -> (usize, Duration, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).unwrap();
    let settings = settings("LAG");
    let relay = Relay::new(store.clone(), InMemoryCheckpointStore::new(), jetstream.clone(), settings.clone());
    let relay_handle = relay.handle();
    let relay_task = tokio::spawn(relay.run());
    let lags = Arc::new(Mutex::new(Vec::new()));
    let model = SqliteReadModel::new(SqliteStore::open(dir.path().join("model.db")).unwrap(), flush_lag).await.unwrap();
    let options = ConsumerOptions {
        projection: ProjectionOptions { batch_size: 100, ..ProjectionOptions::default() },
        ..ConsumerOptions::default()
    };
    let consumer =
        Consumer::new(Lag { pending: Vec::new(), lags: Arc::clone(&lags) }, model, jetstream.clone(), settings.clone())
            .with_options(options);
    let consumer_handle = consumer.handle();
    let consumer_task = tokio::spawn(consumer.run());

    let stream = StreamId::new("BankAccount", "steady");
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut last = None;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(10) {
        tick.tick().await;
        let appended = store
            .append(&stream, ExpectedVersion::Any, vec![NewEvent::new(RawEvent::new("MoneyDeposited", 2, payload(n)))])
            .await
            .unwrap();
        last = appended.events.last().map(|e: &Envelope<RawEvent>| e.stream_version);
        n += 1;
    }
    assert!(consumer_handle.wait_for(&stream, last.unwrap(), Duration::from_secs(60)).await);
    consumer_handle.stop();
    relay_handle.stop();
    consumer_task.await.unwrap().unwrap();
    relay_task.await.unwrap().unwrap();
    jetstream.delete_stream(&settings.name).await.unwrap();
    let mut lags = lags.lock().unwrap().clone();
    lags.sort();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    (lags.len(), at(0.5), at(0.99), *lags.last().unwrap())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
        let client =
            async_nats::connect(&url).await.unwrap_or_else(|error| panic!("NATS is unreachable at {url}: {error}"));
        let jetstream = jetstream::new(client);
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("bank.db")).unwrap();
        fill(&store).await;
        let events = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.unwrap().events;
        assert_eq!(events.len(), EVENTS);

        let (mut bare_rates, mut relay_rates) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            bare_rates.push(rate(bare(&jetstream, &events).await));
            relay_rates.push(rate(relay(&jetstream, &store).await));
        }
        let median = |rates: &mut Vec<f64>| {
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        };
        let (bare_rate, relay_rate) = (median(&mut bare_rates), median(&mut relay_rates));
        println!("throughput, {EVENTS} events, batches of {BATCH}, median of {RUNS} runs:");
        println!("  bare async-nats publish loop  {bare_rate:>9.0} events/s");
        println!(
            "  relay (SQLite -> JetStream)   {relay_rate:>9.0} events/s   ({:.2}x the bare loop)",
            relay_rate / bare_rate
        );

        let (count, median, p99, max) = lag(&jetstream).await;
        println!("lag from append to the consumer's read model, 500 events/s for 10 s ({count} events):");
        println!("  median {median:.1?}   p99 {p99:.1?}   max {max:.1?}");
    });
}

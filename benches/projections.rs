//! Projection figures on the SQLite file store: catch-up throughput of a runner whose read
//! model lives in the same database (written with the checkpoint in one transaction per
//! batch, `SqliteCheckpoints`) beside a bare `read_all` loop over the same events; and the
//! lag from an append's return to the read model's commit under a steady write load
//! (median and p99).
//!
//! `cargo bench --bench projections` (prints figures; no criterion).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use es::prelude::*;
use es::projection::{ProjectionOptions, ProjectionRunner};
use es::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, RawEvent, ReadAllFilter, SqliteCheckpoints, SqliteStore,
    StreamId,
};
use es_sqlite::rusqlite::Transaction;

/// Money was paid in.
#[event(version = 1)]
pub struct Deposited {
    /// How much.
    pub amount: u64,
}

/// Totals per account, written by `flush` with the checkpoint.
#[derive(Projection, Default, Debug)]
#[projection(name = "bench_totals", events(Deposited))]
pub struct Totals {
    pending: Vec<(String, u64)>,
}

impl Handle<Deposited> for Totals {
    fn handle(&mut self, event: &Envelope<Deposited>) -> Result<(), HandlerError> {
        self.pending.push((event.stream.id().to_owned(), event.event.amount));
        Ok(())
    }
}

fn flush(tx: &Transaction<'_>, totals: &mut Totals) -> Result<(), HandlerError> {
    tx.execute_batch("CREATE TABLE IF NOT EXISTS bench_totals (account TEXT PRIMARY KEY, total INTEGER NOT NULL)")?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO bench_totals (account, total) VALUES (?1, ?2)
         ON CONFLICT (account) DO UPDATE SET total = total + excluded.total",
    )?;
    for (account, amount) in totals.pending.drain(..) {
        upsert.execute((account, i64::try_from(amount)?))?;
    }
    Ok(())
}

fn deposit(amount: u64) -> NewEvent {
    NewEvent::new(RawEvent::new("Deposited", 1, format!(r#"{{"amount":{amount}}}"#)))
}

const EVENTS: u64 = 50_000;
const BATCH: usize = 500;

async fn bare_read_all(store: &SqliteStore, filter: &ReadAllFilter) -> (u64, Duration) {
    let started = Instant::now();
    let (mut checkpoint, mut seen) = (Checkpoint::START, 0u64);
    loop {
        let page = store.read_all(&checkpoint, filter, BATCH).await.expect("read_all");
        if page.next == checkpoint {
            break;
        }
        seen += page.events.len() as u64;
        checkpoint = page.next;
    }
    (seen, started.elapsed())
}

async fn catch_up(store: &SqliteStore) -> Duration {
    let checkpoints = SqliteCheckpoints::new(store.clone(), flush).await.expect("checkpoints");
    let options = ProjectionOptions { batch_size: BATCH, ..ProjectionOptions::default() };
    let runner = ProjectionRunner::new(Totals::default(), store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let head = store.head().await.expect("head");
    let started = Instant::now();
    let task = tokio::spawn(runner.run());
    handle.wait_for(&head, Duration::from_secs(600)).await.expect("catch up");
    let elapsed = started.elapsed();
    handle.stop();
    task.await.expect("runner task").expect("runner");
    elapsed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn lag(store: &SqliteStore, writes: u32, every: Duration) -> Vec<Duration> {
    let checkpoints = SqliteCheckpoints::new(store.clone(), flush).await.expect("checkpoints");
    let options = ProjectionOptions { batch_size: BATCH, ..ProjectionOptions::default() };
    let runner = ProjectionRunner::new(Totals::default(), store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(Duration::from_secs(600)).await.expect("caught up");
    let waiters = Arc::new(Mutex::new(Vec::new()));
    let mut next = Instant::now();
    for n in 0..writes {
        let stream = StreamId::new("Account", format!("live-{}", n % 50));
        store.append(&stream, ExpectedVersion::Any, vec![deposit(1)]).await.expect("append");
        let appended = Instant::now();
        let head = store.head().await.expect("head");
        let handle = handle.clone();
        let waiter = tokio::spawn(async move {
            handle.wait_for(&head, Duration::from_secs(60)).await.expect("lag wait");
            appended.elapsed()
        });
        waiters.lock().expect("waiters").push(waiter);
        next += every;
        tokio::time::sleep_until(next.into()).await;
    }
    let mut lags = Vec::new();
    let waiters = std::mem::take(&mut *waiters.lock().expect("waiters"));
    for waiter in waiters {
        lags.push(waiter.await.expect("waiter"));
    }
    handle.stop();
    task.await.expect("runner task").expect("runner");
    lags.sort_unstable();
    lags
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("bench.db")).expect("open");
        for chunk in 0..EVENTS / 10 {
            let stream = StreamId::new("Account", (chunk % 100).to_string());
            let events = (0..10).map(|n| deposit(chunk * 10 + n)).collect();
            store.append(&stream, ExpectedVersion::Any, events).await.expect("append");
        }
        let filter = <Totals as Projection>::filter();
        let (seen, bare) = bare_read_all(&store, &filter).await;
        assert_eq!(seen, EVENTS);
        let runner = catch_up(&store).await;
        let rate = |elapsed: Duration| EVENTS as f64 / elapsed.as_secs_f64();
        println!(
            "catch-up of {EVENTS} events, batches of {BATCH}: bare read_all {:.0} ev/s ({bare:?}); runner with the read model in the same file {:.0} ev/s ({runner:?}); ratio {:.2}x (goal >= 0.8x)",
            rate(bare),
            rate(runner),
            bare.as_secs_f64() / runner.as_secs_f64()
        );

        let (writes, every) = (1000, Duration::from_millis(2));
        let lags = lag(&store, writes, every).await;
        println!(
            "lag append -> read model committed, {writes} appends one every {every:?}: median {:?}, p99 {:?}, max {:?} (goal p99 < 50 ms)",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            lags[lags.len() - 1]
        );
    });
}

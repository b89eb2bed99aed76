//! Projection figures on the SQLite file store: catch-up throughput of a runner whose read
//! model lives in the same database (written with the checkpoint in one transaction per
//! batch, `SqliteCheckpoints`) beside a bare `read_all` loop over the same events; and the
//! lag from an append's return to the read model's commit under a steady write load
//! (median and p99).
//!
//! Two read models keep the same table of totals per account:
//!
//! - `per-event`: the handler records each deposit; `flush` upserts one row per event.
//! - `folded`: the handler adds each deposit to its account's pending sum; `flush` upserts one
//!   row per account the batch touched (the usual shape of a read model that aggregates).
//!
//! `cargo bench --bench projections [-- ROUNDS]` times the bare loop and both runners in turn,
//! round after round (default 5), and prints the medians and the median per-round ratio;
//! then the lag. `projections --once VARIANT` (`bare`, `per-event`, `folded`) builds the data
//! and runs that catch-up once without a Tokio runtime (the SQLite calls then run inline on
//! one thread), for callgrind: `benches/callgrind_projections.sh`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use es::prelude::*;
use es::projection::{ProjectionOptions, ProjectionRunner};
use es::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, RawEvent, ReadAllFilter, SqliteCheckpoints, SqliteStore,
    StoreError, StreamId,
};
use es_sqlite::rusqlite::{CachedStatement, Transaction};

/// Money was paid in.
#[event(version = 1)]
pub struct Deposited {
    /// How much.
    pub amount: u64,
}

/// Totals per account, one upsert per event, written by `flush_each` with the checkpoint.
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

/// Creates `table` if needed and prepares its upsert: `(account, amount)` adds `amount` to the
/// account's total.
fn totals_upsert<'tx>(tx: &'tx Transaction<'_>, table: &str) -> Result<CachedStatement<'tx>, HandlerError> {
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (account TEXT PRIMARY KEY, total INTEGER NOT NULL)"
    ))?;
    Ok(tx.prepare_cached(&format!(
        "INSERT INTO {table} (account, total) VALUES (?1, ?2)
         ON CONFLICT (account) DO UPDATE SET total = total + excluded.total"
    ))?)
}

fn flush_each(tx: &Transaction<'_>, totals: &mut Totals) -> Result<(), HandlerError> {
    let mut upsert = totals_upsert(tx, "bench_totals")?;
    for (account, amount) in totals.pending.drain(..) {
        upsert.execute((account, i64::try_from(amount)?))?;
    }
    Ok(())
}

/// The same totals, folded per account in the handler: `flush_folded` writes one row per
/// account the batch touched.
#[derive(Projection, Default, Debug)]
#[projection(name = "bench_folded_totals", events(Deposited))]
pub struct FoldedTotals {
    pending: HashMap<StreamId, u64>,
}

impl Handle<Deposited> for FoldedTotals {
    fn handle(&mut self, event: &Envelope<Deposited>) -> Result<(), HandlerError> {
        *self.pending.entry(event.stream.clone()).or_default() += event.event.amount;
        Ok(())
    }
}

fn flush_folded(tx: &Transaction<'_>, totals: &mut FoldedTotals) -> Result<(), HandlerError> {
    let mut upsert = totals_upsert(tx, "bench_folded_totals")?;
    for (account, amount) in totals.pending.drain() {
        upsert.execute((account.id(), i64::try_from(amount)?))?;
    }
    Ok(())
}

fn deposit(amount: u64) -> NewEvent {
    NewEvent::new(RawEvent::new("Deposited", 1, format!(r#"{{"amount":{amount}}}"#)))
}

const EVENTS: u64 = 50_000;
const ACCOUNTS: u64 = 100;
const BATCH: usize = 500;

/// 50,000 deposits of 0, 1, 2 … over 100 accounts, appended ten at a time.
async fn fill(store: &SqliteStore) {
    for chunk in 0..EVENTS / 10 {
        let stream = StreamId::new("Account", (chunk % ACCOUNTS).to_string());
        let events = (0..10).map(|n| deposit(chunk * 10 + n)).collect();
        store.append(&stream, ExpectedVersion::Any, events).await.expect("append");
    }
}

/// What the bare loop reads: the same filter and page size as the runners.
fn filter() -> ReadAllFilter {
    <Totals as Projection>::filter()
}

/// Reads every selected event, page after page, as the runner does, and does nothing with them.
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

/// Empties the read model's table and its checkpoint, so that the next runner starts from the
/// first event.
async fn reset(store: &SqliteStore, name: &'static str, table: &'static str) {
    store
        .transaction(move |tx| {
            tx.execute("DELETE FROM es_projection_checkpoints WHERE name = ?1", [name])
                .and_then(|_| tx.execute_batch(&format!("DROP TABLE IF EXISTS {table}")))
                .map_err(|error| es_sqlite::backend_error("cannot reset the read model", error))
        })
        .await
        .expect("reset");
}

/// The sum of the totals and the number of accounts in `table`.
async fn totals(store: &SqliteStore, table: &'static str) -> (u64, u64) {
    store
        .read(move |tx| {
            tx.query_row(&format!("SELECT SUM(total), COUNT(*) FROM {table}"), [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })
            .map(|(sum, count)| (sum as u64, count as u64))
            .map_err(|error| es_sqlite::backend_error("cannot read the totals", error))
        })
        .await
        .expect("totals")
}

/// A runner of `projection` with its read model beside the events, run from the first event
/// until it has handled the head; the time from its start to then. Checks the totals it wrote.
async fn catch_up<P, F>(store: &SqliteStore, projection: P, flush: F, table: &'static str) -> Duration
where
    P: Projection,
    F: Fn(&Transaction<'_>, &mut P) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let checkpoints = SqliteCheckpoints::new(store.clone(), flush).await.expect("checkpoints");
    reset(store, P::NAME, table).await;
    let options = ProjectionOptions { batch_size: BATCH, ..ProjectionOptions::default() };
    let runner = ProjectionRunner::new(projection, store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let head = store.head().await.expect("head");
    let started = Instant::now();
    let waited = async {
        handle.wait_for(&head, Duration::from_secs(600)).await.expect("catch up");
        let elapsed = started.elapsed();
        handle.stop();
        elapsed
    };
    let (ran, elapsed) = tokio::join!(runner.run(), waited);
    ran.expect("runner");
    assert_eq!(totals(store, table).await, (EVENTS * (EVENTS - 1) / 2, ACCOUNTS), "{table}: wrong totals");
    elapsed
}

async fn per_event(store: &SqliteStore) -> Duration {
    catch_up(store, Totals::default(), flush_each, "bench_totals").await
}

async fn folded(store: &SqliteStore) -> Duration {
    catch_up(store, FoldedTotals::default(), flush_folded, "bench_folded_totals").await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn lag(store: &SqliteStore, writes: u32, every: Duration) -> Vec<Duration> {
    let checkpoints = SqliteCheckpoints::new(store.clone(), flush_each).await.expect("checkpoints");
    reset(store, Totals::NAME, "bench_totals").await;
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--once") {
        let variant = args.get(at + 1).map_or("", String::as_str);
        if let Err(message) = once(variant) {
            eprintln!("{message}");
            std::process::exit(2);
        }
        return;
    }
    // `cargo bench` passes `--bench`; a number among the arguments is the count of rounds.
    let rounds = args.iter().skip(1).find_map(|arg| arg.parse::<usize>().ok()).unwrap_or(5).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("bench.db")).expect("open");
        fill(&store).await;
        let filter = filter();
        let (mut bare, mut each, mut fold) = (Vec::new(), Vec::new(), Vec::new());
        let (mut each_ratio, mut fold_ratio) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (seen, bare_time) = bare_read_all(&store, &filter).await;
            assert_eq!(seen, EVENTS);
            let each_time = per_event(&store).await;
            let fold_time = folded(&store).await;
            bare.push(bare_time.as_secs_f64());
            each.push(each_time.as_secs_f64());
            fold.push(fold_time.as_secs_f64());
            each_ratio.push(bare_time.as_secs_f64() / each_time.as_secs_f64());
            fold_ratio.push(bare_time.as_secs_f64() / fold_time.as_secs_f64());
        }
        let rate = |seconds: f64| EVENTS as f64 / seconds;
        let (bare, each, fold) = (median(&mut bare), median(&mut each), median(&mut fold));
        println!("catch-up of {EVENTS} events over {ACCOUNTS} accounts, batches of {BATCH}, medians of {rounds} rounds:");
        println!("  bare read_all                   {:>9.0} ev/s ({:.1} ms)", rate(bare), bare * 1e3);
        println!(
            "  runner, one upsert per event    {:>9.0} ev/s ({:.1} ms); ratio {:.2}x (goal >= 0.8x)",
            rate(each),
            each * 1e3,
            median(&mut each_ratio)
        );
        println!(
            "  runner, folded per account      {:>9.0} ev/s ({:.1} ms); ratio {:.2}x",
            rate(fold),
            fold * 1e3,
            median(&mut fold_ratio)
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

/// Runs `future` on this thread to its end, parking while it waits.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// The bare loop once (callgrind counts inside this function only).
#[inline(never)]
fn run_bare(store: &SqliteStore) -> u64 {
    block_on(bare_read_all(store, &filter())).0
}

/// The per-event runner once.
#[inline(never)]
fn run_per_event(store: &SqliteStore) -> Duration {
    block_on(per_event(store))
}

/// The folded runner once.
#[inline(never)]
fn run_folded(store: &SqliteStore) -> Duration {
    block_on(folded(store))
}

/// Builds the data, then runs one variant once, outside any Tokio runtime.
fn once(variant: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    let store = SqliteStore::open(dir.path().join("bench.db")).map_err(|error: StoreError| error.to_string())?;
    block_on(fill(&store));
    match variant {
        "bare" => assert_eq!(run_bare(&store), EVENTS),
        "per-event" => _ = run_per_event(&store),
        "folded" => _ = run_folded(&store),
        _ => return Err(format!("unknown variant `{variant}` (bare, per-event, folded)")),
    }
    Ok(())
}

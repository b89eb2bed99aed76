//! Rebuilds through the facade, as a user runs them: reset and replay with progress, a crash
//! mid-rebuild that the next run resumes (the reset is part of the checkpoint record, and on
//! SQLite part of the read model's transaction), and handlers that publish their side effects
//! once whatever is replayed.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use es::prelude::*;
use es::projection::{
    CheckpointStore, InMemoryCheckpointStore, ProjectionError, ProjectionOptions, ProjectionRunner, RebuildLease,
    RebuildProgress, Rebuilt, WhenHeld, is_replay,
};
use es::store::Lease;
use es::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};

/// Money was paid in.
#[event(version = 1)]
pub struct Paid {
    pub amount: u64,
}

const WAIT: Duration = Duration::from_secs(10);

fn paid(amount: u64) -> NewEvent {
    NewEvent::new(RawEvent::new("Paid", 1, format!(r#"{{"amount":{amount}}}"#)))
}

fn account(n: u64) -> StreamId {
    StreamId::new("Account", (n % 3).to_string())
}

async fn pay<S: EventStore>(store: &S, amounts: std::ops::RangeInclusive<u64>) {
    for amount in amounts {
        store.append(&account(amount), ExpectedVersion::Any, vec![paid(amount)]).await.unwrap();
    }
}

fn options(batch_size: usize) -> ProjectionOptions {
    ProjectionOptions {
        batch_size,
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        poll_interval: Duration::from_secs(60),
        ..ProjectionOptions::default()
    }
}

/// A sum of payments that sends a receipt for each one, but never for a replay; it fails on a
/// payment of `fail_on`.
#[derive(Projection, Default, Debug)]
#[projection(name = "receipts", events(Paid))]
pub struct Receipts {
    total: u64,
    handled: Vec<u64>,
    sent: Arc<Mutex<Vec<u64>>>,
    fail_on: Option<u64>,
}

impl Handle<Paid> for Receipts {
    fn handle(&mut self, event: &Envelope<Paid>) -> Result<(), HandlerError> {
        if self.fail_on == Some(event.event.amount) {
            return Err("the printer jammed".into());
        }
        self.total += event.event.amount;
        self.handled.push(event.event.amount);
        if !is_replay() {
            self.sent.lock().unwrap().push(event.event.amount);
        }
        Ok(())
    }
}

fn receipts(sent: &Arc<Mutex<Vec<u64>>>) -> Receipts {
    Receipts { sent: Arc::clone(sent), ..Receipts::default() }
}

fn sent(sent: &Arc<Mutex<Vec<u64>>>) -> Vec<u64> {
    let mut all = sent.lock().unwrap().clone();
    all.sort_unstable();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_replays_every_event_into_a_fresh_read_model_and_reports_progress() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let outbox = Arc::default();
    pay(&store, 1..=20).await;
    let runner = ProjectionRunner::new(receipts(&outbox), store.clone(), checkpoints.clone()).with_options(options(6));
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(handle.rebuild_progress(), None);

    let reports: Arc<Mutex<Vec<RebuildProgress>>> = Arc::default();
    let seen = Arc::clone(&reports);
    let runner = ProjectionRunner::new(receipts(&outbox), store.clone(), checkpoints.clone())
        .with_options(options(6))
        .on_progress(move |progress| seen.lock().unwrap().push(progress.clone()));
    let handle = runner.handle();
    let task = tokio::spawn(runner.rebuild());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.rebuilt(), Some(Rebuilt::Requested));
    assert_eq!(handle.read(|r| (r.total, r.handled.len())), (210, 20));

    let reports = reports.lock().unwrap().clone();
    // The reset, then one report a batch: 6 + 6 + 6 + 2.
    let done: Vec<u64> = reports.iter().map(|p| p.done).collect();
    assert_eq!(done, [0, 6, 12, 18, 20], "{reports:?}");
    assert!(reports.iter().all(|p| p.total == 20 && p.projection == "receipts"));
    assert_eq!(reports.iter().filter(|p| p.finished).count(), 1);
    let last = reports.last().unwrap();
    assert!(last.finished && (last.fraction() - 1.0).abs() < f64::EPSILON);
    assert!(last.events_per_second > 0.0, "{last:?}");
    assert_eq!(handle.rebuild_progress().as_ref(), Some(last));
    assert_eq!(handle.status().await.unwrap().rebuild.as_ref(), Some(last));

    // Done: the marker is gone, and the runner follows new events as usual.
    let saved = checkpoints.load("receipts").await.unwrap().unwrap();
    assert_eq!(saved.rebuild, None);
    pay(&store, 21..=21).await;
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.read(|r| r.total), 231);
    handle.stop();
    task.await.unwrap().unwrap();
    // Each receipt sent once: the replayed twenty were not sent again.
    assert_eq!(sent(&outbox), (1..=21).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_publish_nothing_and_events_never_handled_before_publish_once() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let outbox = Arc::default();
    pay(&store, 1..=5).await;
    let runner = ProjectionRunner::new(receipts(&outbox), store.clone(), checkpoints.clone()).with_options(options(2));
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(sent(&outbox), [1, 2, 3, 4, 5]);

    // Appended while no runner ran: the rebuild is their first delivery.
    pay(&store, 6..=8).await;
    // The rebuild stops on 7 (a crash, as far as the checkpoint knows) ...
    let failing = Receipts { fail_on: Some(7), ..receipts(&outbox) };
    let runner = ProjectionRunner::new(failing, store.clone(), checkpoints.clone()).with_options(options(2));
    let error = runner.rebuild().await.unwrap_err();
    assert!(matches!(error.as_ref(), ProjectionError::Handler { event, .. } if event.position.0 == 7), "{error}");
    let marker = checkpoints.load("receipts").await.unwrap().unwrap().rebuild.expect("the rebuild is recorded");
    assert_eq!((marker.done, marker.total), (6, 8));
    assert_eq!(marker.target, store.head().await.unwrap());

    // ... and a plain `run` resumes it rather than the checkpoint from before the reset.
    let runner = ProjectionRunner::new(receipts(&outbox), store.clone(), checkpoints.clone()).with_options(options(2));
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.rebuilt(), Some(Rebuilt::Resumed { done: 6, total: 8 }));
    assert_eq!(handle.read(|r| r.handled.clone()), [7, 8]);
    assert!(handle.rebuild_progress().is_some_and(|p| p.finished && p.done == 8));
    pay(&store, 9..=9).await;
    handle.wait_for_head(WAIT).await.unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
    // Every payment's receipt exactly once: 1..=5 live, 6 in the first rebuild run, 7 and 8 in
    // the resumed one, 9 live after it.
    assert_eq!(sent(&outbox), (1..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn rebuilding_an_empty_store_finishes_at_once() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let runner = ProjectionRunner::new(Receipts::default(), store.clone(), checkpoints.clone());
    let handle = runner.handle();
    let task = tokio::spawn(runner.rebuild());
    // The head is the start: waiting for it returns at once, so wait for the report.
    let progress = tokio::time::timeout(WAIT, async {
        loop {
            match handle.rebuild_progress() {
                Some(progress) => return progress,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!((progress.done, progress.total, progress.finished), (0, 0, true));
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(checkpoints.load("receipts").await.unwrap().unwrap().rebuild, None);
}

/// The lease a rebuild of `receipts` takes.
const RECEIPTS_LEASE: &str = "es.projection.rebuild/receipts";

fn lease(when_held: WhenHeld) -> RebuildLease {
    RebuildLease { ttl: Duration::from_millis(600), when_held, ..RebuildLease::default() }
}

/// Another process's runner, rebuilding `receipts`: it holds the lease (and keeps it).
async fn other_rebuilder(store: &InMemoryStore) -> Lease<InMemoryStore> {
    Lease::acquire(store.clone(), RECEIPTS_LEASE, "other-host", Duration::from_millis(400)).await.unwrap()
}

async fn wait_a_little() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_rebuilds_at_a_time_and_the_next_is_refused_or_waits() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    pay(&store, 1..=10).await;
    let runner = |when_held| {
        ProjectionRunner::new(Receipts::default(), store.clone(), checkpoints.clone())
            .with_options(options(3))
            .with_rebuild_lease(store.clone(), lease(when_held))
    };
    let mut other = other_rebuilder(&store).await;

    // Refused, naming the holder, and nothing was reset.
    let error = runner(WhenHeld::Refuse).rebuild().await.unwrap_err();
    assert!(
        matches!(error.as_ref(), ProjectionError::RebuildLeaseHeld { holder, .. } if holder == "other-host"),
        "{error}"
    );
    assert_eq!(checkpoints.load("receipts").await.unwrap(), None);

    // Waiting: nothing happens while the other renews its lease, the rebuild once it gives it up.
    let waiting = runner(WhenHeld::Wait);
    let handle = waiting.handle();
    let task = tokio::spawn(waiting.rebuild());
    for _ in 0..3 {
        wait_a_little().await;
        other.renew().await.unwrap();
        assert_eq!(handle.rebuild_progress(), None);
    }
    other.release().await.unwrap();
    handle.wait_for_head(WAIT).await.unwrap();
    assert!(handle.rebuild_progress().is_some_and(|p| p.finished && p.done == 10));
    // Done: the lease is free while the runner goes on following.
    let free = Lease::try_acquire(store.clone(), RECEIPTS_LEASE, "third", Duration::from_secs(1)).await.unwrap();
    assert!(free.is_some(), "the finished rebuild gave its lease up");
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_rebuild_is_resumed_only_by_the_runner_holding_the_lease() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    pay(&store, 1..=10).await;
    let runner = |projection, when_held| {
        ProjectionRunner::new(projection, store.clone(), checkpoints.clone())
            .with_options(options(3))
            .with_rebuild_lease(store.clone(), lease(when_held))
    };
    // A rebuild stops on 8, in its third batch: the marker stays, the lease is given up.
    let failing = Receipts { fail_on: Some(8), ..Receipts::default() };
    assert!(runner(failing, WhenHeld::Refuse).rebuild().await.is_err());
    let marker = checkpoints.load("receipts").await.unwrap().unwrap().rebuild.expect("a rebuild under way");
    assert_eq!(marker.done, 6);

    // Another runner took it up meanwhile: resuming needs the lease as well.
    let mut other = other_rebuilder(&store).await;
    let error = runner(Receipts::default(), WhenHeld::Refuse).run().await.unwrap_err();
    assert!(matches!(error.as_ref(), ProjectionError::RebuildLeaseHeld { .. }), "{error}");

    // It gets on with it (one batch, committed under its lease) and gives up the lease: the
    // waiting runner reads the checkpoint again and resumes from there.
    let waiting = runner(Receipts::default(), WhenHeld::Wait);
    let handle = waiting.handle();
    let task = tokio::spawn(waiting.run());
    wait_a_little().await;
    other.renew().await.unwrap();
    let mut saved = checkpoints.load("receipts").await.unwrap().unwrap();
    let page = store.read_all(&saved.checkpoint, &Receipts::filter(), 3).await.unwrap();
    saved.checkpoint = page.next;
    saved.rebuild.as_mut().unwrap().done = 9;
    checkpoints.save(&saved).await.unwrap();
    other.release().await.unwrap();

    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.rebuilt(), Some(Rebuilt::Resumed { done: 9, total: 10 }));
    assert_eq!(handle.read(|r| r.handled.clone()), [10]);
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(checkpoints.load("receipts").await.unwrap().unwrap().rebuild, None);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use es::SqliteCheckpoints;
    use es_sqlite::rusqlite::Transaction;

    /// Totals per account in the store's file, written with the checkpoint.
    #[derive(Projection, Default, Debug)]
    #[projection(name = "totals", events(Paid))]
    pub struct Totals {
        pending: Vec<(String, u64)>,
        fail_on: Option<u64>,
    }

    impl Handle<Paid> for Totals {
        fn handle(&mut self, event: &Envelope<Paid>) -> Result<(), HandlerError> {
            if self.fail_on == Some(event.event.amount) {
                return Err("refused".into());
            }
            self.pending.push((event.stream.id().to_owned(), event.event.amount));
            Ok(())
        }
    }

    fn flush(tx: &Transaction<'_>, totals: &mut Totals) -> Result<(), HandlerError> {
        tx.execute_batch("CREATE TABLE IF NOT EXISTS totals (account TEXT PRIMARY KEY, total INTEGER NOT NULL, payments INTEGER NOT NULL)")?;
        for (account, amount) in totals.pending.drain(..) {
            tx.execute(
                "INSERT INTO totals VALUES (?1, ?2, 1)
                 ON CONFLICT (account) DO UPDATE SET total = total + excluded.total, payments = payments + 1",
                (account, i64::try_from(amount)?),
            )?;
        }
        Ok(())
    }

    fn reset(tx: &Transaction<'_>) -> Result<(), HandlerError> {
        tx.execute_batch("DROP TABLE IF EXISTS totals")?;
        Ok(())
    }

    async fn checkpoints(
        store: &es::SqliteStore,
    ) -> SqliteCheckpoints<fn(&Transaction<'_>, &mut Totals) -> Result<(), HandlerError>> {
        let flush: fn(&Transaction<'_>, &mut Totals) -> Result<(), HandlerError> = flush;
        SqliteCheckpoints::new(store.clone(), flush).await.unwrap().with_reset(reset)
    }

    async fn table(store: &es::SqliteStore) -> (i64, i64) {
        type Error = Box<dyn std::error::Error + Send + Sync>;
        store
            .read(|tx| {
                let row = tx.query_row(
                    "SELECT COALESCE(SUM(total), 0), COALESCE(SUM(payments), 0) FROM totals",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                Ok::<_, Error>(row)
            })
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite_the_reset_and_every_batch_commit_with_the_marker_so_a_crash_resumes_the_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.db");
        let store = es::SqliteStore::open(&path).unwrap();
        pay(&store, 1..=10).await;
        let runner =
            ProjectionRunner::new(Totals::default(), store.clone(), checkpoints(&store).await).with_options(options(3));
        let handle = runner.handle();
        let task = tokio::spawn(runner.run());
        handle.wait_for_head(WAIT).await.unwrap();
        handle.stop();
        task.await.unwrap().unwrap();
        assert_eq!(table(&store).await, (55, 10));

        // A rebuild that fails on 8, in its third batch [7 8 9]: the tables hold the reset
        // and the two committed batches, never the rows from before plus a replay.
        let failing = Totals { fail_on: Some(8), ..Totals::default() };
        let runner = ProjectionRunner::new(failing, store.clone(), checkpoints(&store).await).with_options(options(3));
        assert!(runner.rebuild().await.is_err());
        assert_eq!(table(&store).await, (21, 6));

        // A new process on the same file resumes the rebuild and ends with every payment once.
        drop(store);
        let store = es::SqliteStore::open(&path).unwrap();
        let runner =
            ProjectionRunner::new(Totals::default(), store.clone(), checkpoints(&store).await).with_options(options(3));
        let handle = runner.handle();
        let task = tokio::spawn(runner.run());
        handle.wait_for_head(WAIT).await.unwrap();
        assert_eq!(handle.rebuilt(), Some(Rebuilt::Resumed { done: 6, total: 10 }));
        handle.stop();
        task.await.unwrap().unwrap();
        assert_eq!(table(&store).await, (55, 10));
        let checkpoints = checkpoints(&store).await;
        let saved = es::projection::CommitBatch::<Totals>::load(&checkpoints, "totals").await.unwrap().unwrap();
        assert_eq!(saved.rebuild, None);
    }
}

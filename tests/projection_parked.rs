//! Parked events through the facade: set aside under `OnFailure::Park`, stored with the
//! checkpoint so that a restart still lists them, then retried (handled once, in the read
//! model's transaction on SQLite) or discarded by an explicit call.

#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use es::prelude::*;
use es::projection::{
    CheckpointStore, InMemoryCheckpointStore, OnFailure, ParkedRequestError, ProjectionOptions, ProjectionRunner,
};
use es::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};

/// Money was paid in.
#[event(version = 1)]
pub struct Paid {
    pub amount: u64,
}

const WAIT: Duration = Duration::from_secs(10);

async fn pay<S: EventStore>(store: &S, amounts: &[u64]) {
    for amount in amounts {
        let event = NewEvent::new(RawEvent::new("Paid", 1, format!(r#"{{"amount":{amount}}}"#)));
        store.append(&StreamId::new("Account", "a"), ExpectedVersion::Any, vec![event]).await.unwrap();
    }
}

fn parking() -> ProjectionOptions {
    ProjectionOptions {
        batch_size: 2,
        on_failure: OnFailure::Park,
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        },
        poll_interval: Duration::from_secs(60),
        ..ProjectionOptions::default()
    }
}

/// Refuses payments of 13 while `broken` holds.
#[derive(Projection, Debug)]
#[projection(name = "payments", events(Paid))]
pub struct Payments {
    broken: Arc<AtomicBool>,
    handled: Vec<u64>,
    pending: Vec<u64>,
}

impl Payments {
    fn new(broken: &Arc<AtomicBool>) -> Self {
        Self { broken: Arc::clone(broken), handled: Vec::new(), pending: Vec::new() }
    }
}

impl Handle<Paid> for Payments {
    fn handle(&mut self, event: &Envelope<Paid>) -> Result<(), HandlerError> {
        if event.event.amount == 13 && self.broken.load(Ordering::SeqCst) {
            return Err("the ledger is locked".into());
        }
        self.handled.push(event.event.amount);
        self.pending.push(event.event.amount);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_outlive_the_runner_and_a_retry_handles_them_once() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let broken = Arc::new(AtomicBool::new(true));
    pay(&store, &[1, 13, 2, 13, 3]).await;
    let runner =
        ProjectionRunner::new(Payments::new(&broken), store.clone(), checkpoints.clone()).with_options(parking());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(handle.read(|p| p.handled.clone()), [1, 2, 3]);
    let stored = checkpoints.load("payments").await.unwrap().unwrap();
    let positions: Vec<u64> = stored.parked.iter().map(|p| p.event.position.0).collect();
    assert_eq!(positions, [2, 4]);

    // A new runner (a restart) lists them before it handles anything new.
    let runner =
        ProjectionRunner::new(Payments::new(&broken), store.clone(), checkpoints.clone()).with_options(parking());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.parked().len(), 2);
    assert_eq!(handle.status().await.unwrap().parked, 2);

    // Retried while still broken: parked again, with the new attempts.
    handle.retry_parked(WAIT).await.unwrap();
    let parked = handle.parked();
    assert_eq!((parked.len(), parked[0].attempts), (2, 2));
    assert!(parked[0].error.contains("locked"), "{parked:?}");

    // Fixed, retried: handled once each, and gone from the stored list.
    broken.store(false, Ordering::SeqCst);
    handle.retry_parked(WAIT).await.unwrap();
    assert!(handle.parked().is_empty());
    assert_eq!(handle.read(|p| p.handled.clone()), [13, 13]);
    assert!(checkpoints.load("payments").await.unwrap().unwrap().parked.is_empty());
    handle.stop();
    task.await.unwrap().unwrap();
    // Only a running runner acts on them.
    let stopped = handle.discard_parked(WAIT).await;
    assert!(matches!(stopped, Err(ParkedRequestError::NotRunning { state: "stopped", .. })), "{stopped:?}");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_parked_events_survive_a_restart_and_are_retried_or_discarded() {
    use es_sqlite::rusqlite::Transaction;
    type Flush = fn(&Transaction<'_>, &mut Payments) -> Result<(), HandlerError>;
    fn flush(tx: &Transaction<'_>, payments: &mut Payments) -> Result<(), HandlerError> {
        tx.execute_batch("CREATE TABLE IF NOT EXISTS paid (amount INTEGER NOT NULL)")?;
        for amount in payments.pending.drain(..) {
            tx.execute("INSERT INTO paid VALUES (?1)", [i64::try_from(amount)?])?;
        }
        Ok(())
    }
    async fn paid(store: &es::SqliteStore) -> Vec<i64> {
        type Error = Box<dyn std::error::Error + Send + Sync>;
        store
            .read(|tx| {
                let mut query = tx.prepare("SELECT amount FROM paid ORDER BY rowid")?;
                let rows = query.query_map([], |row| row.get(0))?;
                Ok::<_, Error>(rows.collect::<Result<Vec<i64>, _>>()?)
            })
            .await
            .unwrap()
    }
    async fn start(
        store: &es::SqliteStore,
        broken: &Arc<AtomicBool>,
    ) -> (
        es::projection::ProjectionHandle<Payments, es::SqliteStore>,
        tokio::task::JoinHandle<Result<(), Arc<es::projection::ProjectionError>>>,
    ) {
        let checkpoints = es::SqliteCheckpoints::new(store.clone(), flush as Flush).await.unwrap();
        let runner = ProjectionRunner::new(Payments::new(broken), store.clone(), checkpoints).with_options(parking());
        let handle = runner.handle();
        let task = tokio::spawn(runner.run());
        handle.wait_for_head(WAIT).await.unwrap();
        (handle, task)
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = es::SqliteStore::open(&path).unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    pay(&store, &[1, 13, 2]).await;
    let (handle, task) = start(&store, &broken).await;
    assert_eq!(handle.parked().len(), 1);
    handle.stop();
    task.await.unwrap().unwrap();

    // Another process on the same file: the parked event is still there; a retry writes it
    // to the table with the list, once.
    drop(store);
    let store = es::SqliteStore::open(&path).unwrap();
    broken.store(false, Ordering::SeqCst);
    let (handle, task) = start(&store, &broken).await;
    assert_eq!(handle.parked().iter().map(|p| p.event.position.0).collect::<Vec<_>>(), [2]);
    handle.retry_parked(WAIT).await.unwrap();
    assert_eq!(paid(&store).await, [1, 2, 13]);

    // Another one parked, then discarded for good: a restart no longer lists it.
    broken.store(true, Ordering::SeqCst);
    pay(&store, &[13]).await;
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.parked().len(), 1);
    handle.discard_parked(WAIT).await.unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
    let (handle, task) = start(&store, &broken).await;
    assert!(handle.parked().is_empty());
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(paid(&store).await, [1, 2, 13]);
}

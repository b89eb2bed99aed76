//! SQL of the caller's own in the store's transactions: read models in the same file change
//! atomically with the events they come from. And the bounded pool of read connections.

use std::sync::mpsc;
use std::time::Duration;

use es_core::store::{AppendOutcome, BackendErrorKind};
use es_core::{EventStore, ExpectedVersion, NewEvent, RawEvent, StoreError, StoredEvent, StreamId, Version};
use es_sqlite::rusqlite::{self, OptionalExtension, Transaction, params};
use es_sqlite::{SqliteOptions, SqliteStore, backend_error};

fn account() -> StreamId {
    StreamId::new("Account", "1")
}

fn deposited(cents: i64) -> NewEvent {
    NewEvent::new(RawEvent::new("Deposited", 1, format!(r#"{{"cents":{cents}}}"#)))
}

/// A read model's error: the store's, or one of its own.
#[derive(Debug)]
enum ViewError {
    Store(StoreError),
    Refused(&'static str),
}

impl From<StoreError> for ViewError {
    fn from(error: StoreError) -> Self {
        ViewError::Store(error)
    }
}

fn stores() -> (tempfile::TempDir, Vec<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let file = SqliteStore::open(dir.path().join("events.db")).unwrap();
    (dir, vec![file, SqliteStore::open_in_memory().unwrap()])
}

async fn create_view(store: &SqliteStore) {
    store
        .transaction(|tx: &Transaction<'_>| {
            tx.execute_batch("CREATE TABLE deposits (position INTEGER PRIMARY KEY, cents INTEGER NOT NULL)")
                .map_err(|error| backend_error("cannot create the deposits view", error))
        })
        .await
        .unwrap();
}

fn view_rows(tx: &Transaction<'_>) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut statement = tx.prepare("SELECT position, cents FROM deposits ORDER BY position")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// Rows of the view, read the way a query handler would.
async fn view(store: &SqliteStore) -> Vec<(i64, i64)> {
    store
        .read(|tx: &Transaction<'_>| view_rows(tx).map_err(|error| backend_error("cannot read the view", error)))
        .await
        .unwrap()
}

/// Writes one view row per committed event, at its position.
fn project(tx: &Transaction<'_>, committed: &[StoredEvent]) -> Result<usize, ViewError> {
    for event in committed {
        let payload: serde_json::Value =
            serde_json::from_str(&event.event.payload).map_err(|_| ViewError::Refused("not JSON"))?;
        let cents = payload["cents"].as_i64().ok_or(ViewError::Refused("no cents"))?;
        let position = i64::try_from(event.position.0).map_err(|_| ViewError::Refused("position"))?;
        tx.execute("INSERT INTO deposits (position, cents) VALUES (?1, ?2)", params![position, cents])
            .map_err(|error| ViewError::Store(backend_error("cannot update the deposits view", error)))?;
    }
    Ok(committed.len())
}

/// The hook's rows commit with the events; a retry writes nothing and runs no hook.
#[tokio::test]
async fn an_append_hook_writes_in_the_appends_transaction() {
    let (_dir, stores) = stores();
    for store in stores {
        create_view(&store).await;
        let (appended, rows) = store
            .append_with(&account(), ExpectedVersion::NoStream, vec![deposited(5), deposited(7)], project)
            .await
            .unwrap();
        assert_eq!(appended.outcome, AppendOutcome::Written);
        assert_eq!(rows, Some(2));
        let positions: Vec<i64> = appended.events.iter().map(|e| i64::try_from(e.position.0).unwrap()).collect();
        assert_eq!(view(&store).await, [(positions[0], 5), (positions[1], 7)]);

        // The same append again: already stored, so the hook does not run a second time.
        let batch: Vec<NewEvent> = appended
            .events
            .iter()
            .map(|e| NewEvent { event_id: e.event_id, event: e.event.clone(), metadata: e.metadata.clone() })
            .collect();
        let (again, rows) = store.append_with(&account(), ExpectedVersion::NoStream, batch, project).await.unwrap();
        assert_eq!((again.outcome, rows), (AppendOutcome::AlreadyStored, None));
        assert_eq!(view(&store).await.len(), 2);
    }
}

/// A hook that fails leaves neither the events nor its own rows; so does a conflict, before
/// the hook runs.
#[tokio::test]
async fn a_failing_hook_leaves_no_event_and_no_row() {
    let (_dir, stores) = stores();
    for store in stores {
        create_view(&store).await;
        let batch = vec![deposited(5), NewEvent::new(RawEvent::new("Deposited", 1, r#"{"no":"cents"}"#))];
        let ids: Vec<_> = batch.iter().map(|e| e.event_id).collect();
        // The first event's row is written, then the hook fails on the second.
        let result = store.append_with(&account(), ExpectedVersion::NoStream, batch, project).await;
        assert!(matches!(result, Err(ViewError::Refused("no cents"))), "{result:?}");
        assert_eq!(store.stream_version(&account()).await.unwrap(), Version(0));
        for id in ids {
            assert!(store.find_event(id).await.unwrap().is_none());
        }
        assert!(view(&store).await.is_empty());

        store.append(&account(), ExpectedVersion::NoStream, vec![deposited(1)]).await.unwrap();
        let conflict = store.append_with(&account(), ExpectedVersion::NoStream, vec![deposited(2)], project).await;
        assert!(matches!(conflict, Err(ViewError::Store(ref error)) if error.is_conflict()), "{conflict:?}");
        assert!(view(&store).await.is_empty());
    }
}

/// `transaction` commits what its closure did when it returns `Ok`, and nothing when it fails.
#[tokio::test]
async fn a_transaction_commits_all_or_nothing() {
    let (_dir, stores) = stores();
    for store in stores {
        create_view(&store).await;
        let failed: Result<(), ViewError> = store
            .transaction(|tx: &Transaction<'_>| {
                tx.execute("INSERT INTO deposits VALUES (1, 10)", [])
                    .map_err(|error| ViewError::Store(backend_error("cannot insert", error)))?;
                Err(ViewError::Refused("changed my mind"))
            })
            .await;
        assert!(matches!(failed, Err(ViewError::Refused(_))));
        assert!(view(&store).await.is_empty());

        fn insert_and_count(tx: &Transaction<'_>) -> rusqlite::Result<i64> {
            tx.execute("INSERT INTO deposits VALUES (1, 10)", [])?;
            tx.query_row("SELECT COUNT(*) FROM deposits", [], |row| row.get(0))
        }
        let count = store
            .transaction(|tx: &Transaction<'_>| {
                insert_and_count(tx).map_err(|error| backend_error("cannot insert", error))
            })
            .await
            .unwrap();
        assert_eq!(count, 1);
        assert_eq!(view(&store).await, [(1, 10)]);
    }
}

/// `read` on a file is query-only: a write there is a `ReadOnly` backend error.
#[tokio::test]
async fn reads_cannot_write() {
    let (_dir, stores) = stores();
    let store = &stores[0];
    create_view(store).await;
    let error = store
        .read(|tx: &Transaction<'_>| {
            tx.execute("INSERT INTO deposits VALUES (1, 10)", []).map_err(|error| backend_error("cannot insert", error))
        })
        .await
        .unwrap_err();
    assert!(matches!(&error, StoreError::Backend(backend) if backend.kind() == BackendErrorKind::ReadOnly), "{error}");
    let found = store
        .read(|tx: &Transaction<'_>| {
            tx.query_row("SELECT cents FROM deposits", [], |row| row.get::<_, i64>(0))
                .optional()
                .map_err(|error| backend_error("cannot read", error))
        })
        .await
        .unwrap();
    assert_eq!(found, None);
}

/// With every read connection in use, a read waits the pool timeout and fails with a transient
/// `PoolTimeout`; once one is given back, reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waits_a_bounded_time_for_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::default().max_readers(1).pool_timeout(Duration::from_millis(50));
    let store = SqliteStore::open_with(dir.path().join("events.db"), options).unwrap();
    store.append(&account(), ExpectedVersion::NoStream, vec![deposited(1)]).await.unwrap();

    let (started, is_started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let holder = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .read(move |_: &Transaction<'_>| {
                    let _ = started.send(());
                    let _ = released.recv_timeout(Duration::from_secs(10));
                    Ok::<_, StoreError>(())
                })
                .await
        })
    };
    is_started.recv_timeout(Duration::from_secs(10)).unwrap();
    let error = store.read_stream(&account(), Version(0), 10).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Backend(backend) if backend.kind() == BackendErrorKind::PoolTimeout),
        "{error}"
    );
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("max_readers"), "{error}");

    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
    assert_eq!(store.read_stream(&account(), Version(0), 10).await.unwrap().len(), 1);

    // Many reads at once share two connections in turn (waiting as long as it takes here).
    let shared = SqliteStore::open_with(dir.path().join("events.db"), SqliteOptions::default().max_readers(2)).unwrap();
    let reads: Vec<_> = (0..16)
        .map(|_| {
            let store = shared.clone();
            tokio::spawn(async move { store.stream_version(&account()).await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), Version(1));
    }
}

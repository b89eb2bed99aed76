//! Exactly-once projections into the same SQLite file: the changes a batch's handlers kept and
//! the projection's checkpoint are written in one transaction.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, Transaction};

use es_core::projection::{
    CheckpointStoreError, CommitBatch, HandlerError, ParkedEvent, ProjectionIdentity, RebuildMarker, SavedCheckpoint,
};
use es_core::store::{Checkpoint, StoreError};

use crate::append;
use crate::error::Context;
use crate::store::SqliteStore;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS es_projection_checkpoints (
    name TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    rebuild TEXT,
    parked TEXT
)";

/// Columns added after the table's first version, added to a table that lacks them.
const ADDED_COLUMNS: [(&str, &str); 2] = [
    ("rebuild", "ALTER TABLE es_projection_checkpoints ADD COLUMN rebuild TEXT"),
    ("parked", "ALTER TABLE es_projection_checkpoints ADD COLUMN parked TEXT"),
];

/// Empties a read model's tables when a rebuild starts.
type Reset = dyn Fn(&Transaction<'_>) -> Result<(), HandlerError> + Send + Sync;

/// Keeps projection checkpoints in the store's own file (table `es_projection_checkpoints`) and
/// commits each batch **exactly once**: `flush` writes what the batch's handlers kept in the
/// projection into the read model's tables, in the transaction that saves the checkpoint.
///
/// Handlers do not write to the database themselves: they record their changes in the
/// projection (a list of rows to upsert, say), and `flush` writes and clears them. A crash, a
/// failing `flush` or a handler that fails mid-batch then leaves neither the batch's changes
/// nor its checkpoint, and the next run starts again after the last committed batch: nothing
/// is lost and nothing repeated. Start that run with a projection value holding no changes.
///
/// A rebuild (`ProjectionRunner::rebuild`, or a changed identity) starts from the first event:
/// give the function that empties the read model's tables with
/// [`with_reset`](SqliteCheckpoints::with_reset), and it runs in the transaction that stores the
/// rebuild's first checkpoint. A crash then leaves either the old tables with the old
/// checkpoint, or the emptied tables with the rebuild's marker, which the next run resumes.
///
/// # Durability
///
/// Appends wait for the disk (`synchronous = FULL`). A batch's commit does not, in WAL mode
/// (the mode a file store runs in): it is written to the log like any other, and made durable
/// by the next commit that waits for the disk, or by SQLite's next checkpoint of the log. What
/// reaches the disk of an SQLite log is always a prefix of its commits, so a power loss or an
/// operating-system crash can undo only the last batches, each with its own checkpoint, never
/// an event nor a batch without the batches after it; the next run handles those events
/// again, once. A crash of the process alone loses nothing. This saves a wait for the disk per
/// batch, which is most of a catch-up's time on a disk with slow flushes. Without WAL (a file
/// system that cannot share memory) every commit waits for the disk, as it does after
/// [`SqliteCheckpoints::synced`]; so does the commit that starts a rebuild.
pub struct SqliteCheckpoints<F> {
    store: SqliteStore,
    flush: Arc<F>,
    reset: Option<Arc<Reset>>,
    /// The writer's sync level to restore after a batch's commit that skips its own sync (WAL
    /// mode, a level above NORMAL); `None`: every commit waits for the disk.
    relaxed: Option<i64>,
}

impl<F> std::fmt::Debug for SqliteCheckpoints<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheckpoints")
            .field("store", &self.store)
            .field("synced", &self.relaxed.is_none())
            .finish_non_exhaustive()
    }
}

/// A checkpoint store error that a transaction can also fail with.
struct Failed(CheckpointStoreError);

impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Self {
        Failed(CheckpointStoreError::because("the SQLite store failed", error))
    }
}

impl<F> SqliteCheckpoints<F> {
    /// Checkpoints in `store`'s file, creating their table if needed; `flush` writes a batch's
    /// changes, `fn(&Transaction, &mut Projection) -> Result<(), HandlerError>`.
    ///
    /// # Errors
    /// Backend errors creating the table.
    pub async fn new(store: SqliteStore, flush: F) -> Result<Self, StoreError> {
        store
            .transaction(|tx| {
                tx.execute_batch(CREATE).context("cannot create the projection checkpoint table")?;
                for (column, add) in ADDED_COLUMNS {
                    let present: bool = tx
                        .query_row(
                            "SELECT COUNT(*) > 0 FROM pragma_table_info('es_projection_checkpoints') WHERE name = ?1",
                            [column],
                            |row| row.get(0),
                        )
                        .context("cannot read the projection checkpoint table's columns")?;
                    if !present {
                        tx.execute_batch(add).context("cannot add a column to the projection checkpoint table")?;
                    }
                }
                Ok::<(), StoreError>(())
            })
            .await?;
        // Neither changes later: SQLite refuses both pragmas inside a transaction, and only
        // these commits use the writer outside one (putting the level back).
        let relaxed = store
            .on_writer(|connection| {
                let mode: String = connection
                    .pragma_query_value(None, "journal_mode", |row| row.get(0))
                    .context("cannot read the journal mode")?;
                let level: i64 = connection
                    .pragma_query_value(None, "synchronous", |row| row.get(0))
                    .context("cannot read the sync level")?;
                // 1 is NORMAL; 2 (FULL) and 3 (EXTRA) wait for the disk at each commit.
                Ok::<_, StoreError>((mode.eq_ignore_ascii_case("wal") && level > 1).then_some(level))
            })
            .await?;
        Ok(Self { store, flush: Arc::new(flush), reset: None, relaxed })
    }

    /// The same checkpoints, with every batch's commit waiting for the disk as appends do: for
    /// a read model whose last batches must survive a power loss as they are (rather than be
    /// handled again by the next run). See [Durability](SqliteCheckpoints#durability).
    #[must_use]
    pub fn synced(mut self) -> Self {
        self.relaxed = None;
        self
    }

    /// The same checkpoints, emptying the read model with `reset` when a rebuild starts, in
    /// the transaction that stores the rebuild's first checkpoint (before `flush`, which then
    /// writes what the fresh projection value holds: usually nothing).
    ///
    /// ```
    /// use es_core::projection::HandlerError;
    /// use es_sqlite::{SqliteCheckpoints, SqliteStore};
    /// use rusqlite::Transaction;
    ///
    /// /// The rows the batch's handlers kept.
    /// pub struct Balances {
    ///     pending: Vec<(String, i64)>,
    /// }
    ///
    /// fn flush(tx: &Transaction<'_>, balances: &mut Balances) -> Result<(), HandlerError> {
    ///     for (account, amount) in balances.pending.drain(..) {
    ///         tx.execute(
    ///             "INSERT INTO balances VALUES (?1, ?2) ON CONFLICT (account) DO UPDATE SET total = total + ?2",
    ///             (account, amount),
    ///         )?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// fn reset(tx: &Transaction<'_>) -> Result<(), HandlerError> {
    ///     tx.execute_batch("DELETE FROM balances")?;
    ///     Ok(())
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// # runtime.block_on(async {
    /// let store = SqliteStore::open_in_memory()?;
    /// let checkpoints = SqliteCheckpoints::new(store, flush).await?.with_reset(reset);
    /// # let _ = checkpoints;
    /// # Ok::<_, es_core::StoreError>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_reset(
        mut self,
        reset: impl Fn(&Transaction<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.reset = Some(Arc::new(reset));
        self
    }
}

fn read_saved(tx: &Transaction<'_>, name: &str) -> Result<Option<SavedCheckpoint>, Failed> {
    type Row = (i64, String, String, Option<String>, Option<String>);
    let row: Option<Row> = tx
        .query_row(
            "SELECT version, fingerprint, checkpoint, rebuild, parked FROM es_projection_checkpoints WHERE name = ?1",
            [name],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
        )
        .optional()
        .context("cannot read a projection checkpoint")?;
    let Some((version, fingerprint, checkpoint, rebuild, parked)) = row else { return Ok(None) };
    let version = u32::try_from(version)
        .map_err(|_| Failed(CheckpointStoreError::new(format!("projection `{name}` has version {version} stored"))))?;
    let checkpoint: Checkpoint = checkpoint.parse().map_err(|error| {
        Failed(CheckpointStoreError::because(format!("projection `{name}`'s stored checkpoint"), error))
    })?;
    let rebuild: Option<RebuildMarker> =
        rebuild.map(|text| serde_json::from_str(&text)).transpose().map_err(|error| {
            Failed(CheckpointStoreError::because(format!("projection `{name}`'s stored rebuild"), error))
        })?;
    let parked: Vec<ParkedEvent> = parked
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|error| {
            Failed(CheckpointStoreError::because(format!("projection `{name}`'s stored parked events"), error))
        })?
        .unwrap_or_default();
    let identity = ProjectionIdentity::new(name, version, fingerprint);
    Ok(Some(SavedCheckpoint { rebuild, parked, ..SavedCheckpoint::new(identity, checkpoint) }))
}

/// Writes the batch through `flush`, then `saved`, in `tx`.
fn write_batch<P, F>(tx: &Transaction<'_>, flush: &F, projection: &mut P, saved: &SavedCheckpoint) -> Result<(), Failed>
where
    F: Fn(&Transaction<'_>, &mut P) -> Result<(), HandlerError>,
{
    flush(tx, projection).map_err(|error| {
        let message = format!("writing the batch of projection `{}` failed", saved.identity.name);
        Failed(CheckpointStoreError::because(message, error))
    })?;
    let unwritable = |error| Failed(CheckpointStoreError::because("cannot write a projection checkpoint", error));
    let rebuild = saved.rebuild.as_ref().map(serde_json::to_string).transpose().map_err(unwritable)?;
    let parked =
        (!saved.parked.is_empty()).then(|| serde_json::to_string(&saved.parked)).transpose().map_err(unwritable)?;
    tx.execute(
        "INSERT INTO es_projection_checkpoints (name, version, fingerprint, checkpoint, rebuild, parked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, fingerprint = excluded.fingerprint,
         checkpoint = excluded.checkpoint, rebuild = excluded.rebuild, parked = excluded.parked",
        rusqlite::params![
            saved.identity.name,
            i64::from(saved.identity.version),
            saved.identity.fingerprint,
            saved.checkpoint.to_string(),
            rebuild,
            parked
        ],
    )
    .context("cannot save a projection checkpoint")?;
    Ok(())
}

/// Runs `work` in a transaction on the writer (in WAL mode) that does not wait for the disk at
/// its commit (`synchronous = NORMAL` for this one commit); the connection's `level` is put
/// back before it returns, also when `work` panics.
fn commit_unsynced<T>(
    connection: &mut Connection,
    level: i64,
    work: impl FnOnce(&Transaction<'_>) -> Result<T, Failed>,
) -> Result<T, Failed> {
    connection.pragma_update(None, "synchronous", 1).context("cannot set the sync level")?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| append::transaction(connection, work)));
    let restored = connection.pragma_update(None, "synchronous", level).context("cannot restore the sync level");
    match outcome {
        Ok(result) => {
            restored?;
            result
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

impl<P, F> CommitBatch<P> for SqliteCheckpoints<F>
where
    P: Send + 'static,
    F: Fn(&Transaction<'_>, &mut P) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    async fn load(&self, name: &str) -> Result<Option<SavedCheckpoint>, CheckpointStoreError> {
        let name = name.to_owned();
        self.store.transaction(move |tx| read_saved(tx, &name)).await.map_err(|Failed(error)| error)
    }

    async fn commit(&self, projection: &Arc<Mutex<P>>, saved: &SavedCheckpoint) -> Result<(), CheckpointStoreError> {
        let (projection, flush, saved) = (Arc::clone(projection), Arc::clone(&self.flush), saved.clone());
        let batch = move |tx: &Transaction<'_>| {
            let mut projection = projection.lock().unwrap_or_else(PoisonError::into_inner);
            write_batch(tx, flush.as_ref(), &mut projection, &saved)
        };
        let result = match self.relaxed {
            None => self.store.transaction(batch).await,
            Some(level) => self.store.on_writer(move |connection| commit_unsynced(connection, level, batch)).await,
        };
        result.map_err(|Failed(error)| error)
    }

    async fn reset(&self, projection: &Arc<Mutex<P>>, saved: &SavedCheckpoint) -> Result<(), CheckpointStoreError> {
        let (projection, flush, saved) = (Arc::clone(projection), Arc::clone(&self.flush), saved.clone());
        let reset = self.reset.clone();
        if reset.is_none() {
            tracing::warn!(
                projection = %saved.identity.name,
                "rebuilding without `SqliteCheckpoints::with_reset`: the read model's tables keep their rows"
            );
        }
        self.store
            .transaction(move |tx| {
                if let Some(reset) = &reset {
                    reset(tx).map_err(|error| {
                        let message = format!("emptying the read model of projection `{}` failed", saved.identity.name);
                        Failed(CheckpointStoreError::because(message, error))
                    })?;
                }
                let mut projection = projection.lock().unwrap_or_else(PoisonError::into_inner);
                write_batch(tx, flush.as_ref(), &mut projection, &saved)
            })
            .await
            .map_err(|Failed(error)| error)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use es_core::projection::{CommitBatch, HandlerError, ProjectionIdentity, SavedCheckpoint};
    use es_core::store::Checkpoint;
    use rusqlite::Transaction;

    use super::SqliteCheckpoints;
    use crate::store::SqliteStore;

    /// The writer's `synchronous` level (2: FULL).
    async fn sync_level(store: &SqliteStore) -> i64 {
        store
            .on_writer(|connection| {
                connection
                    .pragma_query_value(None, "synchronous", |row| row.get(0))
                    .map_err(|error| crate::backend_error("cannot read the sync level", error))
            })
            .await
            .unwrap()
    }

    fn flush(tx: &Transaction<'_>, fail: &mut bool) -> Result<(), HandlerError> {
        tx.execute_batch("CREATE TABLE IF NOT EXISTS batches (n INTEGER)")?;
        tx.execute("INSERT INTO batches (n) VALUES (1)", [])?;
        if *fail { Err("refused".into()) } else { Ok(()) }
    }

    #[tokio::test]
    async fn a_batch_commits_without_its_own_sync_and_the_writer_keeps_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("p.db")).unwrap();
        assert_eq!(sync_level(&store).await, 2);
        let saved = SavedCheckpoint::new(ProjectionIdentity::new("p", 1, "f"), Checkpoint::START);
        for synced in [false, true] {
            let mut checkpoints = SqliteCheckpoints::new(store.clone(), flush).await.unwrap();
            if synced {
                checkpoints = checkpoints.synced();
            }
            let projection = Arc::new(Mutex::new(false));
            checkpoints.commit(&projection, &saved).await.unwrap();
            assert_eq!(sync_level(&store).await, 2);
            // A failing flush rolls back, and the level is restored all the same.
            *projection.lock().unwrap() = true;
            assert!(checkpoints.commit(&projection, &saved).await.is_err());
            assert_eq!(sync_level(&store).await, 2);
        }
        let batches: i64 = store
            .read(|tx| {
                tx.query_row("SELECT COUNT(*) FROM batches", [], |row| row.get(0))
                    .map_err(|error| crate::backend_error("cannot count", error))
            })
            .await
            .unwrap();
        assert_eq!(batches, 2);
        let checkpoints = SqliteCheckpoints::new(store.clone(), flush).await.unwrap();
        assert_eq!(CommitBatch::<bool>::load(&checkpoints, "p").await.unwrap(), Some(saved.clone()));

        // An in-memory database has no log to defer to: its commits are plain transactions.
        let memory = SqliteStore::open_in_memory().unwrap();
        let checkpoints = SqliteCheckpoints::new(memory.clone(), flush).await.unwrap();
        checkpoints.commit(&Arc::new(Mutex::new(false)), &saved).await.unwrap();
        assert_eq!(CommitBatch::<bool>::load(&checkpoints, "p").await.unwrap(), Some(saved));
    }
}

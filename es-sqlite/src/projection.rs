//! Exactly-once projections into the same SQLite file: the changes a batch's handlers kept and
//! the projection's checkpoint are written in one transaction.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{OptionalExtension, Transaction};

use es_core::projection::{
    CheckpointStoreError, CommitBatch, HandlerError, ParkedEvent, ProjectionIdentity, RebuildMarker, SavedCheckpoint,
};
use es_core::store::{Checkpoint, StoreError};

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
pub struct SqliteCheckpoints<F> {
    store: SqliteStore,
    flush: Arc<F>,
    reset: Option<Arc<Reset>>,
}

impl<F> std::fmt::Debug for SqliteCheckpoints<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheckpoints").field("store", &self.store).finish_non_exhaustive()
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
        Ok(Self { store, flush: Arc::new(flush), reset: None })
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
        self.store
            .transaction(move |tx| {
                let mut projection = projection.lock().unwrap_or_else(PoisonError::into_inner);
                write_batch(tx, flush.as_ref(), &mut projection, &saved)
            })
            .await
            .map_err(|Failed(error)| error)
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

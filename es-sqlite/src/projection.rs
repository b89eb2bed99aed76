//! Exactly-once projections into the same SQLite file: the changes a batch's handlers kept and
//! the projection's checkpoint are written in one transaction.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{OptionalExtension, Transaction};

use es_core::projection::{CheckpointStoreError, CommitBatch, HandlerError, SavedCheckpoint};
use es_core::store::StoreError;

use crate::error::Context;
use crate::store::SqliteStore;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS es_projection_checkpoints (
    name TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    checkpoint TEXT NOT NULL
)";

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
/// A rebuild (a changed identity) starts from the first event but does not empty the read
/// model's tables: do that in `flush` when the checkpoint is [`Checkpoint::START`](es_core::Checkpoint::START).
pub struct SqliteCheckpoints<F> {
    store: SqliteStore,
    flush: Arc<F>,
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
                Ok::<(), StoreError>(())
            })
            .await?;
        Ok(Self { store, flush: Arc::new(flush) })
    }
}

fn read_saved(tx: &Transaction<'_>, name: &str) -> Result<Option<SavedCheckpoint>, Failed> {
    let row: Option<(i64, String, String)> = tx
        .query_row(
            "SELECT version, fingerprint, checkpoint FROM es_projection_checkpoints WHERE name = ?1",
            [name],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .context("cannot read a projection checkpoint")?;
    let Some((version, fingerprint, checkpoint)) = row else { return Ok(None) };
    SavedCheckpoint::from_row(name, version, fingerprint, &checkpoint).map(Some).map_err(Failed)
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
                flush(tx, &mut projection).map_err(|error| {
                    let message = format!("writing the batch of projection `{}` failed", saved.identity.name);
                    Failed(CheckpointStoreError::because(message, error))
                })?;
                tx.execute(
                    "INSERT INTO es_projection_checkpoints (name, version, fingerprint, checkpoint) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version, fingerprint = excluded.fingerprint,
                     checkpoint = excluded.checkpoint",
                    rusqlite::params![
                        saved.identity.name,
                        i64::from(saved.identity.version),
                        saved.identity.fingerprint,
                        saved.checkpoint.to_string()
                    ],
                )
                .context("cannot save a projection checkpoint")?;
                Ok::<(), Failed>(())
            })
            .await
            .map_err(|Failed(error)| error)
    }
}

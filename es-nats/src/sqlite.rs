//! SQLite (feature `sqlite`): the relay's checkpoint in the store's own file, and a
//! consumer's exactly-once read model in a file of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use es_core::projection::{CheckpointStoreError, HandlerError, ParkedEvent};
use es_core::store::StoreError;
use es_core::{StreamId, Version};
use es_sqlite::rusqlite::{self, Transaction};
use es_sqlite::{SqliteCheckpoints, SqliteStore, backend_error};

use crate::consumer::{Applied, CommitApplied};

/// The relay's checkpoint store on SQLite: [`SqliteCheckpoints`] with nothing to flush.
pub type RelayCheckpoints = SqliteCheckpoints<fn(&Transaction<'_>, &mut ()) -> Result<(), HandlerError>>;

/// The relay's checkpoint in the store's own file (table `es_projection_checkpoints`, beside
/// the projections' own, under the relay's name).
///
/// # Errors
/// Backend errors creating the table.
pub async fn relay_checkpoints(store: SqliteStore) -> Result<RelayCheckpoints, StoreError> {
    fn nothing(_: &Transaction<'_>, (): &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
    SqliteCheckpoints::new(store, nothing as fn(&Transaction<'_>, &mut ()) -> Result<(), HandlerError>).await
}

/// A storage failure as the checkpoint error the relay and the consumer report.
struct Failed(CheckpointStoreError);

impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Self {
        Failed(CheckpointStoreError::because("the SQLite store failed", error))
    }
}

fn sql<T>(result: rusqlite::Result<T>, doing: &'static str) -> Result<T, Failed> {
    result.map_err(|error| Failed::from(backend_error(doing, error)))
}

/// A consumer's read model in a SQLite file, committed **exactly once**: `flush` writes what a
/// batch's handlers kept in the projection, the last version applied of each stream goes to
/// table `es_nats_applied` and the events the batch parked to `es_nats_parked` (as JSON), in
/// one transaction (the pattern of [`SqliteCheckpoints`]).
///
/// Handlers do not write to the database themselves: they record their changes in the
/// projection (rows to upsert, say), and `flush` writes and clears them.
pub struct SqliteReadModel<F> {
    store: SqliteStore,
    flush: Arc<F>,
}

impl<F> std::fmt::Debug for SqliteReadModel<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReadModel").field("store", &self.store).finish_non_exhaustive()
    }
}

impl<F> SqliteReadModel<F> {
    /// A read model in `store`'s file (any SQLite file: the consumer's process opens its own),
    /// creating the applied-versions table if needed; `flush` writes a batch's changes,
    /// `fn(&Transaction, &mut Projection) -> Result<(), HandlerError>`.
    ///
    /// # Errors
    /// Backend errors creating the table.
    pub async fn new(store: SqliteStore, flush: F) -> Result<Self, StoreError> {
        store
            .transaction(|tx| {
                tx.execute_batch(
                    "CREATE TABLE IF NOT EXISTS es_nats_applied (
                        consumer TEXT NOT NULL,
                        stream_type TEXT NOT NULL,
                        stream_id TEXT NOT NULL,
                        version INTEGER NOT NULL,
                        PRIMARY KEY (consumer, stream_type, stream_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS es_nats_parked (
                        consumer TEXT NOT NULL,
                        position INTEGER NOT NULL,
                        parked TEXT NOT NULL,
                        PRIMARY KEY (consumer, position)
                    ) WITHOUT ROWID",
                )
                .map_err(|error| backend_error("cannot create the applied-versions tables", error))
            })
            .await?;
        Ok(Self { store, flush: Arc::new(flush) })
    }

    /// The store the read model is kept in, for queries on it ([`SqliteStore::read`]).
    #[must_use]
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }
}

impl<P, F> CommitApplied<P> for SqliteReadModel<F>
where
    P: Send + 'static,
    F: Fn(&Transaction<'_>, &mut P) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    async fn load(&self, consumer: &str) -> Result<Applied, CheckpointStoreError> {
        let consumer = consumer.to_owned();
        self.store
            .read(move |tx| {
                let mut statement = sql(
                    tx.prepare("SELECT stream_type, stream_id, version FROM es_nats_applied WHERE consumer = ?1"),
                    "cannot read the applied versions",
                )?;
                let rows = sql(
                    statement.query_map([&consumer], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
                    }),
                    "cannot read the applied versions",
                )?;
                let mut applied = HashMap::new();
                for row in rows {
                    let (stream_type, id, version) = sql(row, "cannot read the applied versions")?;
                    let version = u64::try_from(version).map_err(|_| {
                        Failed(CheckpointStoreError::new(format!(
                            "stream {stream_type}/{id} has version {version} applied"
                        )))
                    })?;
                    applied.insert(StreamId::new(stream_type, id), Version(version));
                }
                let mut statement = sql(
                    tx.prepare("SELECT parked FROM es_nats_parked WHERE consumer = ?1 ORDER BY position"),
                    "cannot read the parked events",
                )?;
                let rows = sql(
                    statement.query_map([&consumer], |row| row.get::<_, String>(0)),
                    "cannot read the parked events",
                )?;
                let mut parked = Vec::new();
                for row in rows {
                    let json = sql(row, "cannot read the parked events")?;
                    parked.push(serde_json::from_str::<ParkedEvent>(&json).map_err(|error| {
                        Failed(CheckpointStoreError::because(
                            format!("a parked event of consumer `{consumer}` does not read"),
                            error,
                        ))
                    })?);
                }
                Ok(Applied { versions: applied, parked })
            })
            .await
            .map_err(|Failed(error)| error)
    }

    async fn commit(
        &self,
        consumer: &str,
        projection: &Arc<Mutex<P>>,
        applied: &[(StreamId, Version)],
        parked: &[ParkedEvent],
    ) -> Result<(), CheckpointStoreError> {
        let (consumer, projection, flush) = (consumer.to_owned(), Arc::clone(projection), Arc::clone(&self.flush));
        let (applied, parked) = (applied.to_vec(), parked.to_vec());
        self.store
            .transaction(move |tx| {
                let mut projection = projection.lock().unwrap_or_else(PoisonError::into_inner);
                flush(tx, &mut projection).map_err(|error| {
                    Failed(CheckpointStoreError::because(
                        format!("writing the batch of consumer `{consumer}` failed"),
                        error,
                    ))
                })?;
                let mut upsert = sql(
                    tx.prepare_cached(
                        "INSERT INTO es_nats_applied (consumer, stream_type, stream_id, version) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (consumer, stream_type, stream_id) DO UPDATE SET version = excluded.version",
                    ),
                    "cannot save the applied versions",
                )?;
                for (stream, version) in &applied {
                    let version = i64::try_from(version.0).unwrap_or(i64::MAX);
                    sql(
                        upsert.execute(rusqlite::params![consumer, stream.stream_type(), stream.id(), version]),
                        "cannot save the applied versions",
                    )?;
                }
                for event in &parked {
                    let position = i64::try_from(event.event.position.0).unwrap_or(i64::MAX);
                    let json = serde_json::to_string(event).map_err(|error| {
                        Failed(CheckpointStoreError::because("a parked event does not serialize", error))
                    })?;
                    sql(
                        tx.execute(
                            "INSERT OR REPLACE INTO es_nats_parked (consumer, position, parked) VALUES (?1, ?2, ?3)",
                            rusqlite::params![consumer, position, json],
                        ),
                        "cannot save a parked event",
                    )?;
                }
                Ok(())
            })
            .await
            .map_err(|Failed(error)| error)
    }
}

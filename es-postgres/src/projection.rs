//! Exactly-once projections into the store's own database: the changes a batch's handlers kept
//! and the projection's checkpoint are written in one transaction.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use es_core::StoreError;
use es_core::projection::{CheckpointStoreError, CommitBatch, HandlerError, SavedCheckpoint};

use crate::PostgresStore;
use crate::error::pg_error;
use crate::schema::quote;

/// How [`PostgresCheckpoints`] writes what a batch's handlers kept: [`take`](Self::take) moves
/// the batch's changes out of the projection (under its lock, without waiting), then
/// [`write`](Self::write) writes them in the transaction that then saves the checkpoint.
///
/// The two steps exist because PostgreSQL is asynchronous: the projection sits behind a lock
/// that readers share and that cannot be held across a round trip to the server, so the
/// changes leave the projection first and are written afterwards.
///
/// ```
/// use es_postgres::tokio_postgres::Transaction;
/// use es_postgres::tokio_postgres::types::Type;
/// use es_postgres::PostgresFlush;
/// use es_core::projection::{HandlerError, SavedCheckpoint};
///
/// /// What the handlers of a balances projection keep: deposits not written yet.
/// #[derive(Default)]
/// struct Balances {
///     pending: Vec<(String, i64)>,
/// }
///
/// struct WriteBalances;
///
/// impl PostgresFlush<Balances> for WriteBalances {
///     type Batch = Vec<(String, i64)>;
///
///     fn take(&self, projection: &mut Balances) -> Self::Batch {
///         std::mem::take(&mut projection.pending)
///     }
///
///     async fn write(&self, tx: &Transaction<'_>, batch: Self::Batch, _saved: &SavedCheckpoint) -> Result<(), HandlerError> {
///         for (account, amount) in batch {
///             tx.execute_typed(
///                 "INSERT INTO bank.balances (account, total) VALUES ($1, $2)
///                  ON CONFLICT (account) DO UPDATE SET total = balances.total + excluded.total",
///                 &[(&account, Type::TEXT), (&amount, Type::INT8)],
///             )
///             .await?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait PostgresFlush<P>: Send + Sync + 'static {
    /// A batch's changes, as they leave the projection.
    type Batch: Send;

    /// Moves the changes the handlers kept since the last batch out of `projection`.
    fn take(&self, projection: &mut P) -> Self::Batch;

    /// Writes `batch` in `tx`, the transaction that then saves `saved` (the checkpoint after
    /// the batch) and commits.
    ///
    /// # Errors
    /// Any error: nothing of the batch is written, its checkpoint is not saved, and the runner
    /// stops with [`ProjectionError::Checkpoints`](es_core::projection::ProjectionError::Checkpoints).
    fn write(
        &self,
        tx: &Transaction<'_>,
        batch: Self::Batch,
        saved: &SavedCheckpoint,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Empties the read model when a rebuild starts, in the transaction that then stores the
    /// rebuild's first checkpoint (with its marker): a crash leaves either the old read model
    /// with its old checkpoint, or the emptied one that the next run rebuilds. Nothing by
    /// default: a read model written per version (a table per version, say) has nothing to
    /// empty.
    ///
    /// # Errors
    /// Any error: nothing is reset, and the runner stops.
    fn reset(&self, tx: &Transaction<'_>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = tx;
        async { Ok(()) }
    }
}

/// Keeps projection checkpoints in the store's schema (table `projection_checkpoints`, the
/// columns of es-sqlite's `es_projection_checkpoints`) and commits each batch **exactly once**:
/// the [`PostgresFlush`] writes what the batch's handlers kept in the projection into the read
/// model's tables, in the transaction that saves the checkpoint.
///
/// Handlers do not write to the database themselves: they record their changes in the
/// projection (a list of rows to upsert, say), and the flush takes and writes them. A crash, a
/// failing flush or a handler that fails mid-batch then leaves neither the batch's changes nor
/// its checkpoint, and the next run starts again after the last committed batch: nothing is
/// lost and nothing repeated. Start that run with a projection value holding no changes.
///
/// A rebuild (a changed identity, or `ProjectionRunner::rebuild`) starts from the first event:
/// [`PostgresFlush::reset`] empties the read model in the transaction that stores the
/// rebuild's first checkpoint and its marker, which the next run resumes after a crash.
///
/// ```no_run
/// # use es_postgres::{PostgresCheckpoints, PostgresFlush, PostgresStore};
/// # use es_postgres::tokio_postgres::Transaction;
/// # use es_core::projection::{HandlerError, SavedCheckpoint};
/// # struct Balances;
/// # struct WriteBalances;
/// # impl PostgresFlush<Balances> for WriteBalances {
/// #     type Batch = ();
/// #     fn take(&self, _: &mut Balances) {}
/// #     async fn write(&self, _: &Transaction<'_>, _: (), _: &SavedCheckpoint) -> Result<(), HandlerError> { Ok(()) }
/// # }
/// # async fn run() -> Result<(), es_core::StoreError> {
/// let store = PostgresStore::connect("postgres://app@db.internal/bank").await?;
/// let checkpoints = PostgresCheckpoints::new(store.clone(), WriteBalances).await?;
/// // ProjectionRunner::new(Balances::default(), store, checkpoints).run().await
/// # let _ = checkpoints;
/// # Ok(())
/// # }
/// ```
pub struct PostgresCheckpoints<F> {
    store: PostgresStore,
    flush: F,
    load_sql: Arc<str>,
    save_sql: Arc<str>,
}

impl<F> fmt::Debug for PostgresCheckpoints<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCheckpoints").field("store", &self.store).finish_non_exhaustive()
    }
}

/// A checkpoint store error for a failure of the store.
fn failed(error: StoreError) -> CheckpointStoreError {
    CheckpointStoreError::because("the PostgreSQL store failed", error)
}

/// A checkpoint store error for a failed statement.
fn statement_failed(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CheckpointStoreError {
    move |error| failed(pg_error(context, error))
}

impl<F> PostgresCheckpoints<F> {
    /// Checkpoints in `store`'s schema, creating their table if needed; `flush` writes a
    /// batch's changes.
    ///
    /// # Errors
    /// Backend errors creating the table.
    pub async fn new(store: PostgresStore, flush: F) -> Result<Self, StoreError> {
        let s = quote(store.schema());
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {s}.projection_checkpoints (
                name text PRIMARY KEY,
                version bigint NOT NULL,
                fingerprint text NOT NULL,
                checkpoint text NOT NULL,
                rebuild text,
                parked text
            )"
        );
        let client = store.client("cannot create the projection checkpoint table").await?;
        if let Err(error) = client.batch_execute(&create).await {
            // Two processes creating the table at once: one of them is refused by the
            // catalog's unique index, and the table exists.
            let exists = error.code().is_some_and(|code| matches!(code.code(), "23505" | "42P07"));
            if !exists {
                return Err(pg_error("cannot create the projection checkpoint table", error));
            }
        }
        Ok(Self {
            load_sql: Arc::from(format!(
                "SELECT version, fingerprint, checkpoint, rebuild, parked FROM {s}.projection_checkpoints WHERE name = $1"
            )),
            save_sql: Arc::from(format!(
                "INSERT INTO {s}.projection_checkpoints (name, version, fingerprint, checkpoint, rebuild, parked)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, fingerprint = excluded.fingerprint,
                 checkpoint = excluded.checkpoint, rebuild = excluded.rebuild, parked = excluded.parked"
            )),
            store,
            flush,
        })
    }

    /// The store the checkpoints and the read model are in.
    #[must_use]
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }
}

impl<P, F> CommitBatch<P> for PostgresCheckpoints<F>
where
    P: Send + 'static,
    F: PostgresFlush<P>,
{
    async fn load(&self, name: &str) -> Result<Option<SavedCheckpoint>, CheckpointStoreError> {
        let context = "cannot read a projection checkpoint";
        let client = self.store.client(context).await.map_err(failed)?;
        let rows =
            client.query_typed(&self.load_sql, &[(&name, Type::TEXT)]).await.map_err(statement_failed(context))?;
        let Some(row) = rows.first() else { return Ok(None) };
        type Columns = (i64, String, String, Option<String>, Option<String>);
        let (version, fingerprint, checkpoint, rebuild, parked): Columns =
            (|| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?)))()
                .map_err(statement_failed(context))?;
        SavedCheckpoint::from_row(name, version, fingerprint, &checkpoint, rebuild.as_deref(), parked.as_deref())
            .map(Some)
    }

    async fn commit(&self, projection: &Arc<Mutex<P>>, saved: &SavedCheckpoint) -> Result<(), CheckpointStoreError> {
        self.write_batch(projection, saved, false).await
    }

    /// Empties the read model ([`PostgresFlush::reset`]) and stores the rebuild's first
    /// checkpoint, in one transaction.
    async fn reset(&self, projection: &Arc<Mutex<P>>, saved: &SavedCheckpoint) -> Result<(), CheckpointStoreError> {
        self.write_batch(projection, saved, true).await
    }
}

impl<F> PostgresCheckpoints<F> {
    /// Writes the batch `projection` kept and `saved` in one transaction, after emptying the
    /// read model when `reset`.
    async fn write_batch<P>(
        &self,
        projection: &Arc<Mutex<P>>,
        saved: &SavedCheckpoint,
        reset: bool,
    ) -> Result<(), CheckpointStoreError>
    where
        F: PostgresFlush<P>,
    {
        let batch = self.flush.take(&mut projection.lock().unwrap_or_else(PoisonError::into_inner));
        let (rebuild, parked) = saved.columns()?;
        let context = "cannot save a projection checkpoint";
        let mut client = self.store.client(context).await.map_err(failed)?;
        let tx = client.transaction().await.map_err(statement_failed(context))?;
        if reset {
            self.flush.reset(&tx).await.map_err(|error| {
                let message = format!("emptying the read model of projection `{}` failed", saved.identity.name);
                CheckpointStoreError::because(message, error)
            })?;
        }
        self.flush.write(&tx, batch, saved).await.map_err(|error| {
            let message = format!("writing the batch of projection `{}` failed", saved.identity.name);
            CheckpointStoreError::because(message, error)
        })?;
        let version = i64::from(saved.identity.version);
        let checkpoint = saved.checkpoint.to_string();
        tx.execute_typed(
            &self.save_sql,
            &[
                (&saved.identity.name, Type::TEXT),
                (&version, Type::INT8),
                (&saved.identity.fingerprint, Type::TEXT),
                (&checkpoint, Type::TEXT),
                (&rebuild, Type::TEXT),
                (&parked, Type::TEXT),
            ],
        )
        .await
        .map_err(statement_failed(context))?;
        tx.commit().await.map_err(statement_failed(context))
    }
}

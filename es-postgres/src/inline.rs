//! Inline projections: read models in the store's database updated in the append's own
//! transaction, so a command and its read model commit or fail together.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio_postgres::Transaction;
use uuid::Uuid;

use es_core::projection::HandlerError;
use es_core::store::{AllEventsPage, Appended, CommitSignal};
use es_core::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, ReadAllFilter, Snapshot, StoreError, StoredEvent, StreamId,
    Version,
};

use crate::error::pg_error;
use crate::pool::Conn;
use crate::{Alone, InsertAlone, PostgresStore, commit, job};

/// A read model that must never lag: [`PostgresInline::apply`] runs inside the transaction of
/// every append made through a [`PostgresInlineStore`], with the events as they will be
/// committed (positions and versions assigned).
///
/// It returns `Ok` to let the append commit; an error rolls the whole append back (its
/// events and whatever `apply` wrote) and fails it with [`StoreError::InlineProjection`].
/// Keep it short: the append holds the store's frontier (crate docs, "Reading all events")
/// while it runs, so every append to the store waits for it.
///
/// ```
/// use es_postgres::tokio_postgres::Transaction;
/// use es_postgres::tokio_postgres::types::Type;
/// use es_postgres::PostgresInline;
/// use es_core::projection::HandlerError;
/// use es_core::StoredEvent;
///
/// /// How many events each stream has, kept in the table `bank.event_counts`.
/// struct EventCounts;
///
/// impl PostgresInline for EventCounts {
///     fn name(&self) -> &str {
///         "event_counts"
///     }
///
///     async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), HandlerError> {
///         let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(()) };
///         let count = i64::try_from(last.stream_version.0)?;
///         tx.execute_typed(
///             "INSERT INTO bank.event_counts (stream, events) VALUES ($1, $2)
///              ON CONFLICT (stream) DO UPDATE SET events = excluded.events",
///             &[(&first.stream.to_string(), Type::TEXT), (&count, Type::INT8)],
///         )
///         .await?;
///         Ok(())
///     }
/// }
/// ```
pub trait PostgresInline: Send + Sync + 'static {
    /// Its name, in errors.
    fn name(&self) -> &str;

    /// Updates the read model for `events`, all of one stream, in `tx`.
    ///
    /// # Errors
    /// Any error: the append fails and nothing is written.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A [`PostgresStore`] whose appends also run a [`PostgresInline`] projection in their
/// transaction. An [`EventStore`] itself: give it to a `Repository` and every command updates
/// the read model atomically with its events. Clones share the store and the projection.
///
/// Its appends do not go through the store's group commit: each is a transaction of its own
/// (the stream's version read, `BEGIN`, the append statement, `apply`, `COMMIT`), a few round
/// trips more than a plain append, with the frontier held from the append statement to the
/// commit. Appends made through the [`store`](Self::store) underneath do not run the
/// projection.
///
/// ```no_run
/// # use es_postgres::{PostgresInline, PostgresInlineStore, PostgresStore};
/// # use es_postgres::tokio_postgres::Transaction;
/// # use es_core::projection::HandlerError;
/// # struct EventCounts;
/// # impl PostgresInline for EventCounts {
/// #     fn name(&self) -> &str { "event_counts" }
/// #     async fn apply(&self, _: &Transaction<'_>, _: &[es_core::StoredEvent]) -> Result<(), HandlerError> { Ok(()) }
/// # }
/// # async fn run() -> Result<(), es_core::StoreError> {
/// let store = PostgresStore::connect("postgres://app@db.internal/bank").await?;
/// let inline = PostgresInlineStore::new(store, EventCounts);
/// // Repository::<BankAccount, _>::new(inline): every command updates `event_counts`.
/// # let _ = inline;
/// # Ok(())
/// # }
/// ```
pub struct PostgresInlineStore<I> {
    store: PostgresStore,
    inline: Arc<I>,
}

impl<I> Clone for PostgresInlineStore<I> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), inline: Arc::clone(&self.inline) }
    }
}

impl<I: PostgresInline> fmt::Debug for PostgresInlineStore<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresInlineStore").field("store", &self.store).field("inline", &self.inline.name()).finish()
    }
}

impl<I: PostgresInline> PostgresInlineStore<I> {
    /// `store` with `inline` run in each append's transaction.
    pub fn new(store: PostgresStore, inline: I) -> Self {
        Self { store, inline: Arc::new(inline) }
    }

    /// The store underneath (its appends do not run the inline projection).
    #[must_use]
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    /// The inline projection.
    #[must_use]
    pub fn inline(&self) -> &I {
        &self.inline
    }
}

/// The insert of an inline store: the append statement and `apply` in one transaction.
struct WithInline<'a, I>(&'a I);

impl<I: PostgresInline> InsertAlone for WithInline<'_, I> {
    async fn insert(&self, client: &mut Conn, sql: &str, job: commit::Job) -> Alone {
        let context = "cannot append events";
        let tx = match client.transaction().await {
            Ok(tx) => tx,
            Err(error) => return Alone::Failed(pg_error(context, error)),
        };
        let appended = match Alone::from(commit::alone(tx.client(), sql, job).await) {
            Alone::Written(appended) => appended,
            // The statement failed, so did the transaction: roll it back (best effort; a lost
            // connection rolls back on its own).
            other => {
                let _ = tx.rollback().await;
                return other;
            }
        };
        if let Err(source) = self.0.apply(&tx, &appended.events).await {
            let _ = tx.rollback().await;
            return Alone::Failed(StoreError::InlineProjection { projection: self.0.name().to_owned(), source });
        }
        match tx.commit().await {
            Ok(()) => Alone::Written(appended),
            Err(error) => Alone::Failed(pg_error(context, error)),
        }
    }
}

impl<I: PostgresInline> EventStore for PostgresInlineStore<I> {
    /// Appends and applies the inline projection in one transaction.
    ///
    /// # Errors
    /// Those of [`PostgresStore`]'s appends, and [`StoreError::InlineProjection`] when the
    /// projection fails (nothing is then written).
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let job = job(stream, 0, events)?;
        self.store.append_alone(expected, job, false, &WithInline(self.inline.as_ref())).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.read_stream(stream, from, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.store.stream_version(stream).await
    }

    async fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        self.store.read_all(from, filter, limit).await
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.store.head().await
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.store.find_event(event_id).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.store.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.store.load_snapshot(stream).await
    }

    fn commit_signal(&self) -> Option<CommitSignal> {
        self.store.commit_signal()
    }
}

//! Inline projections: read models in the store's file updated in the append's own
//! transaction, so a command and its read model commit or fail together.

use std::fmt;
use std::sync::Arc;

use rusqlite::Transaction;
use uuid::Uuid;

use es_core::projection::HandlerError;
use es_core::store::{AllEventsPage, Appended, CommitSignal};
use es_core::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, ReadAllFilter, Snapshot, StoreError, StoredEvent, StreamId,
    Version,
};

use crate::store::SqliteStore;

/// A read model that must never lag: [`InlineProjection::apply`] runs inside the transaction
/// of every append made through an [`InlineStore`], with the events as they will be
/// committed (positions and versions assigned).
///
/// It returns `Ok` to let the append commit; an error rolls the whole append back (its
/// events and whatever `apply` wrote) and fails it with [`StoreError::InlineProjection`].
/// Keep it short: appends wait while it runs.
pub trait InlineProjection: Send + Sync + 'static {
    /// Its name, in errors.
    fn name(&self) -> &str;

    /// Updates the read model for `events`, all of one stream, in `tx`.
    ///
    /// # Errors
    /// Any error: the append fails and nothing is written.
    fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), HandlerError>;
}

/// A [`SqliteStore`] whose appends also run an [`InlineProjection`] in their transaction.
/// An [`EventStore`] itself: give it to a `Repository` and every command updates the read
/// model atomically with its events. Clones share the store and the projection.
pub struct InlineStore<I> {
    store: SqliteStore,
    inline: Arc<I>,
}

impl<I> Clone for InlineStore<I> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), inline: Arc::clone(&self.inline) }
    }
}

impl<I: InlineProjection> fmt::Debug for InlineStore<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineStore").field("store", &self.store).field("inline", &self.inline.name()).finish()
    }
}

impl<I: InlineProjection> InlineStore<I> {
    /// `store` with `inline` run in each append's transaction.
    pub fn new(store: SqliteStore, inline: I) -> Self {
        Self { store, inline: Arc::new(inline) }
    }

    /// The store underneath (its appends do not run the inline projection).
    #[must_use]
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// The inline projection.
    #[must_use]
    pub fn inline(&self) -> &I {
        &self.inline
    }
}

impl<I: InlineProjection> EventStore for InlineStore<I> {
    /// Appends and applies the inline projection in one transaction.
    ///
    /// # Errors
    /// Those of [`SqliteStore::append_with`], and [`StoreError::InlineProjection`] when the
    /// projection fails (nothing is then written).
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let inline = Arc::clone(&self.inline);
        let hook = move |tx: &Transaction<'_>, stored: &[StoredEvent]| {
            inline
                .apply(tx, stored)
                .map_err(|source| StoreError::InlineProjection { projection: inline.name().to_owned(), source })
        };
        self.store.append_with(stream, expected, events, hook).await.map(|(appended, _)| appended)
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

//! A store wrapper that runs a test's code at chosen points of the calls made through it:
//! races forced deterministically, and failures injected, without a store of one's own.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::record::{NewEvent, StoredEvent, StreamId, Version};
use crate::store::{
    AllEventsPage, Appended, Checkpoint, EventStore, ExpectedVersion, ReadAllFilter, Snapshot, StoreError,
};

/// What a hook does when its point is reached: any work (another writer's command, say), and
/// optionally an error the call returns instead of reaching the store.
pub type Hook = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Option<StoreError>> + Send>> + Send + Sync>;

/// `inner`, with hooks before each `append` and after each `find_event`.
///
/// ```
/// # use es_core::testing::Hooked;
/// # use es_core::{InMemoryStore, StoreError, StreamId, ExpectedVersion, Version};
/// // Every append meets a version conflict, as if another writer always got there first.
/// let store = Hooked::new(InMemoryStore::new()).before_append(|| {
///     Box::pin(async {
///         Some(StoreError::Conflict {
///             stream: StreamId::new("T", "1"),
///             expected: ExpectedVersion::NoStream,
///             actual: Version(1),
///         })
///     })
/// });
/// # let _ = store;
/// ```
pub struct Hooked<S> {
    inner: S,
    before_append: Option<Hook>,
    after_find_event: Option<Hook>,
}

impl<S: EventStore> Hooked<S> {
    /// `inner` with no hooks yet.
    pub fn new(inner: S) -> Self {
        Self { inner, before_append: None, after_find_event: None }
    }

    /// Runs `hook` before every `append`; an error it returns is the append's result, and the
    /// store is not called.
    #[must_use]
    pub fn before_append(
        mut self,
        hook: impl Fn() -> Pin<Box<dyn Future<Output = Option<StoreError>> + Send>> + Send + Sync + 'static,
    ) -> Self {
        self.before_append = Some(Box::new(hook));
        self
    }

    /// Runs `hook` after every `find_event` answered (before the caller sees the answer); an
    /// error it returns replaces the answer.
    #[must_use]
    pub fn after_find_event(
        mut self,
        hook: impl Fn() -> Pin<Box<dyn Future<Output = Option<StoreError>> + Send>> + Send + Sync + 'static,
    ) -> Self {
        self.after_find_event = Some(Box::new(hook));
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

async fn run(hook: Option<&Hook>) -> Option<StoreError> {
    match hook {
        Some(hook) => hook().await,
        None => None,
    }
}

impl<S: EventStore> EventStore for Hooked<S> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        if let Some(error) = run(self.before_append.as_ref()).await {
            return Err(error);
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_stream(stream, from, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        self.inner.read_all(from, filter, limit).await
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.inner.head().await
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let found = self.inner.find_event(event_id).await;
        match run(self.after_find_event.as_ref()).await {
            Some(error) => Err(error),
            None => found,
        }
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream).await
    }
}

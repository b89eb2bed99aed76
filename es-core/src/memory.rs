//! The in-memory store: every guarantee of the contract, nothing kept after the process ends.
//! For tests and for trying things out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use uuid::Uuid;

use crate::record::{Position, StoredEvent, Version};
use crate::store::{
    AllEventsPage, Checkpoint, EventStore, ExpectedVersion, NewEvent, ReadAllFilter, Snapshot, StoreError, StreamId,
    resolve_retry,
};

/// An [`EventStore`] in memory. Clones share the same events.
#[derive(Clone, Default)]
pub struct InMemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Every event in store order; an event's position is its index + 1.
    events: Vec<StoredEvent>,
    /// Each stream's events, as indexes into `events`.
    streams: HashMap<StreamId, Vec<usize>>,
    ids: HashMap<Uuid, usize>,
    snapshots: HashMap<StreamId, Snapshot>,
}

impl InMemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written: every mutation
        // happens after all checks, with no fallible step in between.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn version_of(&self, stream: &StreamId) -> Version {
        Version(self.streams.get(stream).map_or(0, |s| s.len() as u64))
    }
}

impl EventStore for InMemoryStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut inner = self.lock();
        let existing = events.iter().map(|e| inner.ids.get(&e.event_id).map(|&i| inner.events[i].clone())).collect();
        if let Some(stored) = resolve_retry(stream, &events, existing)? {
            return Ok(stored);
        }
        let actual = inner.version_of(stream);
        if !expected.admits(actual) {
            return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
        }
        let recorded_at = SystemTime::now();
        let mut committed = Vec::with_capacity(events.len());
        for (offset, event) in events.into_iter().enumerate() {
            let index = inner.events.len();
            let stored = StoredEvent {
                position: Position(index as u64 + 1),
                stream_type: stream.stream_type.clone(),
                stream_id: stream.id.clone(),
                stream_version: Version(actual.0 + offset as u64 + 1),
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at,
            };
            inner.ids.insert(stored.event_id, index);
            inner.events.push(stored.clone());
            committed.push(stored);
        }
        let end = inner.events.len();
        inner.streams.entry(stream.clone()).or_default().extend(end - committed.len()..end);
        Ok(committed)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let inner = self.lock();
        let Some(indexes) = inner.streams.get(stream) else { return Ok(Vec::new()) };
        let skip = usize::try_from(from.0.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(indexes.iter().skip(skip).take(limit).map(|&i| inner.events[i].clone()).collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        Ok(self.lock().version_of(stream))
    }

    async fn read_all(
        &self,
        from: Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        let inner = self.lock();
        let start = usize::try_from(from.to_u64()).unwrap_or(usize::MAX).min(inner.events.len());
        let mut events = Vec::new();
        let mut next = from;
        for event in &inner.events[start..] {
            if events.len() == limit {
                break;
            }
            next = Checkpoint::after(event.position);
            if filter.admits(event) {
                events.push(event.clone());
            }
        }
        Ok(AllEventsPage { events, next })
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let inner = self.lock();
        Ok(inner.ids.get(&event_id).map(|&i| inner.events[i].clone()))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let newer_exists = inner.snapshots.get(&snapshot.stream).is_some_and(|s| s.version > snapshot.version);
        if !newer_exists {
            inner.snapshots.insert(snapshot.stream.clone(), snapshot);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }
}

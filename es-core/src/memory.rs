//! The in-memory store: every guarantee of the contract, nothing kept after the process ends.
//! For tests and for trying things out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use uuid::Uuid;

use crate::store::kit::{self, resolve_retry};
use crate::store::{
    AllEventsPage, Appended, Checkpoint, CommitSignal, EventStore, ExpectedVersion, NewEvent, Position, ReadAllFilter,
    Snapshot, StoreError, StoreOrigin, StoredEvent, StreamId, Version,
};

/// An [`EventStore`] in memory. Clones share the same events.
///
/// ```
/// # use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), es_core::StoreError> {
/// let store = InMemoryStore::new();
/// let stream = StreamId::new("Counter", "1");
/// let event = NewEvent::new(RawEvent::new("Incremented", 1, r#"{"by":1}"#));
/// let appended = store.append(&stream, ExpectedVersion::NoStream, vec![event.clone()]).await?;
/// assert!(appended.was_written());
/// // The same batch again is found, not written twice.
/// assert!(!store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?.was_written());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    inner: Arc<Mutex<Inner>>,
    origin: StoreOrigin,
    committed: CommitSignal,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore").field("origin", &self.origin).finish_non_exhaustive()
    }
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
        Self {
            inner: Arc::default(),
            origin: StoreOrigin::new("memory", Uuid::new_v4()),
            committed: CommitSignal::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written: every mutation
        // happens after all checks, with no fallible step in between.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn checkpoint_after(&self, position: Position) -> Checkpoint {
        Checkpoint::new(&self.origin, [position.0, 0])
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
    ) -> Result<Appended, StoreError> {
        kit::check_batch(&events)?;
        let mut inner = self.lock();
        if events.iter().any(|e| inner.ids.contains_key(&e.event_id)) {
            let existing =
                events.iter().map(|e| inner.ids.get(&e.event_id).map(|&i| inner.events[i].clone())).collect();
            if let Some(stored) = resolve_retry(stream, &events, existing)? {
                return Ok(Appended::already_stored(stored));
            }
        }
        let actual = inner.version_of(stream);
        if !expected.admits(actual) {
            return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
        }
        let recorded_at = SystemTime::now();
        let mut committed = Vec::with_capacity(events.len());
        let first = inner.events.len();
        for (offset, event) in events.into_iter().enumerate() {
            let index = first + offset;
            let stored = StoredEvent {
                position: Position(index as u64 + 1),
                stream: stream.clone(),
                stream_version: Version(actual.0 + offset as u64 + 1),
                event_id: event.event_id,
                metadata: event.metadata,
                recorded_at,
                event: event.event,
            };
            inner.ids.insert(stored.event_id, index);
            inner.events.push(stored.clone());
            committed.push(stored);
        }
        let end = inner.events.len();
        match inner.streams.get_mut(stream) {
            Some(indexes) => indexes.extend(first..end),
            None => {
                inner.streams.insert(stream.clone(), (first..end).collect());
            }
        }
        drop(inner);
        self.committed.notify();
        Ok(Appended::written(committed))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let inner = self.lock();
        let Some(indexes) = inner.streams.get(stream) else { return Ok(Vec::new()) };
        let skip = usize::try_from(kit::first_wanted(from).0 - 1).unwrap_or(usize::MAX);
        Ok(indexes.iter().skip(skip).take(limit).map(|&i| inner.events[i].clone()).collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        Ok(self.lock().version_of(stream))
    }

    async fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        let after = from.resolve(&self.origin)?.map_or(0, |[position, _]| position);
        let inner = self.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(inner.events.len());
        let mut events = Vec::new();
        let mut next = from.clone();
        for event in &inner.events[start..] {
            if events.len() == limit {
                break;
            }
            next = self.checkpoint_after(event.position);
            if filter.admits(event) {
                events.push((event.clone(), next.clone()));
            }
        }
        Ok(AllEventsPage::new(events, next))
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let inner = self.lock();
        Ok(match inner.events.len() {
            0 => Checkpoint::START,
            len => self.checkpoint_after(Position(len as u64)),
        })
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

    fn commit_signal(&self) -> Option<CommitSignal> {
        Some(self.committed.clone())
    }
}

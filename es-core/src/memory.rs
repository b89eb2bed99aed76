//! The in-memory store: every guarantee of the contract, nothing kept after the process ends.
//! For tests and for trying things out.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use crate::record::{KeyMap, StreamKey};
use crate::store::kit::{self, resolve_retry};
use crate::store::{
    AllEventsPage, Appended, Checkpoint, CommitSignal, EventStore, ExpectedVersion, NewEvent, Position, ReadAllFilter,
    Snapshot, StoreError, StoreOrigin, StoredEvent, StreamId, Version,
};
use crate::store::{LeaseAttempt, LeaseGrant, LeaseRow, Leases, next_token};

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
    /// Every event in store order; an event's position is its index + 1. Shared, so that the
    /// repository can read and append without copying payloads (`read_shared`, `append_shared`).
    events: Vec<Arc<StoredEvent>>,
    /// Each stream's name as its events hold it (one shared copy) and its events, as indexes
    /// into `events`.
    streams: KeyMap<(StreamId, Vec<usize>)>,
    ids: HashMap<Uuid, usize>,
    snapshots: KeyMap<Arc<Snapshot>>,
    /// Leases by name: the row every store keeps, and when it expires.
    leases: HashMap<String, (LeaseRow, Instant)>,
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

    /// [`EventStore::append`], with the committed events shared with the store instead of
    /// copied: the repository's path, which needs their records and not their payloads.
    pub(crate) fn append_shared(
        &self,
        stream: &StreamKey,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<SharedAppend, StoreError> {
        kit::check_batch(&events)?;
        let mut inner = self.lock();
        let Inner { events: log, streams, ids, .. } = &mut *inner;
        // A batch of one event (a command's usual one): one lookup of its id serves both the
        // retry check and the insert.
        let single = match events.as_slice() {
            [event] => match ids.entry(event.event_id) {
                Entry::Occupied(found) => {
                    let existing = vec![Some(StoredEvent::clone(&log[*found.get()]))];
                    // With its one id stored, the batch is a retry or an error, never new.
                    let stored = resolve_retry(stream, &events, existing)?.unwrap_or_default();
                    return Ok(SharedAppend::AlreadyStored(stored));
                }
                Entry::Vacant(slot) => Some(slot),
            },
            _ => {
                if events.iter().any(|e| ids.contains_key(&e.event_id)) {
                    let existing =
                        events.iter().map(|e| ids.get(&e.event_id).map(|&i| StoredEvent::clone(&log[i]))).collect();
                    if let Some(stored) = resolve_retry(stream, &events, existing)? {
                        return Ok(SharedAppend::AlreadyStored(stored));
                    }
                }
                None
            }
        };
        let entry = streams.get_mut(stream);
        let actual = Version(entry.as_ref().map_or(0, |(_, indexes)| indexes.len() as u64));
        if !expected.admits(actual) {
            return Err(StoreError::Conflict { stream: StreamId::clone(stream), expected, actual });
        }
        // Every event of a stream holds the same name, so comparing it can stop at the pointer.
        let name = entry.as_ref().map_or_else(|| StreamId::clone(stream), |(name, _)| name.clone());
        let recorded_at = SystemTime::now();
        let first = log.len();
        let committed: Vec<Arc<StoredEvent>> = events
            .into_iter()
            .enumerate()
            .map(|(offset, event)| {
                Arc::new(StoredEvent {
                    position: Position((first + offset) as u64 + 1),
                    stream: name.clone(),
                    stream_version: Version(actual.0 + offset as u64 + 1),
                    event_id: event.event_id,
                    metadata: event.metadata,
                    recorded_at,
                    event: event.event,
                })
            })
            .collect();
        log.extend(committed.iter().cloned());
        if let Some(slot) = single {
            slot.insert(first);
        } else {
            ids.extend(committed.iter().enumerate().map(|(offset, event)| (event.event_id, first + offset)));
        }
        let end = log.len();
        match entry {
            Some((_, indexes)) => indexes.extend(first..end),
            None => {
                streams.insert(stream.clone(), (name, (first..end).collect()));
            }
        }
        drop(inner);
        // Readers following read-all in this process wake now, not at their next poll.
        self.committed.notify();
        Ok(SharedAppend::Written(committed))
    }

    /// [`EventStore::load_snapshot`], the snapshot shared with the store instead of copied.
    pub(crate) fn load_snapshot_shared(&self, stream: &StreamKey) -> Option<Arc<Snapshot>> {
        self.lock().snapshots.get(stream).cloned()
    }

    /// [`EventStore::read_stream`], the events shared with the store instead of copied.
    pub(crate) fn read_shared(&self, stream: &StreamKey, from: Version, limit: usize) -> Vec<Arc<StoredEvent>> {
        let inner = self.lock();
        let Some((_, indexes)) = inner.streams.get(stream) else { return Vec::new() };
        let skip = usize::try_from(kit::first_wanted(from).0 - 1).unwrap_or(usize::MAX);
        indexes.iter().skip(skip).take(limit).map(|&i| Arc::clone(&inner.events[i])).collect()
    }
}

/// What [`InMemoryStore::append_shared`] did.
pub(crate) enum SharedAppend {
    /// Wrote these events.
    Written(Vec<Arc<StoredEvent>>),
    /// Found them stored already (a retried append).
    AlreadyStored(Vec<StoredEvent>),
}

impl Inner {
    fn version_of(&self, stream: &StreamKey) -> Version {
        Version(self.streams.get(stream).map_or(0, |(_, indexes)| indexes.len() as u64))
    }
}

impl EventStore for InMemoryStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        Ok(match self.append_shared(&StreamKey::new(stream.clone()), expected, events)? {
            SharedAppend::Written(events) => Appended::written(events.iter().map(|e| StoredEvent::clone(e)).collect()),
            SharedAppend::AlreadyStored(events) => Appended::already_stored(events),
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let inner = self.lock();
        let Some((_, indexes)) = inner.streams.get(&StreamKey::new(stream.clone())) else { return Ok(Vec::new()) };
        let skip = usize::try_from(kit::first_wanted(from).0 - 1).unwrap_or(usize::MAX);
        Ok(indexes.iter().skip(skip).take(limit).map(|&i| StoredEvent::clone(&inner.events[i])).collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        Ok(self.lock().version_of(&StreamKey::new(stream.clone())))
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
                events.push((StoredEvent::clone(event), next.clone()));
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
        Ok(inner.ids.get(&event_id).map(|&i| StoredEvent::clone(&inner.events[i])))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let key = StreamKey::new(snapshot.stream.clone());
        let newer_exists = inner.snapshots.get(&key).is_some_and(|s| s.version > snapshot.version);
        if !newer_exists {
            inner.snapshots.insert(key, Arc::new(snapshot));
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.load_snapshot_shared(&StreamKey::new(stream.clone())).map(Arc::unwrap_or_clone))
    }

    fn commit_signal(&self) -> Option<CommitSignal> {
        Some(self.committed.clone())
    }
}

/// Leases in the store's memory, on this process's monotonic clock.
impl Leases for InMemoryStore {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseAttempt, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let stored = inner.leases.get(name).map(|(row, expires)| {
            (LeaseRow { live: *expires > now, ..row.clone() }, expires.saturating_duration_since(now))
        });
        let token = match stored {
            None => 1,
            Some((row, expires_in)) => match next_token(Some(&row), holder) {
                Some(token) => token,
                None => return Ok(LeaseAttempt::Held { holder: row.holder, expires_in }),
            },
        };
        let row = LeaseRow { holder: holder.to_owned(), token, live: true };
        inner.leases.insert(name.to_owned(), (row, now + ttl));
        Ok(LeaseAttempt::Granted(LeaseGrant { name: name.to_owned(), holder: holder.to_owned(), token, ttl }))
    }

    async fn release_lease(&self, grant: &LeaseGrant) -> Result<(), StoreError> {
        let now = Instant::now();
        if let Some((row, expires)) = self.lock().leases.get_mut(&grant.name)
            && row.holder == grant.holder
            && row.token == grant.token
        {
            *expires = now;
        }
        Ok(())
    }
}

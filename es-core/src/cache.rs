//! A size-bounded, least-recently-used cache of loaded aggregates for the repository.
//!
//! It never answers alone: the repository reads the events appended since the cached version
//! before using a cached state, so a writer elsewhere is never missed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::record::Version;

pub(crate) struct AggregateCache<A> {
    inner: Arc<Mutex<Inner<A>>>,
}

impl<A> Clone for AggregateCache<A> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

struct Inner<A> {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, Entry<A>>,
    /// Last use → stream id, oldest first.
    by_use: BTreeMap<u64, String>,
}

struct Entry<A> {
    state: A,
    version: Version,
    used: u64,
}

impl<A: Clone> AggregateCache<A> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner { capacity, tick: 0, entries: HashMap::new(), by_use: BTreeMap::new() })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<A>> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, stream_id: &str) -> Option<(A, Version)> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(stream_id)?;
        let previous = std::mem::replace(&mut entry.used, tick);
        let found = (entry.state.clone(), entry.version);
        inner.by_use.remove(&previous);
        inner.by_use.insert(tick, stream_id.to_owned());
        Some(found)
    }

    pub(crate) fn put(&self, stream_id: &str, state: A, version: Version) {
        let mut inner = self.lock();
        if inner.capacity == 0 {
            return;
        }
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner.entries.insert(stream_id.to_owned(), Entry { state, version, used }) {
            inner.by_use.remove(&old.used);
        }
        inner.by_use.insert(used, stream_id.to_owned());
        while inner.entries.len() > inner.capacity {
            let Some((_, oldest)) = inner.by_use.pop_first() else { break };
            inner.entries.remove(&oldest);
        }
    }
}

//! A bounded cache of loaded aggregates for the repository: second-chance ("clock") eviction,
//! so a hit costs no allocation and no reordering.
//!
//! It never answers alone: the repository reads the events appended since the cached version
//! before using a cached state, so a writer elsewhere is never missed. A command *takes* its
//! aggregate out (no clone) and puts the new state back after the append.

use std::sync::{Mutex, MutexGuard};

use crate::record::{KeyMap, StreamKey, Version};

pub(crate) struct AggregateCache<A> {
    inner: Mutex<Inner<A>>,
}

struct Inner<A> {
    capacity: usize,
    slots: Vec<Slot<A>>,
    index: KeyMap<usize>,
    hand: usize,
}

struct Slot<A> {
    key: StreamKey,
    /// `None` while a command has the state out.
    entry: Option<(A, Version)>,
    referenced: bool,
}

impl<A: Clone> AggregateCache<A> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                capacity,
                slots: Vec::with_capacity(capacity.min(1024)),
                index: KeyMap::with_capacity_and_hasher(capacity.min(1024), Default::default()),
                hand: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<A>> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the cached state, for a read.
    pub(crate) fn get(&self, key: &StreamKey) -> Option<(A, Version)> {
        let mut inner = self.lock();
        let &slot = inner.index.get(key)?;
        let slot = &mut inner.slots[slot];
        slot.referenced = true;
        slot.entry.clone()
    }

    /// The cached state itself, for a command that puts the new one back, and the key's slot
    /// (for [`AggregateCache::put_at`]).
    pub(crate) fn take(&self, key: &StreamKey) -> (Option<(A, Version)>, Option<usize>) {
        let mut inner = self.lock();
        let Some(&at) = inner.index.get(key) else { return (None, None) };
        let slot = &mut inner.slots[at];
        slot.referenced = true;
        (slot.entry.take(), Some(at))
    }

    /// Caches `state` at `version`, unless a newer state of the stream is cached already.
    pub(crate) fn put(&self, key: &StreamKey, state: A, version: Version) {
        self.put_at(None, key, state, version);
    }

    /// [`AggregateCache::put`] for a key that [`AggregateCache::take`] found at `slot`: if the
    /// slot still holds the key (a key is in one slot at most), no lookup.
    pub(crate) fn put_at(&self, slot: Option<usize>, key: &StreamKey, state: A, version: Version) {
        let mut inner = self.lock();
        if inner.capacity == 0 {
            return;
        }
        let found = match slot {
            Some(at) if inner.slots.get(at).is_some_and(|slot| slot.key == *key) => Some(at),
            _ => inner.index.get(key).copied(),
        };
        if let Some(slot) = found {
            let slot = &mut inner.slots[slot];
            if slot.entry.as_ref().is_none_or(|(_, cached)| *cached <= version) {
                slot.entry = Some((state, version));
            }
            slot.referenced = true;
            return;
        }
        let slot = Slot { key: key.clone(), entry: Some((state, version)), referenced: true };
        if inner.slots.len() < inner.capacity {
            let at = inner.slots.len();
            inner.slots.push(slot);
            inner.index.insert(key.clone(), at);
            return;
        }
        // Second chance: pass over slots used since the hand last came by, clearing their
        // mark; the first unmarked (or empty) one is replaced. Ends within two rounds.
        let at = loop {
            let hand = inner.hand;
            inner.hand = (hand + 1) % inner.capacity;
            let candidate = &mut inner.slots[hand];
            if candidate.referenced && candidate.entry.is_some() {
                candidate.referenced = false;
            } else {
                break hand;
            }
        };
        let old = std::mem::replace(&mut inner.slots[at], slot);
        inner.index.remove(&old.key);
        inner.index.insert(key.clone(), at);
    }

    /// How many streams are cached.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> StreamKey {
        StreamKey::new(crate::record::StreamId::new("T", n.to_string()))
    }

    #[test]
    fn keeps_at_most_capacity_and_evicts_what_was_not_used_since() {
        let cache = AggregateCache::new(3);
        for n in 0..3 {
            cache.put(&key(n), n, Version(1));
        }
        // Every slot is marked once; the first full pass clears the marks, then 0 goes.
        cache.put(&key(3), 3, Version(1));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key(0)).is_none());
        // 1 is used again: it survives the next eviction, 2 does not.
        assert!(cache.get(&key(1)).is_some());
        cache.put(&key(4), 4, Version(1));
        assert!(cache.get(&key(1)).is_some());
        assert!(cache.get(&key(2)).is_none());
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn take_leaves_nothing_until_put_back_and_older_states_do_not_replace_newer() {
        let cache = AggregateCache::new(2);
        cache.put(&key(1), "v5", Version(5));
        let (taken, slot) = cache.take(&key(1));
        assert_eq!(taken, Some(("v5", Version(5))));
        assert_eq!(cache.take(&key(1)).0, None);
        cache.put_at(slot, &key(1), "v6", Version(6));
        cache.put(&key(1), "v5 again", Version(5));
        assert_eq!(cache.get(&key(1)), Some(("v6", Version(6))));
        // A slot that another key took over meanwhile is not written.
        cache.put(&key(2), "other", Version(1));
        cache.put(&key(3), "evicts", Version(1));
        cache.put_at(slot, &key(4), "new", Version(1));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key(4)), Some(("new", Version(1))));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = AggregateCache::new(0);
        cache.put(&key(1), 1, Version(1));
        assert!(cache.get(&key(1)).is_none());
    }
}

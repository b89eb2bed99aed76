//! Partitions: one projection run by N runners, each owning the streams whose id hashes to it.

use std::fmt;

use crate::record::StreamId;

/// Which share of the streams a runner handles: partition `index` of `count`.
///
/// A stream belongs to partition [`Partition::of`]: a stable hash (64-bit FNV-1a, the same
/// in every build, process and Rust version) of its type and id, modulo `count`. Each event is
/// therefore handled by exactly one partition, and the events of one stream by the same one,
/// in their order. Each partition keeps its own checkpoint (under the projection's name for
/// partition 0, `name#index` for the others) with the count in its identity, so a runner
/// started with another count than the stored one rebuilds (or refuses, under
/// [`IdentityChange::Refuse`](super::IdentityChange::Refuse)) instead of mixing two layouts.
///
/// The unpartitioned runner is partition 0 of 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition {
    index: u32,
    count: u32,
}

/// A partition index not below its count, or a count of 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("partition {index} of {count} does not exist: the index must be below a count of at least 1")]
pub struct InvalidPartition {
    /// The index asked for.
    pub index: u32,
    /// The count asked for.
    pub count: u32,
}

impl Partition {
    /// The whole projection in one runner.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    /// Partition `index` of `count`.
    ///
    /// # Errors
    /// [`InvalidPartition`] unless `index < count`.
    pub fn new(index: u32, count: u32) -> Result<Self, InvalidPartition> {
        if index < count { Ok(Self { index, count }) } else { Err(InvalidPartition { index, count }) }
    }

    /// Every partition of `count` (none for 0).
    pub fn all(count: u32) -> impl Iterator<Item = Partition> {
        (0..count).map(move |index| Partition { index, count })
    }

    /// Its index.
    #[must_use]
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many partitions there are.
    #[must_use]
    pub fn count(self) -> u32 {
        self.count
    }

    /// The index of the partition that owns `stream` among `count` (0 for a count of 0 or 1).
    #[must_use]
    pub fn of(stream: &StreamId, count: u32) -> u32 {
        if count <= 1 {
            return 0;
        }
        let hash = stable_hash(stream.stream_type(), stream.id());
        // The remainder is below `count`, a u32.
        u32::try_from(hash % u64::from(count)).unwrap_or(0)
    }

    /// Whether this partition owns `stream`.
    #[must_use]
    pub fn owns(self, stream: &StreamId) -> bool {
        Self::of(stream, self.count) == self.index
    }

    /// The key its checkpoint is stored under.
    pub(crate) fn key(self, name: &str) -> String {
        if self.index == 0 { name.to_owned() } else { format!("{name}#{}", self.index) }
    }

    /// The fingerprint its checkpoint is stored with: the selection's, with the layout when
    /// partitioned.
    pub(crate) fn fingerprint(self, selection: &str) -> String {
        if self.count == 1 { selection.to_owned() } else { format!("{selection}+{}/{}", self.index, self.count) }
    }

    /// The selection fingerprint and partition count a stored fingerprint was written with.
    pub(crate) fn parse_fingerprint(stored: &str) -> (&str, u32) {
        match stored.rsplit_once('+') {
            None => (stored, 1),
            Some((selection, layout)) => {
                let count = layout.split_once('/').and_then(|(_, count)| count.parse().ok());
                // An unreadable layout counts as none: it differs from every valid one.
                (selection, count.unwrap_or(0))
            }
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "partition {} of {}", self.index, self.count)
    }
}

/// 64-bit FNV-1a of the stream type, a unit separator and the id.
fn stable_hash(stream_type: &str, id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream_type.bytes().chain(std::iter::once(0x1f)).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_across_builds() {
        // FNV-1a 64 of the separator alone: a change here moves every stream to another partition.
        assert_eq!(stable_hash("", ""), 0xaf63_d24c_8601_db8e);
        assert_eq!(Partition::of(&StreamId::new("BankAccount", "42"), 1), 0);
        let spread: Vec<u32> = (0..1000).map(|n| Partition::of(&StreamId::new("A", n.to_string()), 4)).collect();
        for index in 0..4 {
            let owned = spread.iter().filter(|p| **p == index).count();
            assert!((150..350).contains(&owned), "partition {index} owns {owned} of 1000");
        }
        assert_ne!(stable_hash("ab", "c"), stable_hash("a", "bc"));
    }

    #[test]
    fn indexes_beyond_the_count_are_refused() {
        assert!(Partition::new(0, 0).is_err());
        assert!(Partition::new(4, 4).is_err());
        assert_eq!(Partition::new(3, 4).map(Partition::index), Ok(3));
        assert_eq!(Partition::all(3).count(), 3);
    }

    #[test]
    fn the_layout_is_read_back_from_the_fingerprint() {
        let p = Partition { index: 2, count: 4 };
        assert_eq!(Partition::parse_fingerprint(&p.fingerprint("abc")), ("abc", 4));
        assert_eq!(Partition::parse_fingerprint(&Partition::WHOLE.fingerprint("abc")), ("abc", 1));
        assert_eq!(Partition::parse_fingerprint("abc+junk"), ("abc", 0));
        assert_eq!((p.key("b"), Partition::WHOLE.key("b")), ("b#2".to_owned(), "b".to_owned()));
    }
}

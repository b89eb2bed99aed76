//! Where a reader of all events stands: a value each store defines for itself.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;

/// Which store a checkpoint belongs to: a kind (`"sqlite"`, `"memory"`, …) and the id of one
/// store instance (one database), fixed when the store was created.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreOrigin {
    kind: Arc<str>,
    id: Uuid,
}

impl StoreOrigin {
    /// The origin of store instance `id` of this kind (`"sqlite"`, `"postgres"`, …). Any
    /// character other than an ASCII letter, digit, `-` or `_` becomes `_`, so that a
    /// checkpoint's text form always parses back.
    pub fn new(kind: &str, id: Uuid) -> Self {
        let kind: String = kind.chars().map(|c| if plain(c) { c } else { '_' }).collect();
        let kind = if kind.is_empty() { "store".to_owned() } else { kind };
        Self { kind: Arc::from(kind), id }
    }

    /// The kind of store.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The store instance's id.
    #[must_use]
    pub fn id(&self) -> Uuid {
        self.id
    }
}

/// A character a store kind keeps in a checkpoint's text form.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl fmt::Display for StoreOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} store {}", self.kind, self.id)
    }
}

impl fmt::Debug for StoreOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// Where a reader of all events stands: it has seen every event before it, and resuming
/// from it neither skips nor repeats one.
///
/// Its content is the store's business (for SQLite and memory, the last position read; a
/// store may need more, and has two numbers for it). What every checkpoint offers:
///
/// - **Serializable**: `to_string()` and `parse()` (and serde, as the same string), so a
///   projection or relay stores it anywhere, a `TEXT` column included.
/// - **Ordered**: within one store, a later checkpoint compares greater.
/// - **Bound to its store**: one carries the id of the store instance that made it, and any
///   other store refuses it with [`StoreError::ForeignCheckpoint`]. [`Checkpoint::START`]
///   belongs to every store.
///
/// ```
/// # use es_core::store::Checkpoint;
/// let start: Checkpoint = "start".parse().unwrap();
/// assert_eq!(start, Checkpoint::START);
/// assert_eq!(Checkpoint::START.to_string(), "start");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Checkpoint(Option<Mark>);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Mark {
    origin: StoreOrigin,
    at: [u64; 2],
}

impl Checkpoint {
    /// Before the first event of any store.
    pub const START: Checkpoint = Checkpoint(None);

    /// For store authors: the checkpoint of store `origin` at `at` (what the store needs to
    /// resume; compared as a pair, first number first).
    #[must_use]
    pub fn new(origin: &StoreOrigin, at: [u64; 2]) -> Self {
        Self(Some(Mark { origin: origin.clone(), at }))
    }

    /// Whether this is [`Checkpoint::START`].
    #[must_use]
    pub fn is_start(&self) -> bool {
        self.0.is_none()
    }

    /// For store authors: what store `origin` put in this checkpoint, `None` for the start.
    ///
    /// # Errors
    /// [`StoreError::ForeignCheckpoint`] when another store made it.
    pub fn resolve(&self, origin: &StoreOrigin) -> Result<Option<[u64; 2]>, StoreError> {
        match &self.0 {
            None => Ok(None),
            Some(mark) if mark.origin == *origin => Ok(Some(mark.at)),
            Some(mark) => {
                Err(StoreError::ForeignCheckpoint { found: mark.origin.to_string(), expected: origin.to_string() })
            }
        }
    }
}

impl PartialOrd for Checkpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The start comes first; within one store, checkpoints follow the store's order.
/// (Checkpoints of different stores are ordered by store, which means nothing.)
impl Ord for Checkpoint {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => a.origin.cmp(&b.origin).then(a.at.cmp(&b.at)),
        }
    }
}

impl fmt::Display for Checkpoint {
    /// `start`, or `<kind>:<store id>:<a>.<b>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("start"),
            Some(Mark { origin, at: [a, b] }) => write!(f, "{}:{}:{a}.{b}", origin.kind, origin.id),
        }
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checkpoint({self})")
    }
}

/// A text that is not a checkpoint's `to_string()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a checkpoint; expected `start` or `<kind>:<store id>:<number>.<number>`")]
pub struct CheckpointParseError {
    text: String,
}

impl FromStr for Checkpoint {
    type Err = CheckpointParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || CheckpointParseError { text: super::error::bounded(text) };
        if text == "start" {
            return Ok(Checkpoint::START);
        }
        let mut parts = text.splitn(3, ':');
        let (Some(kind), Some(id), Some(at)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(error());
        };
        if kind.is_empty() || !kind.chars().all(plain) {
            return Err(error());
        }
        let id = Uuid::parse_str(id).map_err(|_| error())?;
        let (a, b) = at.split_once('.').ok_or_else(error)?;
        let number = |text: &str| text.parse::<u64>().map_err(|_| error());
        Ok(Checkpoint::new(&StoreOrigin::new(kind, id), [number(a)?, number(b)?]))
    }
}

impl Serialize for Checkpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Checkpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> StoreOrigin {
        StoreOrigin::new("sqlite", Uuid::from_u128(7))
    }

    #[test]
    fn text_round_trip() {
        for checkpoint in
            [Checkpoint::START, Checkpoint::new(&origin(), [42, 0]), Checkpoint::new(&origin(), [u64::MAX, 3])]
        {
            let text = checkpoint.to_string();
            assert_eq!(text.parse::<Checkpoint>(), Ok(checkpoint.clone()), "{text}");
            let json = serde_json::to_string(&checkpoint).unwrap();
            assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), checkpoint);
        }
    }

    #[test]
    fn garbage_is_refused_with_a_bounded_message() {
        for text in [
            "",
            "42",
            "sqlite:not-a-uuid:1.0",
            "sqlite:00000000-0000-0000-0000-000000000007:1",
            "a b:00000000-0000-0000-0000-000000000007:1.2",
        ] {
            assert!(text.parse::<Checkpoint>().is_err(), "{text}");
        }
        let long = "x".repeat(100_000);
        let message = long.parse::<Checkpoint>().unwrap_err().to_string();
        assert!(message.len() < 400, "{}", message.len());
    }

    #[test]
    fn any_kind_name_round_trips() {
        let odd = StoreOrigin::new("my store: v2", Uuid::from_u128(9));
        assert_eq!(odd.kind(), "my_store__v2");
        let checkpoint = Checkpoint::new(&odd, [3, 4]);
        assert_eq!(checkpoint.to_string().parse::<Checkpoint>(), Ok(checkpoint));
    }

    #[test]
    fn ordered_within_a_store_and_start_first() {
        let o = origin();
        assert!(Checkpoint::START < Checkpoint::new(&o, [1, 0]));
        assert!(Checkpoint::new(&o, [1, 9]) < Checkpoint::new(&o, [2, 0]));
        assert!(Checkpoint::new(&o, [2, 0]) < Checkpoint::new(&o, [2, 1]));
    }

    #[test]
    fn another_store_is_refused() {
        let other = StoreOrigin::new("sqlite", Uuid::from_u128(8));
        let checkpoint = Checkpoint::new(&origin(), [5, 0]);
        assert_eq!(checkpoint.resolve(&origin()).unwrap(), Some([5, 0]));
        assert!(matches!(checkpoint.resolve(&other), Err(StoreError::ForeignCheckpoint { .. })));
        assert_eq!(Checkpoint::START.resolve(&other).unwrap(), None);
    }
}

//! The aggregate trait implemented by `#[derive(Aggregate)]`.

use std::fmt::{Debug, Display};

use crate::event::{Apply, EventSet};
use crate::schema::AggregateSchema;

/// A consistency boundary whose state is the fold of its events.
///
/// Implemented by `#[derive(Aggregate)]`; commands are plain `&self` methods of the state that
/// return events (see [`IntoEvents`](crate::IntoEvents)).
/// Folding an event into the state is `Apply<Self::Event>`, generated to dispatch each variant
/// of the event enum to the `Apply<E>` of its event.
pub trait Aggregate: Apply<Self::Event> + Default + Debug + Clone + Send + Sync + 'static {
    /// The identifier of one instance (its stream id is the identifier's `Display`).
    type Id: Clone + Debug + Display + Send + Sync + 'static;
    /// The enum of every event this aggregate applies.
    type Event: EventSet;
    /// The error its commands refuse with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stream type recorded with every event of this aggregate.
    const TYPE: &'static str;
    /// When and in which state version snapshots are written; `None` never snapshots.
    const SNAPSHOT: Option<SnapshotPolicy> = None;

    /// The state as a snapshot payload, for aggregates declared with `snapshot(...)`.
    fn encode_snapshot(&self) -> Option<Result<String, serde_json::Error>> {
        None
    }

    /// Reads a snapshot payload written by [`Aggregate::encode_snapshot`].
    fn decode_snapshot(state: &str) -> Option<Result<Self, serde_json::Error>> {
        let _ = state;
        None
    }

    /// The schema of every event of this aggregate.
    fn schema() -> AggregateSchema;
}

/// `#[aggregate(snapshot(every = N, version = V))]`: write a snapshot every `every` events,
/// tagged with the state's own schema `version` so that a changed state shape ignores old
/// snapshots instead of misreading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotPolicy {
    /// Write a snapshot when the stream version crosses a multiple of this.
    pub every: u64,
    /// The schema version of the snapshotted state.
    pub version: u32,
}

//! The runtime of [es](https://docs.rs/es): the traits the macros implement, the record a store
//! hands back, decoding with upcasting, the given/when/then harness and the schema model.
//!
//! Users depend on the facade crate `es`, which re-exports everything here together with the
//! `#[event]` and `#[derive(Aggregate)]` macros.

mod aggregate;
mod cache;
mod decode;
mod event;
mod memory;
mod record;
pub mod repository;
pub mod schema;
pub mod store;
pub mod testing;

#[doc(hidden)]
pub mod __private;

pub use aggregate::{Aggregate, SnapshotPolicy};
pub use decode::{DecodeError, DecodeErrorKind, UpcastError, decode_event, decode_record};
pub use event::{Apply, Event, EventSet, IntoEvents};
pub use memory::InMemoryStore;
pub use record::{Envelope, Metadata, Position, RawEvent, StoredEvent, Version};
pub use repository::{CommandOptions, Loaded, Repository, RepositoryError, RetryPolicy};
pub use store::{
    AllEventsPage, Checkpoint, EventStore, ExpectedVersion, NewEvent, ReadAllFilter, Snapshot, StoreError, StreamId,
    StreamPages,
};

//! The runtime of [es](https://docs.rs/es): the traits the macros implement, the records every
//! store shares, decoding with upcasting, the repository, the given/when/then harness and the
//! schema model.
//!
//! Users depend on the facade crate `es`, which re-exports everything here together with the
//! `#[event]` and `#[derive(Aggregate)]` macros. The layers:
//!
//! - [`record`]: one vocabulary of records ([`RawEvent`], [`NewEvent`], [`Envelope`]).
//! - [`store`]: the [`EventStore`] contract, and [`store::kit`], the rules every store shares.
//! - [`repository`]: load, decide, append; snapshots, cache, retries, command ids.
//! - [`projection`]: read models, their checkpoints and the runner that keeps them up to date.
//! - [`timer`]: sleeping on any executor.
//! - [`testing`]: given/when/then, and the store conformance suite (feature `testing`).

// A decode error carries where it happened (stream, version, type) by value, so that it is
// readable without lookups; it is the cold path, and boxing it would only move the cost.
#![allow(clippy::result_large_err)]

mod aggregate;
mod decode;
mod event;
mod memory;
pub mod projection;
pub mod record;
pub mod repository;
pub mod schema;
pub mod store;
pub mod testing;
pub mod timer;

#[doc(hidden)]
pub mod __private;

pub use aggregate::{Aggregate, SnapshotPolicy};
pub use decode::{DecodeError, DecodeErrorKind, UpcastError, decode_raw, decode_record};
pub use event::{Apply, CommandResult, Event, EventSet, IntoEvents};
pub use memory::InMemoryStore;
pub use record::{Envelope, Metadata, NewEvent, Position, RawEvent, StoredEvent, StreamId, Version};
pub use repository::{CommandOptions, Executed, Loaded, Repository, RepositoryError, RetryPolicy};
pub use store::{
    AppendOutcome, Appended, Checkpoint, EventStore, ExpectedVersion, ReadAllFilter, Snapshot, StoreError,
};

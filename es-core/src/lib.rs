//! The runtime of [es](https://docs.rs/es): the traits the macros implement, the record a store
//! hands back, decoding with upcasting, the given/when/then harness and the schema model.
//!
//! Users depend on the facade crate `es`, which re-exports everything here together with the
//! `#[event]` and `#[derive(Aggregate)]` macros.

mod aggregate;
mod decode;
mod event;
mod record;
pub mod schema;
pub mod testing;

#[doc(hidden)]
pub mod __private;

pub use aggregate::{Aggregate, SnapshotPolicy};
pub use decode::{DecodeError, DecodeErrorKind, UpcastError, decode_record};
pub use event::{Apply, Event, EventSet, IntoEvents};
pub use record::{Envelope, Metadata, Position, RawEvent, StoredEvent, Version};

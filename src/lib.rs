//! # es — declarative event-sourced aggregates
//!
//! Declare events with `#[event(version = N)]` and an aggregate with `#[derive(Aggregate)]`;
//! es generates the event enum, the apply dispatch, decoding with typed upcasting of old event
//! versions, the given/when/then entry points and the schema of every event.
//!
//! ```
//! use es::prelude::*;
//!
//! /// A counter was started.
//! #[event(version = 1)]
//! pub struct Started {
//!     /// The starting value.
//!     pub at: u64,
//! }
//!
//! /// The counter went up by one.
//! #[event(version = 1)]
//! pub struct Incremented {}
//!
//! #[derive(Debug, thiserror::Error, PartialEq)]
//! pub enum CounterError {
//!     #[error("the counter was never started")]
//!     NotStarted,
//! }
//!
//! #[derive(Aggregate, Default, Debug, Clone, PartialEq)]
//! #[aggregate(id = Uuid, events(Started, Incremented), error = CounterError)]
//! pub struct Counter {
//!     started: bool,
//!     value: u64,
//! }
//!
//! impl Apply<Started> for Counter {
//!     fn apply(&mut self, event: &Started) {
//!         self.started = true;
//!         self.value = event.at;
//!     }
//! }
//!
//! impl Apply<Incremented> for Counter {
//!     fn apply(&mut self, _: &Incremented) {
//!         self.value += 1;
//!     }
//! }
//!
//! impl Counter {
//!     pub fn increment(&self) -> Result<Incremented, CounterError> {
//!         if !self.started {
//!             return Err(CounterError::NotStarted);
//!         }
//!         Ok(Incremented {})
//!     }
//! }
//!
//! Counter::given(Started { at: 41 })
//!     .when(|counter| counter.increment())
//!     .then(Incremented {})
//!     .and_state(|counter| assert_eq!(counter.value, 42));
//!
//! Counter::given_nothing()
//!     .when(|counter| counter.increment())
//!     .then_error(CounterError::NotStarted);
//! ```
//!
//! ## Running it
//!
//! A [`Repository`] loads an aggregate from an [`EventStore`] (its latest snapshot plus the
//! events after it), runs a command, and appends what the command decided with the version it
//! saw. [`SqliteStore`] (feature `sqlite`, on by default) keeps everything in one file;
//! [`InMemoryStore`] keeps it in memory. Both pass the same conformance suite
//! ([`conformance_suite!`], feature `testing`).
//!
//! ```
//! # use es::prelude::*;
//! # /// Started.
//! # #[event(version = 1)]
//! # pub struct Started { pub at: u64 }
//! # #[derive(Aggregate, Default, Debug, Clone)]
//! # #[aggregate(id = Uuid, events(Started))]
//! # pub struct Counter { value: u64 }
//! # impl Apply<Started> for Counter { fn apply(&mut self, e: &Started) { self.value = e.at; } }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let counters = Repository::<Counter, _>::new(SqliteStore::open_in_memory()?).with_retry(RetryPolicy::default());
//! let id = Uuid::now_v7();
//! let committed = counters.execute(&id, |_| Ok(Started { at: 41 })).await?;
//! assert_eq!(committed[0].stream_version, Version(1));
//! let loaded = counters.load(&id).await?;
//! assert_eq!((loaded.value, loaded.version), (41, Version(1)));
//! # Ok(())
//! # }
//! ```
//!
//! ## The macros
//!
//! - [`#[event(version = N, ...)]`](macro@event) makes a struct an event: its stored name, its
//!   version, how older versions are read (`upcast_from`, `upcast_json`) and its schema.
//! - [`#[derive(Aggregate)]`](derive@Aggregate) with `#[aggregate(id = ..., events(...), ...)]`
//!   implements [`Aggregate`](trait@Aggregate): the event enum, the apply dispatch, snapshots
//!   and the given/when/then entry points.
//! - [`#[es::apply]`](macro@apply) on an `impl` block turns each handler method into an
//!   `impl Apply<E>`.
//!
//! Each one's page lists every key, what it generates and an example.

pub use es_core::*;
pub use es_derive::{Aggregate, apply, event};
#[cfg(feature = "sqlite")]
pub use es_sqlite::SqliteStore;
pub use uuid::Uuid;

/// Everything a domain module needs: `use es::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "sqlite")]
    pub use crate::SqliteStore;
    pub use crate::testing::Scenario;
    pub use crate::{
        Aggregate, Apply, CommandOptions, Envelope, Event, EventSet, EventStore, InMemoryStore, IntoEvents, Metadata,
        RawEvent, Repository, RetryPolicy, Uuid, Version, event,
    };
    pub use serde::{Deserialize, Serialize};
}

#[doc(hidden)]
pub mod __private {
    pub use es_core::__private::*;
}

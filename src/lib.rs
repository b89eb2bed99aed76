//! # es — declarative event-sourced aggregates
//!
//! Declare events with `#[event(version = N)]` and an aggregate with `#[derive(Aggregate)]`;
//! es generates the event enum, the apply dispatch, decoding with typed upcasting of old event
//! versions, the given/when/then entry points and the schema of every event.
//!
//! ```
//! use es::prelude::*;
//! use es::testing::*; // given/when/then, in tests
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
//! A [`Repository`] loads an aggregate from an [`EventStore`] (its cached state or latest
//! snapshot, plus the events after it), runs a command, and appends what the command decided
//! with the version it saw. [`SqliteStore`] (feature `sqlite`, on by default) keeps everything
//! in one file; `PostgresStore` (feature `postgres`) in a PostgreSQL schema shared by many
//! processes; [`InMemoryStore`] keeps it in memory; [`AnyStore`] picks one at run time
//! (`AnyStore::connect_from_env_or("bank.db").await` reads `DATABASE_URL`). Every store passes the same
//! conformance suite (`es::conformance_suite!`, feature `testing`), and the same projection
//! suite (`es::projection_suite!`) with its read model committed where a user keeps it
//! (`SqliteCheckpoints`, `PostgresCheckpoints`: exactly once, in the store's own database).
//!
//! Where things are: domain code needs `es::prelude::*`; tests add `es::testing::*`
//! (given/when/then); the store contract and the store-author kit are in [`store`]; the
//! records every store shares are in [`record`].
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
//! let counters = Repository::<Counter, _>::new(es::SqliteStore::open_in_memory()?).with_retry(RetryPolicy::default());
//! let id = Uuid::now_v7();
//! let committed = counters.execute(&id, |_| Ok(Started { at: 41 })).await?;
//! assert_eq!(committed[0].stream_version, Version(1));
//! assert!(!committed.already_applied());
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
//! - [`#[derive(Projection)]`](derive@Projection) with `#[projection(name = ..., events(...))]`
//!   implements [`Projection`](trait@Projection) for a read model, one [`Handle<E>`](Handle)
//!   per event; a [`projection::ProjectionRunner`] keeps it up to date (catch-up, following,
//!   retries, checkpoints, `wait_for`, status).
//!
//! Each one's page lists every key, what it generates and an example.
//!
//! ## Schema docs and the schema lock
//!
//! With feature `schema-docs` (on by default), the annotations render as Markdown, JSON Schema
//! and AsyncAPI 3.0 ([`schema::markdown`], [`schema::json_schema`], [`schema::asyncapi`]), and
//! [`schema::lock`] fails a test when an event version that was already released changed shape.
//! Feature `json-schema` describes nested types precisely (schemars) and lets the lock see
//! changes inside them.
//!
//! ```
//! # use es::prelude::*;
//! # /// A counter was started.
//! # #[event(version = 1)]
//! # pub struct Started { pub at: u64 }
//! # /// A counter.
//! # #[derive(Aggregate, Default, Debug, Clone)]
//! # #[aggregate(id = Uuid, events(Started))]
//! # pub struct Counter { value: u64 }
//! # impl Apply<Started> for Counter { fn apply(&mut self, e: &Started) { self.value = e.at; } }
//! use es::schema::{System, lock, markdown};
//!
//! let system = System::of::<(Counter,)>("counters");
//! assert!(markdown::render(&system).contains("### Started"));
//! // In a test: `lock::assert_up_to_date(&system, "tests/schema.lock.json");`
//! let locked = lock::Lock::of(&system);
//! assert!(lock::compare(&locked, &lock::Lock::of(&system)).is_clean());
//! ```

pub use es_core::projection;
pub use es_core::projection::{Handle, HandlerError, Projection};
pub use es_core::{
    Aggregate, AppendOutcome, Appended, Apply, Checkpoint, CommandOptions, CommandResult, DecodeError, DecodeErrorKind,
    Envelope, Event, EventSet, EventStore, Executed, ExpectedVersion, InMemoryStore, IntoEvents, Loaded, Metadata,
    NewEvent, Position, RawEvent, ReadAllFilter, Repository, RepositoryError, RetryPolicy, Snapshot, SnapshotPolicy,
    StoreError, StoredEvent, StreamId, UpcastError, Version, decode_raw, decode_record, record, repository, store,
    timer,
};
pub use es_derive::{Aggregate, Projection, apply, event};
/// Events to other processes over NATS JetStream (feature `nats`): the outbox [`Relay`](nats::Relay)
/// and the [`Consumer`](nats::Consumer) that feeds projections exactly once.
#[cfg(feature = "nats")]
pub use es_nats as nats;
#[cfg(feature = "postgres")]
pub use es_postgres::{
    PostgresCheckpoints, PostgresFlush, PostgresInline, PostgresInlineStore, PostgresOptions, PostgresStore,
};
#[cfg(feature = "sqlite")]
pub use es_sqlite::{InlineProjection, InlineStore, SqliteCheckpoints, SqliteStore};
pub use uuid::Uuid;

/// `#[derive(es::JsonSchema)]` for the types nested in events (feature `json-schema`), with
/// `#[schemars(crate = "es::__private::schemars")]` beside it: `#[event]` derives it on the event
/// itself, and a nested type without it is a compile error that names the type.
#[cfg(feature = "json-schema")]
pub use es_core::__private::schemars::JsonSchema;
/// The serde es uses: snapshot state derives `Serialize` and `Deserialize` from `es::prelude`
/// with `#[serde(crate = "es::serde")]`, so that a crate needs no serde dependency of its own.
pub use serde;
/// The serde_json es uses: JSON upcasters (`upcast_json`) take and return
/// `es::serde_json::Value`.
pub use serde_json;

#[cfg(feature = "testing")]
pub use es_core::{conformance_suite, projection_suite};

/// The schema model (what `#[event]` and `#[derive(Aggregate)]` record) and, with feature
/// `schema-docs` (on by default), what is made of it: [`System`](schema::System), the
/// [`markdown`](schema::markdown), [`json_schema`](schema::json_schema) and
/// [`asyncapi`](schema::asyncapi) renderers, and the schema [`lock`](schema::lock).
pub mod schema {
    pub use es_core::schema::*;
    #[cfg(feature = "schema-docs")]
    pub use es_schema::{AggregateList, System, asyncapi, json_schema, lock, markdown};
}

mod any_store;
pub use any_store::{AnyStore, AnyStoreError};

/// Given/when/then for aggregates (`use es::testing::*;`), and the store conformance suite
/// (feature `testing`).
pub mod testing {
    pub use crate::{EventSet, RawEvent};
    pub use es_core::testing::*;
}

/// What domain code needs: `use es::prelude::*;`. The harness is in [`testing`],
/// the store contract in [`store`].
pub mod prelude {
    pub use crate::{
        Aggregate, Apply, CommandOptions, Envelope, Event, Handle, HandlerError, Projection, Repository, RetryPolicy,
        Uuid, Version, event,
    };
    pub use serde::{Deserialize, Serialize};
}

#[doc(hidden)]
pub mod __private {
    pub use es_core::__private::*;
}

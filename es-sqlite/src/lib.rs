//! [`SqliteStore`]: the embedded default event store of [es](https://docs.rs/es), one SQLite
//! file (rusqlite with SQLite bundled, so nothing to install) in WAL mode.
//!
//! ```no_run
//! # fn main() -> Result<(), es_core::StoreError> {
//! let store = es_sqlite::SqliteStore::open("bank.db")?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! It implements [`EventStore`] with every guarantee of the contract: optimistic concurrency,
//! all-or-nothing batches, idempotent retries by event id, one store-wide order that readers of
//! all events follow without skipping, and typed errors (never panics) for rows it cannot read.
//! Read models may live in the same file and change in the append's own transaction
//! ([`SqliteStore::append_with`], [`SqliteStore::transaction`], [`SqliteStore::read`]).
//!
//! ```
//! use es_core::{Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent, RawEvent, ReadAllFilter, StreamId, Version};
//! use es_sqlite::SqliteStore;
//!
//! fn deposited(amount: u64) -> NewEvent {
//!     let payload = format!(r#"{{"amount":{amount},"reference":"salary"}}"#);
//!     NewEvent::new(RawEvent::new("MoneyDeposited", 2, payload)).with_metadata(Metadata::new().with_header("user", "ann"))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open_in_memory()?; // or SqliteStore::open("bank.db")?
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! runtime.block_on(async {
//!     let account = StreamId::new("BankAccount", "42");
//!     let batch = vec![deposited(50), deposited(20)];
//!     let committed = store.append(&account, ExpectedVersion::NoStream, batch.clone()).await?;
//!     assert!(committed.was_written());
//!     assert_eq!(committed.events[1].stream_version, Version(2));
//!
//!     // A retry of the same append (same ids, same content) returns the stored events, and
//!     // says that it did not write them.
//!     let retried = store.append(&account, ExpectedVersion::NoStream, batch).await?;
//!     assert!(!retried.was_written());
//!     assert_eq!(retried.events, committed.events);
//!
//!     // An append that expected another version is a typed conflict and writes nothing.
//!     let stale = store.append(&account, ExpectedVersion::Exact(Version(1)), vec![deposited(5)]).await;
//!     assert!(stale.is_err_and(|error| error.is_conflict()));
//!
//!     let page = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 100).await?;
//!     assert_eq!(page.events, committed.events);
//!     Ok::<_, es_core::StoreError>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - **Connections.** One writer connection behind a mutex serves every append, snapshot
//!   write and [`SqliteStore::transaction`]. For a file, reads go to a pool of separate,
//!   query-only connections, so in WAL mode they neither wait for nor block the writer. The
//!   pool opens connections as reads need them, up to [`SqliteOptions::max_readers`] (8 by
//!   default); a read that finds them all in use waits up to [`SqliteOptions::pool_timeout`]
//!   and then fails with the transient [`BackendErrorKind::PoolTimeout`]. `:memory:`
//!   databases use the single connection for everything, since every in-memory connection
//!   would be a database of its own.
//! - **Async.** The [`EventStore`] futures (and `transaction`, `append_with`, `read`) run the
//!   blocking SQLite work on [`tokio::task::spawn_blocking`] when called inside a Tokio
//!   runtime, and inline otherwise (any other executor, or none). An append whose future is
//!   dropped while it runs still commits or fails as a whole; retry it with the same event ids
//!   to learn which ([`AppendOutcome::AlreadyStored`] says it was committed before).
//! - **Appends.** One IMMEDIATE transaction: the batch's first id looked up (a retry has every
//!   id stored and returns the stored events; a batch whose first id is new is no retry, and
//!   another of its ids already stored is refused by the unique index and then named as
//!   [`StoreError::EventIdReused`]), the stream's version checked, the rows inserted, the
//!   `append_with` hook run, the commit. Positions come from `AUTOINCREMENT` and become
//!   visible strictly in order, so a reader's checkpoint (the last position it examined, taken
//!   with the page in one read transaction) never skips an event committed later.
//! - **Several processes.** Any number of processes may open the same file: SQLite serializes
//!   their writes, and a writer waits up to [`SqliteOptions::busy_timeout`] (10 seconds by
//!   default) for another one's transaction before failing with the transient
//!   [`BackendErrorKind::Busy`].
//! - **Durability.** Commits are synchronous (`PRAGMA synchronous = FULL`): an append that
//!   returned survives a crash of the process or of the machine. A killed process leaves every
//!   batch either wholly stored or absent.
//! - **Schema.** The tables are `events`, `snapshots` and `store_meta`, versioned with
//!   `PRAGMA user_version` ([`SqliteStore::SCHEMA_VERSION`], now 2) and migrated forward on
//!   open in one transaction. Migration 1 → 2 creates `store_meta` with the store's id (a
//!   random UUID, the [`SqliteStore::origin`] every checkpoint carries, so that a checkpoint of
//!   another database is refused with [`StoreError::ForeignCheckpoint`]) and drops
//!   `projection_checkpoints` of schema 1: a checkpoint is kept by whoever reads, in the read
//!   model's own tables. A database written by a newer es is refused with
//!   [`StoreError::SchemaTooNew`].
//! - **Bad data.** History es never writes is a [`StoreError::Corrupt`] whose
//!   [`Corruption`](es_core::store::Corruption) names the stream, version and position it
//!   found, never skipped or guessed: a value that does not read (metadata that is not the
//!   JSON es writes, an event id that is not 16 bytes, …: `Unreadable`, naming the
//!   `table.column`), a position below 1 anywhere in the table (`ImpossiblePosition`, from
//!   every read of all events and from `head`), a row at the last position SQLite can hand
//!   out (`ImpossiblePosition` from the next append, instead of SQLite's "database or disk is
//!   full"), and versions that do not run 1, 2, 3 …
//!   (`VersionGap`, from stream reads and, through a check of each event's predecessor, from
//!   reads of all events: the predecessor is looked up in the stream index only when neither
//!   the page nor an earlier read of this store showed it, so a projection reading from the
//!   start or resuming where it stopped pays nothing, and a reader starting in the middle one
//!   lookup per stream). Payloads are handed out as stored; `es_core::decode_record` turns
//!   one that does not fit into a typed `DecodeError`.
//! - **Errors.** Storage failures are a [`StoreError::Backend`] whose
//!   [`kind`](es_core::store::BackendError::kind) tells them apart: `Busy` and `PoolTimeout`
//!   are transient ([`StoreError::is_transient`]); `StorageFull`, `ReadOnly`,
//!   `PermissionDenied`, `NotADatabase`, `Io`, `OutOfRange` are not. rusqlite's error is kept
//!   as the source. Messages say what the store was doing and never carry SQL or unbounded
//!   input: filters are bound as one JSON array each, whatever their length. At open, a file
//!   this process may not write is refused as `ReadOnly` naming the file (rather than opened
//!   read-only to fail at the first append), a directory it may not create files in (SQLite
//!   keeps `-wal` and `-shm` beside the database) as `PermissionDenied` naming the directory,
//!   and a missing directory as missing.
//!
//! [`EventStore`]: es_core::EventStore
//! [`StoreError::Corrupt`]: es_core::StoreError::Corrupt
//! [`StoreError::EventIdReused`]: es_core::StoreError::EventIdReused
//! [`StoreError::Backend`]: es_core::StoreError::Backend
//! [`StoreError::ForeignCheckpoint`]: es_core::StoreError::ForeignCheckpoint
//! [`StoreError::SchemaTooNew`]: es_core::StoreError::SchemaTooNew
//! [`StoreError::is_transient`]: es_core::StoreError::is_transient
//! [`AppendOutcome::AlreadyStored`]: es_core::store::AppendOutcome::AlreadyStored
//! [`BackendErrorKind::PoolTimeout`]: es_core::store::BackendErrorKind::PoolTimeout
//! [`BackendErrorKind::Busy`]: es_core::store::BackendErrorKind::Busy

mod append;
mod bridge;
mod connections;
mod error;
mod inline;
mod lease;
mod projection;
mod read;
mod rows;
mod schema;
mod store;

/// The rusqlite this crate is built with, for SQL of your own in
/// [`SqliteStore::transaction`], [`SqliteStore::append_with`] and [`SqliteStore::read`]: use
/// it rather than a rusqlite of your own, so that the versions match.
pub use rusqlite;

pub use crate::error::backend_error;
pub use crate::inline::{InlineProjection, InlineStore};
pub use crate::projection::SqliteCheckpoints;
pub use crate::store::{SqliteOptions, SqliteStore};

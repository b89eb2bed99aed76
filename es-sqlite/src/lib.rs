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
//! - **Connections.** One writer connection behind a mutex serves every append and snapshot
//!   write. For a file, reads go to a small pool of separate connections, so in WAL mode they
//!   neither wait for nor block a writer; `:memory:` databases use the single connection for
//!   everything, since every in-memory connection would be a database of its own.
//! - **Async.** The [`EventStore`] futures run the blocking SQLite work on
//!   [`tokio::task::spawn_blocking`] when called inside a Tokio runtime, and inline otherwise.
//!   An append whose future is dropped while it runs still commits or fails as a whole; retry
//!   it with the same event ids to learn which.
//! - **Several processes.** Any number of processes may open the same file: SQLite serializes
//!   their writes, and a writer waits up to 10 seconds for another one's transaction
//!   before giving up with a backend error ("database is locked").
//! - **Durability.** Commits are synchronous (`PRAGMA synchronous = FULL`): an append that
//!   returned survives a crash of the process or of the machine. A killed process leaves every
//!   batch either wholly stored or absent.
//! - **Schema.** The tables are `events`, `snapshots` and `projection_checkpoints`, versioned
//!   with `PRAGMA user_version` and migrated forward on open in one transaction. A database
//!   written by a newer es is refused with [`StoreError::SchemaTooNew`]; a file that is not an
//!   SQLite database with a [`StoreError::Backend`] that says so.
//! - **Bad data.** A stored row this code cannot read (metadata that is not the JSON es
//!   writes, an event id that is not 16 bytes, a version below 1, …) is a
//!   [`StoreError::Corrupt`] naming the table, the position and the stream. Payloads are
//!   handed out as stored; `es_core::decode_record` turns one that does not fit into a typed
//!   `DecodeError`.

mod append;
mod bridge;
mod connections;
mod error;
mod read;
mod rows;
mod schema;
mod store;

/// The rusqlite this crate is built with, for SQL of your own in
/// [`SqliteStore::transaction`], [`SqliteStore::append_with`] and [`SqliteStore::read`]: use
/// it rather than a rusqlite of your own, so that the versions match.
pub use rusqlite;

pub use crate::error::backend_error;
pub use crate::store::{SqliteOptions, SqliteStore};

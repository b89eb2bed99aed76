//! Events of [es](https://docs.rs/es) to other processes over NATS JetStream: a [`Relay`] that
//! publishes the store's order (the store is the outbox), and a [`Consumer`] that feeds the
//! same `#[derive(Projection)]` read models a local runner feeds, exactly once.
//!
//! ```no_run
//! # use es_nats::{Relay, StreamSettings, sqlite::relay_checkpoints};
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = es_sqlite::SqliteStore::open("bank.db")?;
//! let jetstream = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
//! let settings = StreamSettings::new("BANK", "bank"); // stream BANK holds subjects bank.>
//! // Its checkpoint in the store's file; one relay at a time per store (the store's lease).
//! let relay = Relay::new(store.clone(), relay_checkpoints(store.clone()).await?, jetstream, settings);
//! tokio::spawn(relay.run());
//! # Ok(())
//! # }
//! ```
//!
//! # Publishing
//!
//! The relay reads [`EventStore::read_all`](es_core::EventStore::read_all) from its own
//! checkpoint (kept in the store, like a projection's) and publishes each event
//!
//! - on subject `<prefix>.<stream type>.<event type>` ([`Subjects`]; configurable);
//! - with the event id as `Nats-Msg-Id`, JetStream's de-duplication key;
//! - with the envelope as headers ([`envelope::header`]: stream type and id, version,
//!   position, event type, schema version, metadata, recorded time);
//! - with the payload as it is stored.
//!
//! It publishes a batch without waiting between messages, then waits for JetStream's
//! acknowledgement of every one of them, and only then saves the checkpoint after the batch.
//! A failed publication is tried again from the first event not acknowledged.
//!
//! **Nothing is lost.** An event is committed to the store before the relay can read it, and
//! the checkpoint passes it only after JetStream acknowledged it (stored it, replicated as the
//! stream says). A process that dies anywhere between the commit and the save leaves the
//! checkpoint before the event, and the next relay publishes it again.
//!
//! **No duplicate reaches a consumer.** What the next relay publishes again is at most the one
//! batch whose checkpoint was not saved, and JetStream drops each of those messages as a
//! duplicate (same `Nats-Msg-Id`) if it comes within the stream's **duplicate window** of the
//! first publication. The relay keeps restarts inside that window:
//!
//! - a relay restarted in place republishes within moments;
//! - a relay that dies without a word (SIGKILL, a lost machine) holds the store's
//!   [`Lease`](es_core::store::Lease) that it renews every third of
//!   [`RelayOptions::lease_ttl`] (10 s); a waiting relay takes over when it expires, so the
//!   first new publication follows the last old one by at most the time to live plus one
//!   lease poll (a quarter of it): 12.5 s by default;
//! - on start the relay checks the stream's window ([`StreamSettings::duplicate_window`],
//!   2 minutes by default, and never less than [`StreamSettings::MIN_DUPLICATE_WINDOW`],
//!   a minute, which is more than four times that takeover): it refuses a stream whose window
//!   is shorter than the settings say ([`StreamError::DuplicateWindow`]), and settings whose
//!   window is shorter than twice the takeover its lease allows ([`StreamError::Settings`]).
//!
//! **When it cannot.** If no relay runs for longer than the window (every relay process down
//! for minutes, a stream whose window was shortened), the repeated batch is stored in the
//! stream a second time, and consumers receive those events twice. The consumer is safe
//! anyway: it remembers the last version applied of each stream with its read model and
//! skips a message at or below it ([`CommitApplied`]), so the read model still sees each
//! event once. (A bare subscriber that does not do this sees the duplicates; it can drop them
//! by the `Es-Event-Id` header.)
//!
//! **Order.** One relay publishes at a time (the lease), in the store's order, over one
//! connection, so the stream holds a store's events in its order. Two exceptions, both
//! handled by the consumer's per-stream check: a publication that failed while the ones after
//! it were stored (those are then published again, and dropped as duplicates, but the failed
//! one lands after them), and a relay that lost its lease without noticing yet, publishing
//! beside its successor for at most one renewal.
//!
//! **The stream.** [`StreamSettings`] name it, its subjects (`<prefix>.>`), retention and
//! duplicate window. The relay (and the consumer) creates it when missing and checks those
//! three when it exists, with a typed [`StreamError`] that says what to change.
//!
//! # Consuming
//!
//! A [`Consumer`] is a durable JetStream pull consumer (explicit acknowledgement, named after
//! the projection and its version) that rebuilds each message's
//! [`StoredEvent`](es_core::StoredEvent) from its headers and payload and hands it to
//! [`Projection::dispatch`](es_core::projection::Projection::dispatch): decoding, aliases and
//! upcasting are the projection's own, as under a local
//! [`ProjectionRunner`](es_core::projection::ProjectionRunner). It acknowledges a message only
//! after its batch was committed, keeps each stream's order, retries failing handlers and then
//! stops or parks as [`ProjectionOptions`](es_core::projection::ProjectionOptions) says. See
//! [`Consumer`] for the details, and [`sqlite::SqliteReadModel`] for an exactly-once read model
//! in SQLite.
//!
//! Everything here runs on Tokio (async-nats needs it).
//!
//! # Figures
//!
//! `cargo bench -p es-nats --bench relay` (a local nats-server 2.9 with file storage, 2 cores,
//! two runs):
//!
//! | | events/s |
//! | --- | --- |
//! | bare async-nats loop: the same messages (headers and payloads), batches of 500 sent, then their acknowledgements awaited | 34,900 / 23,000 |
//! | relay: read from SQLite in batches of 500, published, acknowledgements awaited, checkpoint saved | 34,700 / 21,900 (0.99× / 0.95×) |
//!
//! End-to-end lag from the append's commit to the consumer's commit of a SQLite read model,
//! under 500 appends/s for 10 s (relay and consumer in one process): median 1.6–1.8 ms, p99
//! 11–14 ms. The machine's noise moves the absolute figures between runs; the ratio stays.

mod consumer;
pub mod envelope;
#[cfg(feature = "postgres")]
pub mod postgres;
mod relay;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod stream;

/// The async-nats this crate is built with: connect with it, so that the versions match.
pub use async_nats;

pub use crate::consumer::{
    Applied, CommitApplied, Consumer, ConsumerError, ConsumerHandle, ConsumerOptions, ConsumerState, InMemoryApplied,
};
pub use crate::envelope::{BadMessage, Subjects};
pub use crate::relay::{Relay, RelayError, RelayHandle, RelayOptions, RelayState, message};
pub use crate::stream::{StreamError, StreamSettings};

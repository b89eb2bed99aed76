//! The outbox relay: the store's order, from the relay's own checkpoint, to JetStream.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self};
use bytes::Bytes;
use es_core::projection::{CheckpointStoreError, CommitBatch, FailedEvent, ProjectionIdentity, SavedCheckpoint};
use es_core::store::{
    AllEventsPage, Checkpoint, CommitSignal, EventStore, Lease, LeaseLost, Leases, ReadAllFilter, StoreError,
};
use es_core::{RetryPolicy, StoredEvent};
use uuid::Uuid;

use crate::envelope;
use crate::stream::{StreamError, StreamSettings, ensure};

/// How a relay reads, publishes, retries and holds its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// Events read and published per batch: published without waiting in between, then every
    /// acknowledgement awaited, then the checkpoint saved. Also the most a restart publishes
    /// again.
    pub batch_size: usize,
    /// How often a caught-up relay reads again when no commit in this process woke it: the
    /// longest delay before it sees an event another process appended.
    pub poll_interval: Duration,
    /// How often a batch whose publication failed is tried again, with which backoff, before
    /// the relay stops with [`RelayError::Publish`]. Every try resumes after the last event
    /// JetStream acknowledged.
    pub retry: RetryPolicy,
    /// The lease's time to live: a relay that stops renewing (a killed process) is replaced
    /// after at most this long. It renews every third of it.
    pub lease_ttl: Duration,
}

impl Default for RelayOptions {
    /// Batches of 500, a poll every second, 10 tries with backoff from 50 ms up to 5 s, a
    /// lease of 10 s.
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy {
                max_attempts: 10,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(5),
            },
            lease_ttl: Duration::from_secs(10),
        }
    }
}

/// Why a relay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The stream is missing and could not be created, or does not fit.
    #[error(transparent)]
    Stream(StreamError),
    /// Reading the events failed.
    #[error("relay `{relay}`: reading the events failed")]
    Store {
        /// The relay.
        relay: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Loading or saving the relay's checkpoint failed.
    #[error("relay `{relay}`: its checkpoint could not be loaded or saved")]
    Checkpoints {
        /// The relay.
        relay: String,
        /// The checkpoint store's error.
        #[source]
        source: CheckpointStoreError,
    },
    /// Taking the lease failed.
    #[error("relay `{relay}`: its lease could not be taken")]
    Lease {
        /// The relay.
        relay: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The lease is no longer this relay's (another relay took it over after this one could
    /// not renew it in time, or it lapsed): this one stopped publishing. Run it again to wait
    /// for its turn.
    #[error("relay `{relay}` lost its lease and stopped publishing")]
    LeaseLost {
        /// The relay.
        relay: String,
        /// How it was lost.
        #[source]
        source: LeaseLost,
    },
    /// JetStream did not acknowledge an event after the last try.
    #[error("relay `{relay}`: JetStream did not take {event} after {attempts} tries")]
    Publish {
        /// The relay.
        relay: String,
        /// The first event not acknowledged.
        event: FailedEvent,
        /// How often it was tried.
        attempts: u32,
        /// The client's last error.
        #[source]
        source: PublishError,
    },
    /// An event is larger than the server's `max_payload`: it can never be published.
    #[error(
        "relay `{relay}`: {event} is {bytes} bytes with its headers, more than the server's max_payload; raise max_payload in the server's configuration"
    )]
    TooLarge {
        /// The relay.
        relay: String,
        /// The event.
        event: FailedEvent,
        /// Its payload's size.
        bytes: usize,
    },
}

pub(crate) fn failed_event(record: &StoredEvent) -> FailedEvent {
    FailedEvent {
        position: record.position,
        event_id: record.event_id,
        stream: record.stream.clone(),
        stream_version: record.stream_version,
        event_type: record.event.event_type.clone(),
        schema_version: record.event.schema_version,
    }
}

/// Where a relay is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayState {
    /// `run()` has not been polled yet, or it is checking the stream.
    Starting,
    /// Waiting for the lease another relay holds.
    Waiting,
    /// Holding the lease and publishing (or caught up and waiting for new events).
    Publishing,
    /// Stopped by [`RelayHandle::stop`].
    Stopped,
    /// Stopped with an error (its message with its causes).
    Failed(String),
}

struct Progress {
    state: RelayState,
    checkpoint: Checkpoint,
}

struct Shared {
    progress: Mutex<Progress>,
    changed: CommitSignal,
    published: AtomicU64,
    duplicates: AtomicU64,
    stop: AtomicBool,
    stopping: CommitSignal,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.lock());
        self.changed.notify();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Publishes every event of a store to JetStream, in the store's order, once per event id.
///
/// See the [crate docs](crate) for what it guarantees and why. [`Relay::run`] is a future to
/// spawn on a Tokio runtime; [`Relay::handle`] watches and stops it.
///
/// - `store`: any [`EventStore`]; the relay reads [`EventStore::read_all`] from its checkpoint.
/// - `checkpoints`: where its checkpoint is kept, named `es-nats relay <stream>`: any
///   [`CheckpointStore`](es_core::projection::CheckpointStore), or (SQLite, the store's own
///   file) [`sqlite::relay_checkpoints`](crate::sqlite::relay_checkpoints).
/// - The lease (one relay at a time) is the store's own ([`Leases`]: memory, SQLite,
///   PostgreSQL), named like the checkpoint.
pub struct Relay<S, C> {
    store: Arc<S>,
    checkpoints: C,
    jetstream: jetstream::Context,
    stream: StreamSettings,
    options: RelayOptions,
    name: String,
    holder: String,
    shared: Arc<Shared>,
}

impl<S, C> fmt::Debug for Relay<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay").field("name", &self.name).field("options", &self.options).finish_non_exhaustive()
    }
}

impl<S: EventStore + Leases, C: CommitBatch<()>> Relay<S, C> {
    /// A relay of `store` to the stream `stream` describes, through `jetstream`, with the
    /// default [`RelayOptions`].
    pub fn new(store: S, checkpoints: C, jetstream: jetstream::Context, stream: StreamSettings) -> Self {
        Self::with_shared_store(Arc::new(store), checkpoints, jetstream, stream)
    }

    /// [`Relay::new`] over a store shared with others.
    pub fn with_shared_store(
        store: Arc<S>,
        checkpoints: C,
        jetstream: jetstream::Context,
        stream: StreamSettings,
    ) -> Self {
        let name = format!("es-nats relay {}", stream.name);
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress { state: RelayState::Starting, checkpoint: Checkpoint::START }),
            changed: CommitSignal::new(),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stopping: CommitSignal::new(),
        });
        // Unique per relay value: two relays of one process are two holders.
        let holder = format!("relay pid {} {}", std::process::id(), Uuid::now_v7());
        Self { store, checkpoints, jetstream, stream, options: RelayOptions::default(), name, holder, shared }
    }

    /// The same relay with these options.
    #[must_use]
    pub fn with_options(mut self, options: RelayOptions) -> Self {
        self.options = options;
        self
    }

    /// The name of its checkpoint and its lease: `es-nats relay <stream>`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle to watch and stop the relay.
    #[must_use]
    pub fn handle(&self) -> RelayHandle {
        RelayHandle { shared: Arc::clone(&self.shared) }
    }

    /// Checks (or creates) the stream, waits for the lease, then publishes until
    /// [`RelayHandle::stop`] (`Ok`) or an error. The lease is released on the way out.
    ///
    /// # Errors
    /// The [`RelayError`] that stopped it.
    pub async fn run(self) -> Result<(), RelayError> {
        let result = self.run_inner().await;
        match &result {
            Ok(()) => self.shared.update(|p| p.state = RelayState::Stopped),
            Err(error) => {
                let message = chain(error);
                tracing::error!(relay = %self.name, error = %message, "relay stopped");
                self.shared.update(|p| p.state = RelayState::Failed(message));
            }
        }
        result
    }

    async fn run_inner(&self) -> Result<(), RelayError> {
        // A takeover comes at most a time to live (and a quarter of it, the waiting relay's
        // poll) after the last publication: twice that must fit in the duplicate window.
        let takeover = self.options.lease_ttl.saturating_mul(5) / 4;
        if self.stream.duplicate_window < takeover.saturating_mul(2) {
            return Err(RelayError::Stream(StreamError::Settings {
                stream: self.stream.name.clone(),
                problem: format!(
                    "a duplicate window of {:?} is shorter than twice the {takeover:?} a takeover may take with a lease of {:?}: raise the window or shorten the lease",
                    self.stream.duplicate_window, self.options.lease_ttl
                ),
            }));
        }
        ensure(&self.jetstream, &self.stream).await.map_err(RelayError::Stream)?;
        let Some(mut lease) = self.acquire().await? else { return Ok(()) };
        tracing::info!(relay = %self.name, token = lease.grant().token, "lease taken: publishing");
        self.shared.update(|p| p.state = RelayState::Publishing);
        let result = tokio::select! {
            result = self.publish() => result,
            lost = lease.keep() => return Err(RelayError::LeaseLost { relay: self.name.clone(), source: lost }),
        };
        if let Err(error) = lease.release().await {
            tracing::warn!(relay = %self.name, error = %error, "the lease could not be released; it expires by itself");
        }
        result
    }

    /// Waits for the lease; `None` when stopped first.
    async fn acquire(&self) -> Result<Option<Lease<Arc<S>>>, RelayError> {
        let lease_error = |source| RelayError::Lease { relay: self.name.clone(), source };
        let (store, ttl) = (Arc::clone(&self.store), self.options.lease_ttl);
        if let Some(lease) =
            Lease::try_acquire(Arc::clone(&store), &self.name, &self.holder, ttl).await.map_err(lease_error)?
        {
            return Ok(Some(lease));
        }
        tracing::info!(relay = %self.name, "another relay holds the lease: waiting");
        self.shared.update(|p| p.state = RelayState::Waiting);
        let stop_seen = self.shared.stopping.generation();
        if self.shared.stopped() {
            return Ok(None);
        }
        tokio::select! {
            lease = Lease::acquire(store, &self.name, &self.holder, ttl) => lease.map(Some).map_err(lease_error),
            () = self.shared.stopping.changed(stop_seen) => Ok(None),
        }
    }

    fn identity(&self) -> ProjectionIdentity {
        ProjectionIdentity::new(self.name.clone(), 1, "relay")
    }

    async fn publish(&self) -> Result<(), RelayError> {
        let checkpoints_error = |source| RelayError::Checkpoints { relay: self.name.clone(), source };
        let mut checkpoint = self
            .checkpoints
            .load(&self.name)
            .await
            .map_err(checkpoints_error)?
            .map_or(Checkpoint::START, |saved| saved.checkpoint);
        self.shared.update(|p| p.checkpoint = checkpoint.clone());
        let signal = self.store.commit_signal();
        let (filter, batch_size, no_state) =
            (ReadAllFilter::all(), self.options.batch_size.max(1), Arc::new(Mutex::new(())));
        loop {
            if self.shared.stopped() {
                return Ok(());
            }
            let seen = signal.as_ref().map(CommitSignal::generation);
            let stop_seen = self.shared.stopping.generation();
            let mut page = self
                .store
                .read_all(&checkpoint, &filter, batch_size)
                .await
                .map_err(|source| RelayError::Store { relay: self.name.clone(), source })?;
            if page.events.is_empty() && page.next != checkpoint {
                // Nothing to publish, but the store's order moved on (a store whose checkpoint
                // is more than a position): resume from there.
                checkpoint = page.next;
                continue;
            }
            if page.events.is_empty() {
                let commit = async {
                    match (&signal, seen) {
                        (Some(signal), Some(seen)) => signal.changed(seen).await,
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = commit => {}
                    () = self.shared.stopping.changed(stop_seen) => {}
                    () = tokio::time::sleep(self.options.poll_interval) => {}
                }
                continue;
            }
            self.publish_page(&mut page).await?;
            // Every event of the page is acknowledged: only now does the checkpoint pass them.
            let saved = SavedCheckpoint::new(self.identity(), page.next.clone());
            self.checkpoints.commit(&no_state, &saved).await.map_err(checkpoints_error)?;
            checkpoint = page.next;
            self.shared.update(|p| p.checkpoint = checkpoint.clone());
        }
    }

    /// Publishes every event of `page` and waits for JetStream's acknowledgement of each,
    /// trying again from the first one not acknowledged.
    async fn publish_page(&self, page: &mut AllEventsPage) -> Result<(), RelayError> {
        let events = std::mem::take(&mut page.events);
        let mut acked = 0;
        let mut attempt = 1;
        loop {
            let (done, error) = self.publish_from(&events[acked..]).await;
            acked += done;
            let Some(error) = error else { return Ok(()) };
            let event = failed_event(&events[acked]);
            if error.kind() == PublishErrorKind::MaxPayloadExceeded {
                return Err(RelayError::TooLarge {
                    relay: self.name.clone(),
                    event,
                    bytes: events[acked].event.payload.len(),
                });
            }
            if done > 0 {
                attempt = 1;
            }
            if attempt >= self.options.retry.max_attempts {
                return Err(RelayError::Publish { relay: self.name.clone(), event, attempts: attempt, source: error });
            }
            tracing::warn!(relay = %self.name, event = %event, attempt, error = %error, "publishing failed; trying again");
            tokio::time::sleep(self.options.retry.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Sends `events` one after the other without waiting, then awaits the acknowledgements
    /// in order: how many were acknowledged before the first failure, and that failure.
    async fn publish_from(&self, events: &[StoredEvent]) -> (usize, Option<PublishError>) {
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
        let mut send_error = None;
        for event in events {
            match self.jetstream.send_publish(self.stream.subjects.subject(event), message(event)).await {
                Ok(ack) => pending.push(ack),
                Err(error) => {
                    send_error = Some(error);
                    break;
                }
            }
        }
        let mut done = 0;
        for ack in pending {
            match ack.await {
                Ok(ack) => {
                    done += 1;
                    self.shared.published.fetch_add(1, Ordering::Relaxed);
                    if ack.duplicate {
                        self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => return (done, Some(error)),
            }
        }
        (done, send_error)
    }
}

/// The message of `event`: the envelope as headers (with `Nats-Msg-Id`), the payload as stored.
#[must_use]
pub fn message(event: &StoredEvent) -> PublishMessage {
    PublishMessage::build().payload(Bytes::from(event.event.payload.clone())).headers(envelope::headers(event))
}

/// An error's message with its causes, `: `-separated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Watches and stops one relay. Clones watch the same relay.
#[derive(Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayHandle").field("state", &self.state()).finish_non_exhaustive()
    }
}

impl RelayHandle {
    /// Where the relay is.
    #[must_use]
    pub fn state(&self) -> RelayState {
        self.shared.lock().state.clone()
    }

    /// Every event before it is acknowledged by JetStream and its checkpoint saved.
    #[must_use]
    pub fn checkpoint(&self) -> Checkpoint {
        self.shared.lock().checkpoint.clone()
    }

    /// Events acknowledged by JetStream since the relay started, and how many of those
    /// JetStream recognised as duplicates (published before, within the duplicate window).
    #[must_use]
    pub fn published(&self) -> (u64, u64) {
        (self.shared.published.load(Ordering::Relaxed), self.shared.duplicates.load(Ordering::Relaxed))
    }

    /// Asks the relay to stop after the batch in hand; `run()` then returns `Ok`.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.stopping.notify();
    }

    /// Waits until the relay's checkpoint is at `target` or beyond (the store's head after a
    /// command, say). `false` after `timeout`, or when the relay stopped first.
    pub async fn wait_for(&self, target: &Checkpoint, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.shared.changed.generation();
            {
                let progress = self.shared.lock();
                if progress.checkpoint >= *target {
                    return true;
                }
                if matches!(progress.state, RelayState::Stopped | RelayState::Failed(_)) {
                    return false;
                }
            }
            if tokio::time::timeout_at(deadline, self.shared.changed.changed(seen)).await.is_err() {
                return false;
            }
        }
    }
}

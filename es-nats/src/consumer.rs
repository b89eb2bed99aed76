//! The consumer: a durable JetStream pull consumer feeding a [`Projection`], exactly once into
//! its read model.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, Message};
use es_core::DecodeError;
use es_core::projection::{
    CheckpointStoreError, DispatchError, FailedEvent, HandlerError, OnFailure, ParkedEvent, Projection,
    ProjectionOptions,
};
use es_core::store::CommitSignal;
use es_core::{StoredEvent, StreamId, Version};
use futures_util::StreamExt;

use crate::envelope::{self, BadMessage, token};
use crate::relay::{chain, failed_event};
use crate::stream::{StreamError, StreamSettings, ensure};

/// How a consumer's read model makes a batch durable **exactly once**: the changes the
/// batch's handlers kept in the projection, the last version applied of each stream the batch
/// touched, and the events it parked, in one transaction.
///
/// A message delivered again (JetStream redelivers what was not acknowledged, and the relay
/// may publish an event twice after a restart outside the duplicate window) carries a stream
/// version at or below the stored one, and is acknowledged without reaching a handler.
/// es-nats implements it for SQLite ([`SqliteReadModel`](crate::sqlite::SqliteReadModel)) and
/// in memory ([`InMemoryApplied`]).
pub trait CommitApplied<P>: Send + Sync + 'static {
    /// What consumer `consumer` has committed: the last version applied of every stream, and
    /// the events it parked.
    ///
    /// # Errors
    /// Whatever the storage reports.
    fn load(&self, consumer: &str) -> impl Future<Output = Result<Applied, CheckpointStoreError>> + Send;

    /// Writes what `projection` kept for the batch and, in the same transaction, `applied`
    /// (each stream's new last version) and `parked` (the events the batch set aside) for
    /// `consumer`.
    ///
    /// # Errors
    /// Whatever the storage reports: nothing of the batch is then written, and its messages
    /// are delivered again.
    fn commit(
        &self,
        consumer: &str,
        projection: &Arc<Mutex<P>>,
        applied: &[(StreamId, Version)],
        parked: &[ParkedEvent],
    ) -> impl Future<Output = Result<(), CheckpointStoreError>> + Send;
}

/// What a consumer has committed ([`CommitApplied::load`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The last version applied of every stream.
    pub versions: HashMap<StreamId, Version>,
    /// The events it parked, oldest first.
    pub parked: Vec<ParkedEvent>,
}

/// Applied versions in memory, for a read model in memory: exactly once for the life of the
/// process (a new process starts from an empty read model, and so from the first event: give
/// its consumer a new durable name, or keep both in a database). Clones share them.
#[derive(Debug, Clone, Default)]
pub struct InMemoryApplied {
    applied: Arc<Mutex<HashMap<String, Applied>>>,
}

impl InMemoryApplied {
    /// Nothing applied.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl<P: Send + 'static> CommitApplied<P> for InMemoryApplied {
    async fn load(&self, consumer: &str) -> Result<Applied, CheckpointStoreError> {
        Ok(self.applied.lock().unwrap_or_else(PoisonError::into_inner).get(consumer).cloned().unwrap_or_default())
    }

    async fn commit(
        &self,
        consumer: &str,
        _projection: &Arc<Mutex<P>>,
        applied: &[(StreamId, Version)],
        parked: &[ParkedEvent],
    ) -> Result<(), CheckpointStoreError> {
        let mut all = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = all.entry(consumer.to_owned()).or_default();
        entry.versions.extend(applied.iter().cloned());
        entry.parked.extend(parked.iter().cloned());
        Ok(())
    }
}

/// How a consumer reads, reacts to failures, and waits for a missing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// Failure handling, as for local projections: `retry` (tries with backoff) and
    /// `on_failure` (stop, or park and go on); `batch_size` is the most messages handled
    /// before one commit. `poll_interval` and `on_identity_change` are not used: JetStream
    /// pushes new messages, and a new identity is a new durable consumer.
    pub projection: ProjectionOptions,
    /// The durable consumer's name; `<projection name>_v<version>` when `None`, so that a
    /// bumped version starts a new consumer from the first event.
    pub durable_name: Option<String>,
    /// Messages JetStream hands out before they are acknowledged.
    pub max_ack_pending: i64,
    /// How long JetStream waits for an acknowledgement before it delivers a message again.
    pub ack_wait: Duration,
    /// How long a message that arrived before an earlier event of its stream is put back
    /// before it is delivered again.
    pub gap_delay: Duration,
    /// How often such a message is delivered before the consumer gives up on the missing
    /// event and treats the message as failed (`on_failure`). `gap_delay × gap_deliveries`
    /// must be at least twice `ack_wait`: after a consumer process died, the messages it had
    /// received and not acknowledged come back only after `ack_wait`, and the later events of
    /// their streams arrive first and wait for them.
    pub gap_deliveries: i64,
}

impl ConsumerOptions {
    /// How long a message waits for a missing predecessor in all: `gap_delay × gap_deliveries`.
    #[must_use]
    pub fn gap_timeout(&self) -> Duration {
        self.gap_delay.saturating_mul(u32::try_from(self.gap_deliveries.max(0)).unwrap_or(u32::MAX))
    }
}

impl Default for ConsumerOptions {
    /// The default [`ProjectionOptions`], up to 10,000 messages pending, 30 s to acknowledge,
    /// a missing event waited for 90 times 1 s.
    fn default() -> Self {
        Self {
            projection: ProjectionOptions::default(),
            durable_name: None,
            max_ack_pending: 10_000,
            ack_wait: Duration::from_secs(30),
            gap_delay: Duration::from_secs(1),
            gap_deliveries: 90,
        }
    }
}

/// Why a consumer stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The stream is missing and could not be created, or does not fit.
    #[error(transparent)]
    Stream(StreamError),
    /// JetStream refused or failed a request.
    #[error("consumer `{consumer}`: JetStream {doing} failed")]
    JetStream {
        /// The durable consumer.
        consumer: String,
        /// What was asked.
        doing: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// The options cannot work: what to change.
    #[error("consumer `{consumer}`: {problem}")]
    Options {
        /// The durable consumer.
        consumer: String,
        /// What to change.
        problem: String,
    },
    /// The durable consumer exists with a configuration this one cannot work with.
    #[error("consumer `{consumer}` exists with {problem}: delete it (`nats consumer rm`), or name another one")]
    ConsumerConfig {
        /// The durable consumer.
        consumer: String,
        /// What does not fit.
        problem: String,
    },
    /// Loading the applied versions, or committing a batch, failed.
    #[error("consumer `{consumer}`: the read model could not be loaded or committed")]
    ReadModel {
        /// The durable consumer.
        consumer: String,
        /// The storage's error.
        #[source]
        source: CheckpointStoreError,
    },
    /// A message is not an event es published (under [`OnFailure::Stop`]).
    #[error("consumer `{consumer}` stopped at stream sequence {sequence}: {source}")]
    BadMessage {
        /// The durable consumer.
        consumer: String,
        /// The message's sequence in the JetStream stream.
        sequence: u64,
        /// What is wrong with it.
        source: BadMessage,
    },
    /// A selected event does not decode (a schema version newer than the code among them):
    /// never skipped, as with local projections.
    #[error("consumer `{consumer}` stopped at {event}: {source}")]
    Decode {
        /// The durable consumer.
        consumer: String,
        /// The event.
        event: FailedEvent,
        /// What is wrong with it.
        source: DecodeError,
    },
    /// A handler still failed after the last try, under [`OnFailure::Stop`].
    #[error("consumer `{consumer}` stopped: its handler failed {attempts} times on {event}")]
    Handler {
        /// The durable consumer.
        consumer: String,
        /// The event.
        event: FailedEvent,
        /// How often it was tried.
        attempts: u32,
        /// The handler's last error.
        #[source]
        source: HandlerError,
    },
    /// An event arrived, but an earlier one of its stream never did, under
    /// [`OnFailure::Stop`]. The JetStream stream no longer holds it (its limits dropped it,
    /// or the consumer was created after), or the relay is stopped behind it.
    #[error(
        "consumer `{consumer}` stopped at {event}: version {expected} of its stream never arrived after {deliveries} deliveries"
    )]
    Gap {
        /// The durable consumer.
        consumer: String,
        /// The event that arrived.
        event: FailedEvent,
        /// The version it waited for.
        expected: Version,
        /// How often the later event was delivered.
        deliveries: i64,
    },
}

/// Where a consumer is.
#[derive(Debug, Clone)]
pub enum ConsumerState {
    /// `run()` has not been polled yet, or it is setting up.
    Starting,
    /// Handling messages, or waiting for them.
    Running,
    /// Stopped by [`ConsumerHandle::stop`].
    Stopped,
    /// Stopped with an error.
    Failed(Arc<ConsumerError>),
}

struct Progress {
    state: ConsumerState,
    applied: HashMap<StreamId, Version>,
    parked: Vec<ParkedEvent>,
}

struct Shared {
    progress: Mutex<Progress>,
    changed: CommitSignal,
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
}

/// What became of one message.
enum Outcome {
    /// Handled (or parked), to acknowledge after the commit.
    Applied,
    /// Already applied before: acknowledged without a handler.
    Duplicate,
    /// Put back: an earlier event of its stream has not arrived yet.
    Wait,
    /// Set aside: terminated after the commit.
    Parked,
}

/// Feeds a [`Projection`] from the stream the [`Relay`](crate::Relay) publishes to, through a
/// durable JetStream pull consumer, exactly once into its read model.
///
/// Each message is decoded back into the [`StoredEvent`] the relay read (headers and
/// payload) and handed to [`Projection::dispatch`], so a `#[derive(Projection)]` works here
/// as under a local [`ProjectionRunner`](es_core::projection::ProjectionRunner): aliases,
/// upcasting and the envelope included.
///
/// - **Exactly once.** Messages are handled in batches of what has arrived (up to
///   `batch_size`); then [`CommitApplied::commit`] writes the batch's changes with the last
///   version applied of each stream in one transaction; only then are the messages
///   acknowledged. A crash before the commit loses the batch's changes and its
///   acknowledgements, so JetStream delivers it again; a crash after it delivers messages
///   whose versions are already applied, which are acknowledged and skipped.
/// - **Order per stream.** A stream's events reach its handlers in version order: a message
///   whose predecessor was not applied yet (a redelivery overtaken, or an event published out
///   of order after a failed publish) is put back (`Nak` with
///   [`ConsumerOptions::gap_delay`]) until the predecessor has been applied, at most
///   [`ConsumerOptions::gap_deliveries`] times; then [`OnFailure::Stop`] stops with
///   [`ConsumerError::Gap`], and [`OnFailure::Park`] reports the missing events as parked and
///   handles this one. Other streams go on meanwhile.
/// - **Failures.** A failing handler is tried again with backoff; then
///   [`OnFailure::Stop`] commits the events before it and stops with
///   [`ConsumerError::Handler`] (the event is not acknowledged: the next run gets it again),
///   and [`OnFailure::Park`] sets it aside (committed with the batch and listed by
///   [`ConsumerHandle::parked`], with a traced warning) and goes on. A message that is not an es event is treated the same
///   way; one that does not decode stops the consumer, as it stops a local projection.
///
/// The read model is the truth about what was applied, not the durable consumer's position:
/// a read model that has applied nothing (new, or emptied for a rebuild) starts its durable
/// consumer again from the first message, and a message of an applied version is skipped
/// whatever JetStream thinks.
///
/// One consumer process per durable name: two running the same durable consumer share its
/// messages, and a stream's order is then no longer one process's to keep.
pub struct Consumer<P, C> {
    projection: Arc<Mutex<P>>,
    read_model: C,
    jetstream: jetstream::Context,
    stream: StreamSettings,
    options: ConsumerOptions,
    shared: Arc<Shared>,
}

impl<P: Projection, C> fmt::Debug for Consumer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("projection", &P::NAME).field("options", &self.options).finish_non_exhaustive()
    }
}

impl<P: Projection, C: CommitApplied<P>> Consumer<P, C> {
    /// A consumer of `stream` (the relay's settings) feeding `projection` (the read model it
    /// starts from; with a database read model, one holding no pending changes), committing
    /// through `read_model`, with the default [`ConsumerOptions`].
    pub fn new(projection: P, read_model: C, jetstream: jetstream::Context, stream: StreamSettings) -> Self {
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                state: ConsumerState::Starting,
                applied: HashMap::new(),
                parked: Vec::new(),
            }),
            changed: CommitSignal::new(),
            stop: AtomicBool::new(false),
            stopping: CommitSignal::new(),
        });
        Self {
            projection: Arc::new(Mutex::new(projection)),
            read_model,
            jetstream,
            stream,
            options: ConsumerOptions::default(),
            shared,
        }
    }

    /// The same consumer with these options.
    #[must_use]
    pub fn with_options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// The durable consumer's name.
    #[must_use]
    pub fn durable_name(&self) -> String {
        self.options.durable_name.clone().unwrap_or_else(|| format!("{}_v{}", token(P::NAME), P::VERSION))
    }

    /// A handle to watch, query and stop the consumer.
    #[must_use]
    pub fn handle(&self) -> ConsumerHandle<P> {
        ConsumerHandle { projection: Arc::clone(&self.projection), shared: Arc::clone(&self.shared) }
    }

    /// Runs until [`ConsumerHandle::stop`] (`Ok`) or an error (which the handle's state
    /// reports as well).
    ///
    /// # Errors
    /// The [`ConsumerError`] that stopped it.
    pub async fn run(self) -> Result<(), Arc<ConsumerError>> {
        match self.run_inner().await {
            Ok(()) => {
                self.shared.update(|p| p.state = ConsumerState::Stopped);
                Ok(())
            }
            Err(error) => {
                let error = Arc::new(error);
                tracing::error!(projection = P::NAME, error = %chain(&*error), "consumer stopped");
                self.shared.update(|p| p.state = ConsumerState::Failed(Arc::clone(&error)));
                Err(error)
            }
        }
    }

    async fn run_inner(&self) -> Result<(), ConsumerError> {
        let durable = self.durable_name();
        let jetstream_error =
            |doing, source: async_nats::Error| ConsumerError::JetStream { consumer: durable.clone(), doing, source };
        let options = &self.options;
        if options.gap_timeout() < options.ack_wait.saturating_mul(2) {
            return Err(ConsumerError::Options {
                consumer: durable,
                problem: format!(
                    "a missing event is waited for {:?} (gap_delay × gap_deliveries), less than twice ack_wait ({:?}): after a crash, unacknowledged events come back only after ack_wait",
                    options.gap_timeout(),
                    options.ack_wait
                ),
            });
        }
        let stream = ensure(&self.jetstream, &self.stream).await.map_err(ConsumerError::Stream)?;
        let filter = self.stream.subjects.wildcard();
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_ack_pending: self.options.max_ack_pending,
            filter_subject: filter.clone(),
            ..pull::Config::default()
        };
        let applied = self
            .read_model
            .load(&durable)
            .await
            .map_err(|source| ConsumerError::ReadModel { consumer: durable.clone(), source })?;
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(&durable, config.clone())
            .await
            .map_err(|error| jetstream_error("get_or_create_consumer", error.into()))?;
        let info = consumer.info().await.map_err(|error| jetstream_error("consumer info", error.into()))?.clone();
        let restart = applied.versions.is_empty() && info.delivered.stream_sequence > 0;
        if restart {
            // The read model is new (or was emptied) but the durable consumer has handed out
            // messages before: what it acknowledged would never come back. The read model is
            // the truth: start the consumer again from the first message.
            tracing::warn!(consumer = %durable, "the read model has applied nothing: the durable consumer starts again from the first message");
            stream.delete_consumer(&durable).await.map_err(|error| jetstream_error("delete_consumer", error.into()))?;
            consumer = stream
                .get_or_create_consumer(&durable, config)
                .await
                .map_err(|error| jetstream_error("get_or_create_consumer", error.into()))?;
        }
        let found = info.config;
        let problem = if restart {
            None
        } else if found.ack_policy != AckPolicy::Explicit {
            Some(format!("ack policy {:?}, not Explicit", found.ack_policy))
        } else if found.filter_subject != filter {
            Some(format!("filter subject `{}`, not `{filter}`", found.filter_subject))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConsumerError::ConsumerConfig { consumer: durable, problem });
        }
        self.shared.update(|p| {
            p.applied = applied.versions;
            p.parked = applied.parked;
            p.state = ConsumerState::Running;
        });
        let batch_size = self.options.projection.batch_size.max(1);
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch_size)
            .messages()
            .await
            .map_err(|error| jetstream_error("pull", error.into()))?;
        let mut chunks = messages.ready_chunks(batch_size);
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let stop_seen = self.shared.stopping.generation();
            let chunk = tokio::select! {
                chunk = chunks.next() => chunk,
                () = self.shared.stopping.changed(stop_seen) => continue,
            };
            let Some(chunk) = chunk else {
                return Err(jetstream_error("pull", "the message stream ended".into()));
            };
            let mut batch = Vec::with_capacity(chunk.len());
            for message in chunk {
                match message {
                    Ok(message) => batch.push(message),
                    // Missed heartbeats and the like: the stream recovers by itself.
                    Err(error) => tracing::warn!(consumer = %durable, error = %error, "pulling messages failed"),
                }
            }
            self.handle_batch(&durable, batch).await?;
        }
    }

    /// Handles, commits and acknowledges one batch.
    async fn handle_batch(&self, durable: &str, batch: Vec<Message>) -> Result<(), ConsumerError> {
        let mut updates: HashMap<StreamId, Version> = HashMap::new();
        let mut parked = Vec::new();
        let mut outcomes: Vec<(Message, Outcome)> = Vec::with_capacity(batch.len());
        let mut failure = None;
        for message in batch {
            match self.handle_message(durable, &message, &mut updates, &mut parked).await {
                Ok(outcome) => outcomes.push((message, outcome)),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if !updates.is_empty() || !parked.is_empty() {
            let applied: Vec<(StreamId, Version)> = updates.into_iter().collect();
            self.read_model
                .commit(durable, &self.projection, &applied, &parked)
                .await
                .map_err(|source| ConsumerError::ReadModel { consumer: durable.to_owned(), source })?;
            self.shared.update(|p| {
                p.applied.extend(applied);
                p.parked.extend(parked);
            });
        }
        for (message, outcome) in outcomes {
            let kind = match outcome {
                Outcome::Applied | Outcome::Duplicate => AckKind::Ack,
                Outcome::Wait => AckKind::Nak(Some(self.options.gap_delay)),
                Outcome::Parked => AckKind::Term,
            };
            if let Err(error) = message.ack_with(kind).await {
                // Delivered again after `ack_wait`, and then skipped as a duplicate.
                tracing::warn!(consumer = %durable, error = %error, "acknowledging a message failed");
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn handle_message(
        &self,
        durable: &str,
        message: &Message,
        updates: &mut HashMap<StreamId, Version>,
        parked: &mut Vec<ParkedEvent>,
    ) -> Result<Outcome, ConsumerError> {
        let info = message.info().ok();
        let sequence = info.as_ref().map_or(0, |info| info.stream_sequence);
        let deliveries = info.as_ref().map_or(1, |info| info.delivered);
        let record = match envelope::decode(message.headers.as_ref(), &message.payload) {
            Ok(record) => record,
            Err(bad) => {
                return match self.options.projection.on_failure {
                    OnFailure::Stop => {
                        Err(ConsumerError::BadMessage { consumer: durable.to_owned(), sequence, source: bad })
                    }
                    OnFailure::Park => {
                        tracing::warn!(consumer = %durable, sequence, problem = %bad, "message parked");
                        Ok(Outcome::Parked)
                    }
                };
            }
        };
        let last = match updates.get(&record.stream) {
            Some(version) => *version,
            None => self.shared.lock().applied.get(&record.stream).copied().unwrap_or(Version::NONE),
        };
        if record.stream_version <= last {
            return Ok(Outcome::Duplicate);
        }
        if record.stream_version != last.next() {
            if deliveries < self.options.gap_deliveries {
                tracing::debug!(consumer = %durable, stream = %record.stream, version = %record.stream_version, waiting_for = %last.next(), "an earlier event of the stream has not arrived: put back");
                return Ok(Outcome::Wait);
            }
            let event = failed_event(&record);
            if self.options.projection.on_failure == OnFailure::Stop {
                return Err(ConsumerError::Gap {
                    consumer: durable.to_owned(),
                    event,
                    expected: last.next(),
                    deliveries,
                });
            }
            // Parked: the missing events are given up on (and reported), this one is handled.
            let error = format!(
                "versions {} to {} of its stream never arrived; handled without them",
                last.next(),
                record.stream_version.0 - 1
            );
            tracing::warn!(consumer = %durable, event = %event, error = %error, "missing events parked");
            parked.push(ParkedEvent { event, error, attempts: 1 });
        }
        let outcome = self.deliver(durable, &record, parked).await?;
        updates.insert(record.stream.clone(), record.stream_version);
        Ok(outcome)
    }

    /// Hands one record to its handler, retrying with backoff; then stops or parks (as the
    /// local runner does).
    async fn deliver(
        &self,
        durable: &str,
        record: &StoredEvent,
        parked: &mut Vec<ParkedEvent>,
    ) -> Result<Outcome, ConsumerError> {
        let retry = &self.options.projection.retry;
        let mut attempt = 1;
        loop {
            let result = self.projection.lock().unwrap_or_else(PoisonError::into_inner).dispatch(record);
            let error = match result {
                Ok(_) => return Ok(Outcome::Applied),
                Err(DispatchError::Decode(source)) => {
                    return Err(ConsumerError::Decode {
                        consumer: durable.to_owned(),
                        event: failed_event(record),
                        source,
                    });
                }
                Err(DispatchError::Handler(error)) => error,
            };
            if attempt < retry.max_attempts {
                tracing::debug!(consumer = %durable, attempt, error = %error, "handler failed; retrying");
                tokio::time::sleep(retry.backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            let event = failed_event(record);
            return match self.options.projection.on_failure {
                OnFailure::Stop => Err(ConsumerError::Handler {
                    consumer: durable.to_owned(),
                    event,
                    attempts: attempt,
                    source: error,
                }),
                OnFailure::Park => {
                    let message = chain(error.as_ref());
                    tracing::warn!(consumer = %durable, event = %event, error = %message, "event parked");
                    parked.push(ParkedEvent { event, error: message, attempts: attempt });
                    // The stream moves past it: acknowledged, not terminated, like a handled one.
                    Ok(Outcome::Applied)
                }
            };
        }
    }
}

/// Watches, queries and stops one consumer. Clones watch the same consumer.
pub struct ConsumerHandle<P> {
    projection: Arc<Mutex<P>>,
    shared: Arc<Shared>,
}

impl<P> Clone for ConsumerHandle<P> {
    fn clone(&self) -> Self {
        Self { projection: Arc::clone(&self.projection), shared: Arc::clone(&self.shared) }
    }
}

impl<P: Projection> fmt::Debug for ConsumerHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerHandle").field("projection", &P::NAME).finish_non_exhaustive()
    }
}

impl<P: Projection> ConsumerHandle<P> {
    /// Reads the projection value (between messages: never half an event).
    pub fn read<T>(&self, read: impl FnOnce(&P) -> T) -> T {
        read(&self.projection.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Where the consumer is.
    #[must_use]
    pub fn state(&self) -> ConsumerState {
        self.shared.lock().state.clone()
    }

    /// The last version of `stream` committed to the read model.
    #[must_use]
    pub fn applied(&self, stream: &StreamId) -> Version {
        self.shared.lock().applied.get(stream).copied().unwrap_or(Version::NONE)
    }

    /// Events set aside under [`OnFailure::Park`], committed with the read model (so also
    /// those of earlier runs), oldest first.
    #[must_use]
    pub fn parked(&self) -> Vec<ParkedEvent> {
        self.shared.lock().parked.clone()
    }

    /// Asks the consumer to stop after the batch in hand; `run()` then returns `Ok`.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.stopping.notify();
    }

    /// Waits until version `version` of `stream` is committed to the read model (the version a
    /// command returned, say). `false` after `timeout`, or when the consumer stopped first.
    pub async fn wait_for(&self, stream: &StreamId, version: Version, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.shared.changed.generation();
            {
                let progress = self.shared.lock();
                if progress.applied.get(stream).is_some_and(|applied| *applied >= version) {
                    return true;
                }
                if matches!(progress.state, ConsumerState::Stopped | ConsumerState::Failed(_)) {
                    return false;
                }
            }
            if tokio::time::timeout_at(deadline, self.shared.changed.changed(seen)).await.is_err() {
                return false;
            }
        }
    }
}

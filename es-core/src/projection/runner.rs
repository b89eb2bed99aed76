//! The runner: catch up from the stored checkpoint in the store's order, then follow new
//! events, in batches, saving the checkpoint after each; and the handle that watches it.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use super::checkpoints::{CheckpointStoreError, CommitBatch, ProjectionIdentity, SavedCheckpoint};
use super::metrics::{RunnerMetrics, batch_span};
use super::parked::ParkedRequests;
use super::rebuild::{RebuildProgress, RebuildState, replaying};
use super::{DispatchError, Partition, Projection, fingerprint};
use crate::decode::{DecodeError, DecodeErrorKind};
use crate::record::{Position, StoredEvent, StreamId, Version};
use crate::repository::RetryPolicy;
use crate::store::{AllEventsPage, Checkpoint, CommitSignal, EventStore, ReadAllFilter, StoreError, first_of};
use crate::timer::sleep;

/// How a runner reads, follows and reacts to failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionOptions {
    /// Events read (and handled) per batch; the checkpoint is saved after each batch.
    pub batch_size: usize,
    /// How often a caught-up runner reads again when no commit woke it: the longest delay
    /// before it sees an event another process appended (commits made in this process through
    /// a store with a [`commit_signal`](EventStore::commit_signal) wake it at once).
    pub poll_interval: Duration,
    /// How often a failing handler is tried, with which backoff.
    pub retry: RetryPolicy,
    /// What happens to an event whose handler still fails after the last try.
    pub on_failure: OnFailure,
    /// What happens when the stored checkpoint belongs to another identity.
    pub on_identity_change: IdentityChange,
}

impl Default for ProjectionOptions {
    /// Batches of 500, a poll every second, 5 tries with backoff from 10 ms up to 1 s, stop
    /// on failure, rebuild on an identity change.
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_secs(1),
            },
            on_failure: OnFailure::Stop,
            on_identity_change: IdentityChange::Rebuild,
        }
    }
}

/// What happens to an event whose handler still fails after the last try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnFailure {
    /// Stop the projection with [`ProjectionError::Handler`], naming the event; its
    /// checkpoint stays before the batch of that event.
    Stop,
    /// Set the event aside ([`ProjectionHandle::parked`], and a traced warning) and go on.
    /// Parked events are stored with the checkpoint, so a restart still lists them, until
    /// [`ProjectionHandle::retry_parked`] or [`ProjectionHandle::discard_parked`].
    Park,
}

/// What a runner does when the stored checkpoint belongs to another identity (the version was
/// bumped or the selection changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityChange {
    /// Start again from the first event, with the projection value the runner was given (a
    /// fresh read model), and store the checkpoint under the new identity.
    Rebuild,
    /// Stop with [`ProjectionError::IdentityChanged`].
    Refuse,
}

/// The event a handler failed on: where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedEvent {
    /// Its place in the store's order.
    pub position: Position,
    /// Its id (how a parked event is found again).
    pub event_id: Uuid,
    /// Its stream.
    pub stream: StreamId,
    /// Its version within the stream.
    pub stream_version: Version,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub schema_version: u32,
}

impl FailedEvent {
    fn of(record: &StoredEvent) -> Self {
        Self {
            position: record.position,
            event_id: record.event_id,
            stream: record.stream.clone(),
            stream_version: record.stream_version,
            event_type: record.event.event_type.clone(),
            schema_version: record.event.schema_version,
        }
    }
}

impl fmt::Display for FailedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} of stream {} (type `{}`, schema version {}, position {})",
            self.stream_version,
            self.stream,
            crate::store::bounded(&self.event_type),
            self.schema_version,
            self.position
        )
    }
}

/// An event set aside under [`OnFailure::Park`], with why. Stored with the checkpoint, so it
/// outlives the process; [`ProjectionHandle::retry_parked`] and
/// [`ProjectionHandle::discard_parked`] deal with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedEvent {
    /// The event.
    pub event: FailedEvent,
    /// The last error's message (with its causes).
    pub error: String,
    /// How often it was tried.
    pub attempts: u32,
}

/// Why a projection stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// Reading the events failed.
    #[error("projection `{projection}`: reading the events failed")]
    Store {
        /// The projection.
        projection: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Loading or saving the checkpoint failed.
    #[error("projection `{projection}`: the checkpoint store failed")]
    Checkpoints {
        /// The projection.
        projection: &'static str,
        /// The checkpoint store's error.
        #[source]
        source: CheckpointStoreError,
    },
    /// Committing a batch failed, and asking the checkpoint store afterwards showed that it
    /// did not land, or could not tell. A commit whose acknowledgement was lost but which
    /// landed is not an error: the runner goes on. The batch is not committed again (its
    /// changes left the projection with the attempt): the next run resumes from the stored
    /// checkpoint, so nothing is lost or repeated in a read model committed with it.
    #[error("projection `{projection}`: committing the batch up to {checkpoint} failed; {outcome}")]
    CommitFailed {
        /// The projection.
        projection: &'static str,
        /// The checkpoint the batch was to store.
        checkpoint: Checkpoint,
        /// Whether it landed.
        outcome: CommitOutcome,
        /// The commit's error.
        #[source]
        source: CheckpointStoreError,
    },
    /// The stored checkpoint belongs to another identity, and the options say
    /// [`IdentityChange::Refuse`].
    #[error(
        "the stored checkpoint belongs to projection {stored}, not {current}: rebuild it (`IdentityChange::Rebuild`) or restore the old definition"
    )]
    IdentityChanged {
        /// What the checkpoint was stored for.
        stored: ProjectionIdentity,
        /// What the code declares.
        current: ProjectionIdentity,
    },
    /// The stored checkpoints were written by the projection run as another number of
    /// partitions, and the options say [`IdentityChange::Refuse`]: changing the count is a
    /// rebuild (every partition of the new count from the first event).
    #[error(
        "projection `{projection}` was built as {stored} partitions, not {current}: changing the partition count is a rebuild (`IdentityChange::Rebuild`)"
    )]
    PartitionsChanged {
        /// The projection.
        projection: &'static str,
        /// The count its checkpoints were stored with (0: unreadable).
        stored: u32,
        /// The count this runner was started with.
        current: u32,
    },
    /// A selected event does not decode; a schema version newer than the code is
    /// [`DecodeErrorKind::FutureVersion`] (deploy the newer code). Never skipped.
    #[error("projection `{projection}` stopped at position {position}: {source}")]
    Decode {
        /// The projection.
        projection: &'static str,
        /// Where the event is in the store's order.
        position: Position,
        /// What is wrong with it (its message is part of this one; its cause is the source).
        source: DecodeError,
    },
    /// Another runner holds the rebuild lease, and the runner's
    /// [`RebuildLease`](super::RebuildLease) says
    /// [`WhenHeld::Refuse`](super::WhenHeld::Refuse).
    #[error("projection `{projection}` ({partition}) is being rebuilt by `{holder}`: one rebuild at a time")]
    RebuildLeaseHeld {
        /// The projection.
        projection: &'static str,
        /// The runner's partition.
        partition: Partition,
        /// Who holds the lease.
        holder: String,
    },
    /// The rebuild lease was lost mid-rebuild (a batch took longer than its time to live, or
    /// the store could not be reached to renew it): the runner stopped before committing
    /// another batch, and the next run resumes the rebuild.
    #[error("projection `{projection}` lost its rebuild lease")]
    RebuildLeaseLost {
        /// The projection.
        projection: &'static str,
        /// How it was lost.
        #[source]
        source: crate::store::LeaseLost,
    },
    /// A handler still failed after the last try, under [`OnFailure::Stop`].
    #[error("projection `{projection}` stopped: its handler failed {attempts} times on {event}")]
    Handler {
        /// The projection.
        projection: &'static str,
        /// The event.
        event: FailedEvent,
        /// How often it was tried.
        attempts: u32,
        /// The handler's last error.
        #[source]
        source: super::HandlerError,
    },
}

impl ProjectionError {
    /// Whether this is a record written by newer code.
    #[must_use]
    pub fn is_future_version(&self) -> bool {
        matches!(self, ProjectionError::Decode { source, .. } if matches!(source.kind, DecodeErrorKind::FutureVersion { .. }))
    }
}

/// What became of a batch whose commit reported an error ([`ProjectionError::CommitFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitOutcome {
    /// The stored checkpoint is still the one before the batch: it was not committed.
    NotCommitted,
    /// The checkpoint store could not be asked either: it may or may not have been committed.
    Unknown,
}

impl fmt::Display for CommitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommitOutcome::NotCommitted => "it was not committed: the next run handles it again",
            CommitOutcome::Unknown => {
                "whether it was committed is unknown (the checkpoint store could not be asked): the next run resumes from what was stored"
            }
        })
    }
}

/// Why a runner started again from the first event instead of resuming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuilt {
    /// The checkpoint was stored for another identity (version or selection).
    IdentityChanged {
        /// What the checkpoint was stored for.
        stored: ProjectionIdentity,
        /// What the code declares.
        current: ProjectionIdentity,
    },
    /// The projection was run as another number of partitions.
    PartitionsChanged {
        /// The count its checkpoints were stored with (0: unreadable).
        stored: u32,
        /// The count this runner was started with.
        current: u32,
    },
    /// [`ProjectionRunner::rebuild`] asked for it.
    Requested,
    /// A rebuild stopped before it was done (a crash, a stop) was taken up where it was.
    Resumed {
        /// Events replayed before this run.
        done: u64,
        /// Events to replay in all.
        total: u64,
    },
}

/// Where a runner is.
#[derive(Debug, Clone)]
pub enum RunState {
    /// `run()` has not been polled yet.
    NotStarted,
    /// Reading events it has not handled yet.
    CatchingUp,
    /// Its last read found nothing new: waiting for the next commit.
    CaughtUp,
    /// Stopped by [`ProjectionHandle::stop`].
    Stopped,
    /// Stopped with an error.
    Failed(Arc<ProjectionError>),
    /// The `run()` future was dropped before it finished (its task was aborted or panicked).
    Abandoned,
}

impl RunState {
    /// Whether the runner is running: catching up or caught up.
    #[must_use]
    pub fn is_running(&self) -> bool {
        matches!(self, RunState::CatchingUp | RunState::CaughtUp)
    }
}

/// A projection's status, for monitoring.
#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: &'static str,
    /// Where the runner is.
    pub state: RunState,
    /// Every selected event before it was handled.
    pub checkpoint: Checkpoint,
    /// The store's head when the status was taken.
    pub head: Checkpoint,
    /// Selected events after the checkpoint, counted up to [`ProjectionStatus::LAG_LIMIT`].
    pub lag: u64,
    /// Whether the count stopped at the limit (the lag is at least `lag`).
    pub lag_capped: bool,
    /// Events set aside under [`OnFailure::Park`].
    pub parked: usize,
    /// The last progress of a rebuild, if one ran in this run.
    pub rebuild: Option<RebuildProgress>,
}

impl ProjectionStatus {
    /// How many pending events a status call counts at most.
    pub const LAG_LIMIT: usize = 10_000;

    /// Running and at most `max_lag` selected events behind. A stopped, failed or abandoned
    /// runner is never healthy.
    #[must_use]
    pub fn is_healthy(&self, max_lag: u64) -> bool {
        self.state.is_running() && !self.lag_capped && self.lag <= max_lag
    }
}

/// Why [`ProjectionHandle::wait_for`] returned without the projection reaching the target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The time ran out.
    #[error("projection `{projection}` did not reach {target} within {timeout:?}; it is at {reached}")]
    Timeout {
        /// The projection.
        projection: &'static str,
        /// What was waited for.
        target: Checkpoint,
        /// Where it was.
        reached: Checkpoint,
        /// How long was waited.
        timeout: Duration,
    },
    /// The runner stopped with an error first.
    #[error("projection `{projection}` failed before it reached {target}")]
    Failed {
        /// The projection.
        projection: &'static str,
        /// What was waited for.
        target: Checkpoint,
        /// Why it stopped.
        #[source]
        error: Arc<ProjectionError>,
    },
    /// The runner was stopped, or its future dropped, first.
    #[error("projection `{projection}` is not running ({state}) and did not reach {target}")]
    NotRunning {
        /// The projection.
        projection: &'static str,
        /// What was waited for.
        target: Checkpoint,
        /// `stopped` or `abandoned`.
        state: &'static str,
    },
    /// Reading the store's head failed.
    #[error("cannot read the head of the store")]
    Store(#[source] StoreError),
}

pub(super) struct Progress {
    pub(super) checkpoint: Checkpoint,
    pub(super) state: RunState,
    pub(super) parked: Vec<ParkedEvent>,
    pub(super) parked_requests: ParkedRequests,
    pub(super) rebuilt: Option<Rebuilt>,
    pub(super) rebuild: Option<RebuildProgress>,
}

pub(super) struct Shared {
    progress: Mutex<Progress>,
    /// Fired on every change of `progress`.
    pub(super) changed: CommitSignal,
    pub(super) stop: AtomicBool,
    /// Fired by `stop`, and by requests about parked events: it wakes a waiting runner.
    pub(super) stopping: CommitSignal,
    /// Registered on first use, with the partition then set.
    metrics: OnceLock<RunnerMetrics>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Progress> {
        // Each update replaces a field or pushes one entry: a panic cannot leave it half-written.
        self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.lock());
        self.changed.notify();
    }

    pub(super) fn metrics(&self, projection: &'static str, partition: Partition) -> &RunnerMetrics {
        self.metrics.get_or_init(|| RunnerMetrics::new(projection, partition))
    }
}

/// Marks the runner abandoned if its future is dropped while it still runs.
struct RunGuard(Arc<Shared>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        let abandoned = {
            let mut progress = self.0.lock();
            let running = matches!(progress.state, RunState::NotStarted | RunState::CatchingUp | RunState::CaughtUp);
            if running {
                progress.state = RunState::Abandoned;
            }
            running
        };
        if abandoned {
            self.0.changed.notify();
        }
    }
}

/// Keeps one projection up to date: catches up from its stored checkpoint, then follows new
/// events as they are committed.
///
/// [`ProjectionRunner::run`] is a future to spawn on any executor; [`ProjectionRunner::handle`]
/// watches and stops it. Each projection has its own runner, so one that fails does not stop
/// the others.
///
/// With a [`CheckpointStore`](super::CheckpointStore), delivery is **at least once**: handlers
/// run, then the checkpoint of their batch is saved; a crash in between hands the batch to the
/// handlers again on restart. Use the event's position for idempotency where that matters.
/// With a [`CommitBatch`] that writes the read model and the checkpoint in one transaction
/// (es-sqlite's `SqliteCheckpoints`), it is **exactly once**.
///
/// While catching up, the runner reads the next page while the handlers and the commit of the
/// page before run (a full page says that more is waiting): the store reads beside the batch's
/// write. Handlers still see every event in the store's order, one batch after the other, and
/// a stop or a failure drops the page read ahead unhandled, to be read again by the next run.
///
/// Following costs no busy poll: after a read that found nothing new, the runner waits for the
/// store's [`commit_signal`](EventStore::commit_signal) (a commit in this process wakes it at
/// once) or for [`ProjectionOptions::poll_interval`], whichever comes first. The worst-case
/// delay before it sees a committed event is therefore one read for commits made in this
/// process through a store with a signal, and `poll_interval` plus one read otherwise.
pub struct ProjectionRunner<P: Projection, S: EventStore, C: CommitBatch<P>> {
    pub(super) projection: Arc<Mutex<P>>,
    pub(super) store: Arc<S>,
    pub(super) checkpoints: C,
    pub(super) options: ProjectionOptions,
    pub(super) partition: Partition,
    pub(super) shared: Arc<Shared>,
    pub(super) rebuild_state: RebuildState,
}

impl<P: Projection, S: EventStore, C: CommitBatch<P>> fmt::Debug for ProjectionRunner<P, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunner").field("projection", &P::NAME).field("options", &self.options).finish()
    }
}

impl<P: Projection, S: EventStore, C: CommitBatch<P>> ProjectionRunner<P, S, C> {
    /// A runner of `projection` (the read model it starts from) over `store`, keeping its
    /// checkpoint in `checkpoints`, with the default [`ProjectionOptions`].
    pub fn new(projection: P, store: S, checkpoints: C) -> Self {
        Self::with_shared_store(projection, Arc::new(store), checkpoints)
    }

    /// [`ProjectionRunner::new`] over a store shared with others.
    pub fn with_shared_store(projection: P, store: Arc<S>, checkpoints: C) -> Self {
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                checkpoint: Checkpoint::START,
                state: RunState::NotStarted,
                parked: Vec::new(),
                parked_requests: ParkedRequests::default(),
                rebuilt: None,
                rebuild: None,
            }),
            changed: CommitSignal::new(),
            stop: AtomicBool::new(false),
            stopping: CommitSignal::new(),
            metrics: OnceLock::new(),
        });
        Self {
            projection: Arc::new(Mutex::new(projection)),
            store,
            checkpoints,
            options: ProjectionOptions::default(),
            partition: Partition::WHOLE,
            shared,
            rebuild_state: RebuildState::default(),
        }
    }

    /// The same runner as one partition of the projection: it handles only the events of the
    /// streams [`Partition::owns`], and keeps its own checkpoint. Run one runner per
    /// partition, each with its own projection value (or its own share of the read model).
    #[must_use]
    pub fn with_partition(mut self, partition: Partition) -> Self {
        self.partition = partition;
        self
    }

    /// The identity this runner stores its checkpoint under: the projection's, keyed by
    /// partition and with the partition layout in the fingerprint when partitioned.
    #[must_use]
    pub fn identity(&self) -> ProjectionIdentity {
        let selection = fingerprint(P::SELECTION);
        ProjectionIdentity::new(self.partition.key(P::NAME), P::VERSION, self.partition.fingerprint(&selection))
    }

    /// The same runner with these options.
    #[must_use]
    pub fn with_options(mut self, options: ProjectionOptions) -> Self {
        self.options = options;
        self
    }

    /// A handle to watch, query and stop the runner.
    #[must_use]
    pub fn handle(&self) -> ProjectionHandle<P, S> {
        ProjectionHandle {
            projection: Arc::clone(&self.projection),
            store: Arc::clone(&self.store),
            partition: self.partition,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs until [`ProjectionHandle::stop`] (`Ok`) or an error (which the handle's status
    /// reports as well).
    ///
    /// # Errors
    /// The [`ProjectionError`] that stopped it.
    ///
    /// Dropping the future (an aborted or panicked task), even before it was first polled,
    /// marks the runner [`RunState::Abandoned`].
    pub fn run(self) -> impl Future<Output = Result<(), Arc<ProjectionError>>> + Send
    where
        P: Send,
        S: EventStore,
    {
        let guard = RunGuard(Arc::clone(&self.shared));
        async move {
            let result = self.run_inner().await;
            self.release_rebuild_lease().await;
            let outcome = match result {
                Ok(()) => {
                    self.shared.update(|p| p.state = RunState::Stopped);
                    Ok(())
                }
                Err(error) => {
                    let error = Arc::new(error);
                    tracing::error!(projection = P::NAME, error = %error, "projection stopped");
                    self.shared.update(|p| p.state = RunState::Failed(Arc::clone(&error)));
                    Err(error)
                }
            };
            drop(guard);
            outcome
        }
    }

    fn metrics(&self) -> &RunnerMetrics {
        self.shared.metrics(P::NAME, self.partition)
    }

    fn lock_projection(&self) -> MutexGuard<'_, P> {
        // A handler that panicked may have left the read model half-updated; the panic ends
        // the run (the runner is then reported abandoned), and readers see what is there.
        self.projection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn start_checkpoint(&self) -> Result<Checkpoint, ProjectionError> {
        let checkpoints_error = |source| ProjectionError::Checkpoints { projection: P::NAME, source };
        let identity = self.identity();
        let own = self.checkpoints.load(&identity.name).await.map_err(checkpoints_error)?;
        if self.rebuild_state.requested {
            let replay_until = own.map_or(Checkpoint::START, |saved| match saved.rebuild {
                Some(marker) => marker.replay_until.max(saved.checkpoint),
                None => saved.checkpoint,
            });
            return self.begin_rebuild(identity, replay_until, Rebuilt::Requested).await;
        }
        // Partition 0's checkpoint (the unpartitioned one) tells which layout the read model
        // was built with: every partition checks it, so none resumes into a mixed layout.
        let first = if self.partition.index() == 0 {
            own.clone()
        } else {
            self.checkpoints.load(P::NAME).await.map_err(checkpoints_error)?
        };
        let current = self.partition.count();
        let selection = fingerprint(P::SELECTION);
        let layout_of = |saved: &SavedCheckpoint| {
            let (stored_selection, stored) = Partition::parse_fingerprint(&saved.identity.fingerprint);
            (saved.identity.version == P::VERSION && stored_selection == selection && stored != current)
                .then_some(stored)
        };
        let other_layout = own.as_ref().and_then(layout_of).or_else(|| first.as_ref().and_then(layout_of));
        let replay_until = own.as_ref().map_or(Checkpoint::START, |saved| saved.checkpoint.clone());
        let (change, refusal) = match (other_layout, own) {
            (Some(stored), _) => (
                Rebuilt::PartitionsChanged { stored, current },
                ProjectionError::PartitionsChanged { projection: P::NAME, stored, current },
            ),
            (None, None) => return Ok(Checkpoint::START),
            (None, Some(saved)) if saved.identity == identity => return self.resume(saved).await,
            (None, Some(saved)) => (
                Rebuilt::IdentityChanged { stored: saved.identity.clone(), current: identity.clone() },
                ProjectionError::IdentityChanged { stored: saved.identity, current: identity.clone() },
            ),
        };
        match self.options.on_identity_change {
            IdentityChange::Refuse => Err(refusal),
            IdentityChange::Rebuild => {
                match &change {
                    Rebuilt::IdentityChanged { stored, current } => tracing::warn!(
                        projection = P::NAME,
                        stored = %stored,
                        current = %current,
                        "the projection changed: rebuilding it from the first event"
                    ),
                    Rebuilt::PartitionsChanged { stored, current } => tracing::warn!(
                        projection = P::NAME,
                        partition = %self.partition,
                        stored_partitions = stored,
                        partitions = current,
                        "the partition count changed: rebuilding from the first event"
                    ),
                    Rebuilt::Requested | Rebuilt::Resumed { .. } => {}
                }
                self.begin_rebuild(identity, replay_until, change).await
            }
        }
    }

    async fn run_inner(&self) -> Result<(), ProjectionError> {
        let mut checkpoint = self.start_checkpoint().await?;
        self.shared.update(|p| {
            p.checkpoint = checkpoint.clone();
            p.state = RunState::CatchingUp;
        });
        let (identity, filter) = (self.identity(), P::filter());
        let signal = self.store.commit_signal();
        let batch_size = self.options.batch_size.max(1);
        // The page after the batch in hand, read while that batch was handled and committed.
        let mut ahead: Option<Result<Read, ProjectionError>> = None;
        loop {
            // A stop drops the page read ahead: its events are read again by the next run.
            if self.shared.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            // Generations before serving and reading: a request or a commit meanwhile then ends
            // the wait at once.
            let generations = self.generations(signal.as_ref());
            self.serve_parked_requests(&identity, &checkpoint).await?;
            let Read { page, seen, stop_seen } = match ahead.take() {
                Some(read) => read?,
                None => self.read(&checkpoint, &filter, batch_size, generations).await?,
            };
            if page.next == checkpoint {
                // Nothing new: wait for a commit, the poll interval, or a stop.
                self.shared.update(|p| p.state = RunState::CaughtUp);
                self.metrics().lag(0);
                let commit = async {
                    match (&signal, seen) {
                        (Some(signal), Some(seen)) => signal.changed(seen).await,
                        _ => std::future::pending().await,
                    }
                };
                let stop = self.shared.stopping.changed(stop_seen);
                first_of(first_of(commit, stop), sleep(self.options.poll_interval)).await;
                continue;
            }
            let span = batch_span(P::NAME, self.partition, &page);
            let batch = async {
                self.handle_batch(&page).await?;
                let saved = self.saved_after(&identity, &page).await?;
                if let Err(source) = self.checkpoints.commit(&self.projection, &saved).await {
                    self.commit_failed(&saved, source).await?;
                }
                Ok::<_, ProjectionError>(saved)
            }
            .instrument(span);
            let saved = if page.events.len() >= batch_size {
                // A full page: more is waiting, most likely. Reading it does not depend on this
                // batch, so it runs beside the handlers and the commit (the store reads on
                // another connection while the batch's transaction writes). It is polled
                // first, so that a store that reads on another thread starts before the
                // handlers take this one.
                let generations = self.generations(signal.as_ref());
                let (next, done) = both(self.read(&page.next, &filter, batch_size, generations), batch).await;
                ahead = Some(next);
                done?
            } else {
                batch.await?
            };
            self.metrics().batches.increment(1);
            self.rebuild_committed(&saved).await;
            checkpoint = page.next;
            self.shared.update(|p| {
                p.checkpoint = checkpoint.clone();
                p.state = RunState::CatchingUp;
            });
        }
    }

    /// A batch's commit reported an error: that need not mean it did not land (an
    /// acknowledgement lost with its connection). The stored checkpoint says which; the batch
    /// is never committed again blindly (its changes left the projection with the attempt).
    /// `Ok` when it landed after all.
    async fn commit_failed(
        &self,
        saved: &SavedCheckpoint,
        source: CheckpointStoreError,
    ) -> Result<(), ProjectionError> {
        let failed = |outcome| ProjectionError::CommitFailed {
            projection: P::NAME,
            checkpoint: saved.checkpoint.clone(),
            outcome,
            source,
        };
        match self.checkpoints.load(&saved.identity.name).await {
            Ok(Some(stored)) if stored.identity == saved.identity && stored.checkpoint == saved.checkpoint => {
                tracing::warn!(
                    projection = P::NAME,
                    checkpoint = %saved.checkpoint,
                    "a batch's commit reported an error but it was committed (its acknowledgement was lost)"
                );
                Ok(())
            }
            Ok(_) => Err(failed(CommitOutcome::NotCommitted)),
            Err(_) => Err(failed(CommitOutcome::Unknown)),
        }
    }

    /// The generations of the store's commit signal and of the stop signal, taken before a
    /// read: a commit, a stop or a request during the read then ends the wait that follows an
    /// empty page at once.
    fn generations(&self, signal: Option<&CommitSignal>) -> (Option<u64>, u64) {
        (signal.map(CommitSignal::generation), self.shared.stopping.generation())
    }

    /// Reads the page after `from`, with the `generations` taken before.
    async fn read(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        batch_size: usize,
        (seen, stop_seen): (Option<u64>, u64),
    ) -> Result<Read, ProjectionError> {
        let page = self
            .store
            .read_all(from, filter, batch_size)
            .await
            .map_err(|source| ProjectionError::Store { projection: P::NAME, source })?;
        Ok(Read { page, seen, stop_seen })
    }

    /// Hands the records of `page` that this partition owns to their handlers, in order,
    /// holding the projection's lock once for the run of records that succeed; a handler that
    /// fails is retried with the lock released while it waits ([`Self::retry_failed`]).
    async fn handle_batch(&self, page: &AllEventsPage) -> Result<(), ProjectionError> {
        let mut owned = page.iter().filter(|(record, _)| self.partition.owns(&record.stream));
        loop {
            let failed = {
                let mut projection = self.lock_projection();
                loop {
                    let Some((record, after)) = owned.next() else { break None };
                    let replay = self.rebuild_state.is_replay(after);
                    let result = replaying(replay, || projection.dispatch(record));
                    if let Some(error) = self.handled(record, result)? {
                        break Some((record, replay, error));
                    }
                }
            };
            let Some((record, replay, error)) = failed else { return Ok(()) };
            self.retry_failed(record, replay, error).await?;
        }
    }

    /// Hands one record to its handler (`replay`: what [`is_replay`](super::is_replay) tells
    /// it), retrying with backoff; then stops or parks.
    pub(super) async fn deliver(&self, record: &StoredEvent, replay: bool) -> Result<(), ProjectionError> {
        let result = replaying(replay, || self.lock_projection().dispatch(record));
        match self.handled(record, result)? {
            None => Ok(()),
            Some(error) => self.retry_failed(record, replay, error).await,
        }
    }

    /// Counts what a dispatch did: `None` when it is done with, the handler's error when it
    /// failed, and the runner's error for a record that does not decode.
    fn handled(
        &self,
        record: &StoredEvent,
        result: Result<bool, DispatchError>,
    ) -> Result<Option<super::HandlerError>, ProjectionError> {
        match result {
            Ok(handled) => {
                self.metrics().handled.increment(u64::from(handled));
                Ok(None)
            }
            Err(DispatchError::Decode(source)) => {
                Err(ProjectionError::Decode { projection: P::NAME, position: record.position, source })
            }
            Err(DispatchError::Handler(error)) => {
                self.metrics().failures.increment(1);
                Ok(Some(error))
            }
        }
    }

    /// Tries `record` again after its handler's first try failed with `error`, with backoff;
    /// then stops or parks it.
    async fn retry_failed(
        &self,
        record: &StoredEvent,
        replay: bool,
        mut error: super::HandlerError,
    ) -> Result<(), ProjectionError> {
        let retry = &self.options.retry;
        let mut attempt = 1;
        while attempt < retry.max_attempts {
            self.metrics().retries.increment(1);
            tracing::debug!(projection = P::NAME, attempt, error = %error, "handler failed; retrying");
            sleep(retry.backoff(attempt)).await;
            attempt += 1;
            let result = replaying(replay, || self.lock_projection().dispatch(record));
            match self.handled(record, result)? {
                None => return Ok(()),
                Some(again) => error = again,
            }
        }
        let event = FailedEvent::of(record);
        match self.options.on_failure {
            OnFailure::Stop => {
                Err(ProjectionError::Handler { projection: P::NAME, event, attempts: attempt, source: error })
            }
            OnFailure::Park => {
                let message = chain(error.as_ref());
                tracing::warn!(projection = P::NAME, event = %event, error = %message, "event parked");
                self.metrics().parked.increment(1);
                self.shared.update(|p| p.parked.push(ParkedEvent { event, error: message, attempts: attempt }));
                Ok(())
            }
        }
    }
}

/// A page of events, with the generations of the commit signal and of the stop signal taken
/// before it was read.
struct Read {
    page: AllEventsPage,
    seen: Option<u64>,
    stop_seen: u64,
}

/// Runs `a` and `b` together on the caller's task, to the end of both.
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            out_a = Some(out);
        }
        if out_b.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            out_b = Some(out);
        }
        match (out_a.take(), out_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (out_a, out_b) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

/// An error's message with its causes, `: `-separated.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Watches, queries and stops one runner. Clones watch the same runner.
pub struct ProjectionHandle<P, S> {
    projection: Arc<Mutex<P>>,
    store: Arc<S>,
    pub(super) partition: Partition,
    pub(super) shared: Arc<Shared>,
}

impl<P, S> Clone for ProjectionHandle<P, S> {
    fn clone(&self) -> Self {
        Self {
            projection: Arc::clone(&self.projection),
            store: Arc::clone(&self.store),
            partition: self.partition,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: Projection, S> fmt::Debug for ProjectionHandle<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionHandle").field("projection", &P::NAME).finish_non_exhaustive()
    }
}

impl<P: Projection, S: EventStore> ProjectionHandle<P, S> {
    /// Reads the read model: between batches, never halfway through one (the runner holds it
    /// while it hands a batch to the handlers, and while a failed handler is retried only
    /// between the tries).
    pub fn read<T>(&self, read: impl FnOnce(&P) -> T) -> T {
        read(&self.projection.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Where the runner is.
    #[must_use]
    pub fn state(&self) -> RunState {
        self.shared.lock().state.clone()
    }

    /// The checkpoint it has handled every selected event before.
    #[must_use]
    pub fn checkpoint(&self) -> Checkpoint {
        self.shared.lock().checkpoint.clone()
    }

    /// Events set aside under [`OnFailure::Park`], including those stored by an earlier run
    /// (listed once the runner has started).
    #[must_use]
    pub fn parked(&self) -> Vec<ParkedEvent> {
        self.shared.lock().parked.clone()
    }

    /// Why the runner started from the first event instead of resuming, if it did.
    #[must_use]
    pub fn rebuilt(&self) -> Option<Rebuilt> {
        self.shared.lock().rebuilt.clone()
    }

    /// How far the rebuild of this run is ([`ProjectionRunner::rebuild`]), if one ran: the
    /// last progress reported, [`finished`](RebuildProgress::finished) once it is done.
    #[must_use]
    pub fn rebuild_progress(&self) -> Option<RebuildProgress> {
        self.shared.lock().rebuild.clone()
    }

    /// The partition it runs.
    #[must_use]
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// Asks the runner to stop after the batch in hand; `run()` then returns `Ok`.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.stopping.notify();
    }

    /// Position, head, lag and state.
    ///
    /// # Errors
    /// The store's errors reading its head or the pending events.
    pub async fn status(&self) -> Result<ProjectionStatus, StoreError> {
        let (state, checkpoint, parked, rebuild) = {
            let progress = self.shared.lock();
            (progress.state.clone(), progress.checkpoint.clone(), progress.parked.len(), progress.rebuild.clone())
        };
        let head = self.store.head().await?;
        let pending = self.store.read_all(&checkpoint, &P::filter(), ProjectionStatus::LAG_LIMIT).await?;
        let lag = pending.events.iter().filter(|record| self.partition.owns(&record.stream)).count();
        self.shared.metrics(P::NAME, self.partition).lag(lag as u64);
        Ok(ProjectionStatus {
            name: P::NAME,
            state,
            checkpoint,
            head,
            lag: lag as u64,
            lag_capped: pending.events.len() >= ProjectionStatus::LAG_LIMIT,
            parked,
            rebuild,
        })
    }

    /// Waits until the projection has handled every event before `target` (for example the
    /// store's [`head`](EventStore::head) right after a command): woken by the runner, never
    /// by polling.
    ///
    /// # Errors
    /// [`WaitError::Timeout`] after `timeout`, [`WaitError::Failed`] or
    /// [`WaitError::NotRunning`] when the runner stops first.
    pub async fn wait_for(&self, target: &Checkpoint, timeout: Duration) -> Result<(), WaitError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.shared.changed.generation();
            {
                let progress = self.shared.lock();
                if progress.checkpoint >= *target {
                    return Ok(());
                }
                let not_running = |state| WaitError::NotRunning { projection: P::NAME, target: target.clone(), state };
                match &progress.state {
                    RunState::Failed(error) => {
                        return Err(WaitError::Failed {
                            projection: P::NAME,
                            target: target.clone(),
                            error: Arc::clone(error),
                        });
                    }
                    RunState::Stopped => return Err(not_running("stopped")),
                    RunState::Abandoned => return Err(not_running("abandoned")),
                    RunState::NotStarted | RunState::CatchingUp | RunState::CaughtUp => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout {
                    projection: P::NAME,
                    target: target.clone(),
                    reached: self.checkpoint(),
                    timeout,
                });
            }
            first_of(self.shared.changed.changed(seen), sleep(left)).await;
        }
    }

    /// [`ProjectionHandle::wait_for`] the store's head as it is now.
    ///
    /// # Errors
    /// As [`ProjectionHandle::wait_for`], and [`WaitError::Store`] when the head cannot be read.
    pub async fn wait_for_head(&self, timeout: Duration) -> Result<(), WaitError> {
        let head = self.store.head().await.map_err(WaitError::Store)?;
        self.wait_for(&head, timeout).await
    }
}

//! Rebuilds: reset a projection's read model and replay every event from the first, with
//! progress, durably (a crash mid-rebuild resumes the rebuild) and without repeating side
//! effects (handlers tell a replay from a first delivery with [`is_replay`]).
//!
//! A rebuild is a checkpoint record with a [`RebuildMarker`]: the reset stores the
//! [`Checkpoint::START`] with the marker (through [`CommitBatch::reset`], in the same commit that
//! empties the read model), every batch after it stores the marker with its progress, and the
//! batch that reaches the marker's target stores the checkpoint without it. A runner that
//! finds a marker resumes the rebuild where its last batch left it. With
//! [`ProjectionRunner::with_rebuild_lease`], only the runner holding the store's lease for the
//! projection resets or resumes it.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::checkpoints::{CommitBatch, ProjectionIdentity, RebuildMarker, SavedCheckpoint};
use super::rebuild_lease::{RebuildLease, RebuildLock, Took};
use super::runner::{ProjectionError, ProjectionRunner, Rebuilt};
use super::{Partition, Projection};
use crate::store::Leases;
use crate::store::{AllEventsPage, Checkpoint, EventStore, StoreError};

thread_local! {
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the event being handled on this thread is a **replay**: an event the projection
/// had already handled before a rebuild reset it.
///
/// Call it inside [`Handle::handle`](super::Handle::handle): a handler with an effect outside
/// its read model (an e-mail, a message to another service) does that part only when this is
/// `false`, so a rebuild publishes nothing a second time. Events the projection had not
/// reached before the reset (appended later, or beyond its checkpoint when the rebuild began)
/// are first deliveries, and their effects happen once, during the rebuild. Outside a handler
/// run by a [`ProjectionRunner`] (in `given`/`then` tests, say) it is `false`.
///
/// With `#[derive(Projection)]` the check sits in a `Handle<E>` impl; here it is written out
/// by hand, in `dispatch`:
///
/// ```
/// use es_core::projection::{DispatchError, Projection, Selected, is_replay, selected_index};
/// use es_core::StoredEvent;
///
/// /// Members, and a welcome for each: sent once, never again on a rebuild.
/// #[derive(Default)]
/// pub struct Welcome {
///     pub members: u32,
///     pub outbox: Vec<String>,
/// }
///
/// impl Projection for Welcome {
///     const NAME: &'static str = "welcome";
///     const VERSION: u32 = 1;
///     const SELECTION: &'static [Selected] =
///         &[Selected { rust_type: "Joined", stream_type: None, event_type: "Joined", aliases: &[] }];
///
///     fn dispatch(&mut self, record: &StoredEvent) -> Result<bool, DispatchError> {
///         if selected_index(Self::SELECTION, record).is_none() {
///             return Ok(false);
///         }
///         self.members += 1;
///         if !is_replay() {
///             self.outbox.push(format!("welcome, {}", record.stream.id()));
///         }
///         Ok(true)
///     }
/// }
/// # use es_core::projection::{InMemoryCheckpointStore, ProjectionRunner};
/// # use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (store, checkpoints) = (InMemoryStore::new(), InMemoryCheckpointStore::new());
/// # for who in ["ann", "bob"] {
/// #     let joined = NewEvent::new(RawEvent::new("Joined", 1, "{}"));
/// #     store.append(&StreamId::new("Member", who), ExpectedVersion::NoStream, vec![joined]).await?;
/// # }
/// # let wait = std::time::Duration::from_secs(5);
/// let live = ProjectionRunner::new(Welcome::default(), store.clone(), checkpoints.clone());
/// let (handle, running) = (live.handle(), tokio::spawn(live.run()));
/// handle.wait_for_head(wait).await?;
/// assert_eq!(handle.read(|w| w.outbox.len()), 2);
/// # handle.stop();
/// # running.await??;
///
/// // The rebuild counts both members again, and welcomes nobody a second time.
/// let rebuild = ProjectionRunner::new(Welcome::default(), store.clone(), checkpoints);
/// let (handle, running) = (rebuild.handle(), tokio::spawn(rebuild.rebuild()));
/// handle.wait_for_head(wait).await?;
/// assert_eq!(handle.read(|w| (w.members, w.outbox.len())), (2, 0));
/// # handle.stop();
/// # running.await??;
/// # Ok(())
/// # }
/// /// ```
#[must_use]
pub fn is_replay() -> bool {
    REPLAYING.with(Cell::get)
}

/// Runs `handle` with [`is_replay`] answering `replay`, restoring the previous answer after
/// (also when `handle` panics).
pub(super) fn replaying<T>(replay: bool, handle: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REPLAYING.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(REPLAYING.with(|flag| flag.replace(replay)));
    handle()
}

/// How far a rebuild is, handed to [`ProjectionRunner::on_progress`] after the reset and after
/// every batch, and returned by
/// [`ProjectionHandle::rebuild_progress`](super::ProjectionHandle::rebuild_progress).
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildProgress {
    /// The projection.
    pub projection: &'static str,
    /// The runner's partition.
    pub partition: Partition,
    /// Selected events handled and committed since the reset (across restarts).
    pub done: u64,
    /// Selected events up to [`RebuildProgress::target`].
    pub total: u64,
    /// Events handled per second by this run of the rebuild.
    pub events_per_second: f64,
    /// How long this run of the rebuild has taken so far.
    pub elapsed: Duration,
    /// The store's head when the rebuild began: it is done when the checkpoint reaches it.
    pub target: Checkpoint,
    /// Whether the rebuild is done (the runner then follows new events as usual).
    pub finished: bool,
}

impl RebuildProgress {
    /// `done / total`, between 0 and 1 (1 for a rebuild with nothing to replay).
    #[must_use]
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        // Counts far below 2^52: the conversions are exact.
        #[allow(clippy::cast_precision_loss)]
        let fraction = self.done as f64 / self.total as f64;
        fraction.min(1.0)
    }
}

impl fmt::Display for RebuildProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rebuilding `{}` ({}): {} of {} events, {:.0} events/s",
            self.projection, self.partition, self.done, self.total, self.events_per_second
        )
    }
}

/// The progress callback.
pub(super) type OnProgress = Arc<dyn Fn(&RebuildProgress) + Send + Sync>;

/// A runner's rebuild: whether one was asked for, whom to tell, and the one under way.
#[derive(Default)]
pub(super) struct RebuildState {
    pub(super) requested: bool,
    pub(super) on_progress: Option<OnProgress>,
    /// One rebuild at a time, when configured.
    lock: Option<RebuildLock>,
    active: Mutex<Option<Active>>,
    /// Whether `active` is set: spares followers a lock per event.
    rebuilding: AtomicBool,
}

/// The rebuild under way in this run.
struct Active {
    marker: RebuildMarker,
    started: Instant,
    done_at_start: u64,
}

impl RebuildState {
    fn active(&self) -> MutexGuard<'_, Option<Active>> {
        // Each update replaces the value whole: a panic cannot leave it half-written.
        self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start(&self, marker: RebuildMarker) {
        let done_at_start = marker.done;
        *self.active() = Some(Active { marker, started: Instant::now(), done_at_start });
        self.rebuilding.store(true, Ordering::Release);
    }

    /// Whether the event after which the read resumes at `after` is a replay.
    pub(super) fn is_replay(&self, after: &Checkpoint) -> bool {
        self.rebuilding.load(Ordering::Acquire)
            && self.active().as_ref().is_some_and(|active| *after <= active.marker.replay_until)
    }

    /// The marker to commit after `page` (`None`: the page is the checkpoint): with its
    /// progress while the rebuild runs, none once the page reaches the target.
    fn marker_after(&self, page: Option<&AllEventsPage>, partition: Partition) -> Option<RebuildMarker> {
        let active = self.active();
        let marker = &active.as_ref()?.marker;
        let Some(page) = page else { return Some(marker.clone()) };
        if page.next >= marker.target {
            return None;
        }
        let handled = page.iter().filter(|(record, after)| *after <= &marker.target && partition.owns(&record.stream));
        let done = marker.done + handled.count() as u64;
        Some(RebuildMarker { done: done.min(marker.total), ..marker.clone() })
    }

    /// Takes in the committed `saved`, and says how far the rebuild is (`None`: no rebuild).
    fn committed(
        &self,
        projection: &'static str,
        partition: Partition,
        saved: &SavedCheckpoint,
    ) -> Option<RebuildProgress> {
        let mut active = self.active();
        let current = active.as_mut()?;
        let finished = saved.rebuild.is_none();
        if let Some(marker) = &saved.rebuild {
            current.marker = marker.clone();
        } else {
            current.marker.done = current.marker.total;
        }
        let elapsed = current.started.elapsed();
        let this_run = current.marker.done.saturating_sub(current.done_at_start);
        // Counts far below 2^52: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let events_per_second = if elapsed.is_zero() { 0.0 } else { this_run as f64 / elapsed.as_secs_f64() };
        let progress = RebuildProgress {
            projection,
            partition,
            done: current.marker.done,
            total: current.marker.total,
            events_per_second,
            elapsed,
            target: current.marker.target.clone(),
            finished,
        };
        if finished {
            *active = None;
            self.rebuilding.store(false, Ordering::Release);
        }
        Some(progress)
    }
}

impl<P: Projection, S: EventStore, C: CommitBatch<P>> ProjectionRunner<P, S, C> {
    /// Runs the projection like [`ProjectionRunner::run`], after a **rebuild**: the read model
    /// is reset and every event replayed from the first, then new events are followed as usual.
    ///
    /// - The reset is durable and part of the checkpoint record: a [`RebuildMarker`] stored with
    ///   [`Checkpoint::START`] through [`CommitBatch::reset`], in the same commit that empties the
    ///   read model (es-sqlite: `SqliteCheckpoints::with_reset`). Every batch stores the marker
    ///   with its progress until the checkpoint reaches the store's head as it was at the
    ///   reset. A runner stopped or crashed mid-rebuild therefore resumes the rebuild (with
    ///   [`run`](ProjectionRunner::run) or `rebuild` alike), never the checkpoint from before.
    /// - Progress ([`RebuildProgress`]: done / total, events per second) goes to the
    ///   [`on_progress`](ProjectionRunner::on_progress) callback after the reset and after every
    ///   batch, and to [`ProjectionHandle::rebuild_progress`](super::ProjectionHandle::rebuild_progress).
    ///   The total is counted by reading the selected events once before the replay.
    /// - Side effects are not published twice: handlers see [`is_replay`] for every event the
    ///   projection had handled before the reset.
    ///
    /// Start it with the projection value of an empty read model, and with no other runner of
    /// this projection (or partition) running.
    ///
    /// # Errors
    /// As [`ProjectionRunner::run`].
    ///
    /// ```
    /// # use es_core::projection::{DispatchError, Projection, Selected};
    /// # use es_core::StoredEvent;
    /// # #[derive(Default)]
    /// # pub struct Members(u32);
    /// # impl Projection for Members {
    /// #     const NAME: &'static str = "members";
    /// #     const VERSION: u32 = 1;
    /// #     const SELECTION: &'static [Selected] =
    /// #         &[Selected { rust_type: "Joined", stream_type: None, event_type: "Joined", aliases: &[] }];
    /// #     fn dispatch(&mut self, _: &StoredEvent) -> Result<bool, DispatchError> {
    /// #         self.0 += 1;
    /// #         Ok(true)
    /// #     }
    /// # }
    /// use es_core::projection::{InMemoryCheckpointStore, ProjectionRunner};
    /// # use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (store, checkpoints) = (InMemoryStore::new(), InMemoryCheckpointStore::new());
    /// # for who in ["ann", "bob", "cleo"] {
    /// #     let joined = NewEvent::new(RawEvent::new("Joined", 1, "{}"));
    /// #     store.append(&StreamId::new("Member", who), ExpectedVersion::NoStream, vec![joined]).await?;
    /// # }
    ///
    /// let runner = ProjectionRunner::new(Members::default(), store.clone(), checkpoints)
    ///     .on_progress(|progress| println!("{progress}")); // rebuilding `members` (...): 3 of 3 events, ...
    /// let members = runner.handle();
    /// let running = tokio::spawn(runner.rebuild());
    /// members.wait_for_head(std::time::Duration::from_secs(5)).await?;
    /// let progress = members.rebuild_progress().expect("a rebuild ran");
    /// assert!(progress.finished && progress.done == 3 && progress.total == 3);
    /// assert_eq!(members.read(|m| m.0), 3);
    /// members.stop();
    /// running.await??;
    /// # Ok(())
    /// # }
    /// ```
    pub fn rebuild(mut self) -> impl Future<Output = Result<(), Arc<ProjectionError>>> + Send {
        self.rebuild_state.requested = true;
        self.run()
    }

    /// The same runner, telling `on_progress` how far a rebuild is, after its reset and after
    /// every batch until it is done: an explicit [`rebuild`](ProjectionRunner::rebuild), one
    /// caused by a changed identity, or one resumed after a restart.
    #[must_use]
    pub fn on_progress(mut self, on_progress: impl Fn(&RebuildProgress) + Send + Sync + 'static) -> Self {
        self.rebuild_state.on_progress = Some(Arc::new(on_progress));
        self
    }

    /// The same runner, rebuilding only while it holds the store's lease for this projection
    /// (and partition), so that one runner rebuilds it at a time, across every process that
    /// shares the store: taken before the reset, or before resuming a rebuild found in the
    /// checkpoint, renewed with the batches, given up when the rebuild is done or the run ends.
    /// A runner that finds the lease held waits for it, or stops with
    /// [`ProjectionError::RebuildLeaseHeld`], as [`RebuildLease::when_held`] says; one that
    /// waited carries on from the checkpoint the other left.
    ///
    /// Without it, nothing stops two runners from rebuilding one projection at once.
    ///
    /// ```
    /// # use es_core::projection::{DispatchError, Projection, Selected};
    /// # use es_core::StoredEvent;
    /// # #[derive(Default)]
    /// # pub struct Members(u32);
    /// # impl Projection for Members {
    /// #     const NAME: &'static str = "members";
    /// #     const VERSION: u32 = 1;
    /// #     const SELECTION: &'static [Selected] =
    /// #         &[Selected { rust_type: "Joined", stream_type: None, event_type: "Joined", aliases: &[] }];
    /// #     fn dispatch(&mut self, _: &StoredEvent) -> Result<bool, DispatchError> {
    /// #         self.0 += 1;
    /// #         Ok(true)
    /// #     }
    /// # }
    /// use std::time::Duration;
    /// use es_core::projection::{InMemoryCheckpointStore, ProjectionError, ProjectionRunner, RebuildLease, WhenHeld};
    /// use es_core::store::Lease;
    /// use es_core::InMemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = InMemoryStore::new();
    /// // Another process rebuilds `members` (its lease is named after the projection).
    /// let other = Lease::acquire(store.clone(), "es.projection.rebuild/members", "host-b", Duration::from_secs(30)).await?;
    ///
    /// let refuse = RebuildLease { when_held: WhenHeld::Refuse, ..RebuildLease::default() };
    /// let runner = ProjectionRunner::new(Members::default(), store.clone(), InMemoryCheckpointStore::new())
    ///     .with_rebuild_lease(store.clone(), refuse);
    /// let error = runner.rebuild().await.unwrap_err();
    /// assert!(matches!(error.as_ref(), ProjectionError::RebuildLeaseHeld { holder, .. } if holder == "host-b"));
    /// # other.release().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_rebuild_lease<L: Leases + Clone>(mut self, leases: L, lease: RebuildLease) -> Self {
        self.rebuild_state.lock = Some(RebuildLock::new(leases, lease));
        self
    }

    /// Takes the rebuild lease, if one is configured; `true` when another runner had it first.
    async fn take_rebuild_lease(&self) -> Result<bool, ProjectionError> {
        let Some(lock) = &self.rebuild_state.lock else { return Ok(false) };
        let took = lock
            .take(&self.identity().name)
            .await
            .map_err(|source| ProjectionError::Store { projection: P::NAME, source })?;
        match took {
            Took::Held { waited } => Ok(waited),
            Took::Refused { holder } => {
                Err(ProjectionError::RebuildLeaseHeld { projection: P::NAME, partition: self.partition, holder })
            }
        }
    }

    /// Gives the rebuild lease up, if one is held.
    pub(super) async fn release_rebuild_lease(&self) {
        if let Some(lock) = &self.rebuild_state.lock {
            lock.release().await;
        }
    }

    /// Resets the read model and stores the first checkpoint of a rebuild, with its marker:
    /// the events up to `replay_until` had been handled before. Returns where to read from.
    pub(super) async fn begin_rebuild(
        &self,
        identity: ProjectionIdentity,
        replay_until: Checkpoint,
        reason: Rebuilt,
    ) -> Result<Checkpoint, ProjectionError> {
        let store_error = |source| ProjectionError::Store { projection: P::NAME, source };
        self.take_rebuild_lease().await?;
        let target = self.store.head().await.map_err(store_error)?;
        let total = self.count_selected(&target).await.map_err(store_error)?;
        tracing::info!(projection = P::NAME, partition = %self.partition, total, reason = ?reason, "rebuild started");
        let marker = RebuildMarker { target, replay_until, total, done: 0 };
        // With nothing to replay, the reset alone is the whole rebuild: no marker to resume.
        let rebuild = (total > 0).then(|| marker.clone());
        let saved = SavedCheckpoint { rebuild, ..SavedCheckpoint::new(identity, Checkpoint::START) };
        self.checkpoints
            .reset(&self.projection, &saved)
            .await
            .map_err(|source| ProjectionError::Checkpoints { projection: P::NAME, source })?;
        self.rebuild_state.start(marker);
        self.shared.update(|p| {
            p.rebuilt = Some(reason);
            // Every event is handled again: the parked ones too.
            p.parked.clear();
        });
        self.rebuild_committed(&saved).await;
        Ok(Checkpoint::START)
    }

    /// The checkpoint to commit after `page`, with the rebuild's marker and the parked
    /// events; renews the rebuild lease first when one is held.
    pub(super) async fn saved_after(
        &self,
        identity: &ProjectionIdentity,
        page: &AllEventsPage,
    ) -> Result<SavedCheckpoint, ProjectionError> {
        if let Some(lock) = &self.rebuild_state.lock {
            lock.renew().await.map_err(|source| ProjectionError::RebuildLeaseLost { projection: P::NAME, source })?;
        }
        Ok(self.saved_at(identity, &page.next, Some(page)))
    }

    /// The checkpoint to commit at `checkpoint`, after `page` if the batch read one.
    pub(super) fn saved_at(
        &self,
        identity: &ProjectionIdentity,
        checkpoint: &Checkpoint,
        page: Option<&AllEventsPage>,
    ) -> SavedCheckpoint {
        SavedCheckpoint {
            rebuild: self.rebuild_state.marker_after(page, self.partition),
            parked: self.shared.lock().parked.clone(),
            ..SavedCheckpoint::new(identity.clone(), checkpoint.clone())
        }
    }

    /// Picks up the rebuild `saved` records, if any, and the parked events, and returns where
    /// to read from.
    pub(super) async fn resume(&self, mut saved: SavedCheckpoint) -> Result<Checkpoint, ProjectionError> {
        if saved.rebuild.is_some() && self.take_rebuild_lease().await? {
            // Another runner rebuilt in the meantime: carry on from what it left.
            let checkpoints_error = |source| ProjectionError::Checkpoints { projection: P::NAME, source };
            match self.checkpoints.load(&saved.identity.name).await.map_err(checkpoints_error)? {
                Some(now) if now.identity == saved.identity => saved = now,
                Some(now) => {
                    self.release_rebuild_lease().await;
                    return Err(ProjectionError::IdentityChanged { stored: now.identity, current: saved.identity });
                }
                None => saved = SavedCheckpoint::new(saved.identity, Checkpoint::START),
            }
            if saved.rebuild.is_none() {
                self.release_rebuild_lease().await;
            }
        }
        if !saved.parked.is_empty() {
            tracing::warn!(projection = P::NAME, partition = %self.partition, parked = saved.parked.len(), "parked events are waiting");
            self.shared.update(|p| p.parked = saved.parked);
        }
        if let Some(marker) = saved.rebuild {
            tracing::info!(
                projection = P::NAME,
                partition = %self.partition,
                done = marker.done,
                total = marker.total,
                "resuming an interrupted rebuild"
            );
            let (done, total) = (marker.done, marker.total);
            self.rebuild_state.start(marker);
            self.shared.update(|p| p.rebuilt = Some(Rebuilt::Resumed { done, total }));
        }
        Ok(saved.checkpoint)
    }

    /// Reports the progress of a rebuild after `saved` was committed.
    pub(super) async fn rebuild_committed(&self, saved: &SavedCheckpoint) {
        let Some(progress) = self.rebuild_state.committed(P::NAME, self.partition, saved) else { return };
        if progress.finished {
            self.release_rebuild_lease().await;
            tracing::info!(
                projection = P::NAME,
                partition = %self.partition,
                events = progress.done,
                seconds = progress.elapsed.as_secs_f64(),
                "rebuild finished"
            );
        }
        self.shared.metrics(P::NAME, self.partition).lag(progress.total.saturating_sub(progress.done));
        if let Some(on_progress) = &self.rebuild_state.on_progress {
            on_progress(&progress);
        }
        self.shared.update(|p| p.rebuild = Some(progress));
    }

    /// The selected events of this runner's partition up to `target`.
    async fn count_selected(&self, target: &Checkpoint) -> Result<u64, StoreError> {
        let filter = P::filter();
        let limit = self.options.batch_size.max(1_000);
        let (mut from, mut total) = (Checkpoint::START, 0u64);
        while from < *target {
            let page = self.store.read_all(&from, &filter, limit).await?;
            for (record, after) in page.iter() {
                if *after > *target {
                    return Ok(total);
                }
                total += u64::from(self.partition.owns(&record.stream));
            }
            if page.next == from {
                break;
            }
            from = page.next;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_flag_is_set_only_inside_and_restored_after_a_panic() {
        assert!(!is_replay());
        assert!(replaying(true, is_replay));
        // Nested: the inner call restores the outer answer.
        assert!(!replaying(false, || {
            replaying(true, || ());
            is_replay()
        }));
        let caught = std::panic::catch_unwind(|| replaying(true, || panic!("handler panicked")));
        assert!(caught.is_err());
        assert!(!is_replay());
    }

    #[test]
    fn the_fraction_is_bounded() {
        let progress = RebuildProgress {
            projection: "p",
            partition: Partition::WHOLE,
            done: 0,
            total: 0,
            events_per_second: 0.0,
            elapsed: Duration::ZERO,
            target: Checkpoint::START,
            finished: true,
        };
        assert!((progress.fraction() - 1.0).abs() < f64::EPSILON);
        let half = RebuildProgress { done: 5, total: 10, ..progress };
        assert!((half.fraction() - 0.5).abs() < f64::EPSILON);
        assert!(half.to_string().contains("5 of 10"), "{half}");
    }
}

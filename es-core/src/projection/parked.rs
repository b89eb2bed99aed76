//! Parked events: set aside under [`OnFailure::Park`](super::OnFailure::Park), stored with the
//! checkpoint (so they outlive the process), listed by the handle, and retried or discarded by
//! an explicit call that the runner serves between two batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Projection;
use super::checkpoints::{CommitBatch, ProjectionIdentity};
use super::runner::{ParkedEvent, ProjectionError, ProjectionHandle, ProjectionRunner, RunState};
use crate::store::{Checkpoint, EventStore, first_of};
use crate::timer::sleep;

/// What was asked about the parked events, and how much of it the runner did.
#[derive(Debug, Default)]
pub(super) struct ParkedRequests {
    queue: Vec<ParkedAction>,
    asked: u64,
    served: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParkedAction {
    Retry,
    Discard,
}

/// Why a request about parked events ([`ProjectionHandle::retry_parked`],
/// [`ProjectionHandle::discard_parked`]) returned before the runner carried it out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParkedRequestError {
    /// The runner did not get to it in time (it is busy with a batch, or not started); it
    /// still will.
    #[error("projection `{projection}` did not act on its parked events within {timeout:?}")]
    Timeout {
        /// The projection.
        projection: &'static str,
        /// How long was waited.
        timeout: Duration,
    },
    /// The runner stopped with an error first (a retried event that failed again under
    /// [`OnFailure::Stop`](super::OnFailure::Stop), say). What was stored is unchanged.
    #[error("projection `{projection}` failed before it acted on its parked events")]
    Failed {
        /// The projection.
        projection: &'static str,
        /// Why it stopped.
        #[source]
        error: Arc<ProjectionError>,
    },
    /// The runner was stopped, or its future dropped: only a running runner acts on them.
    #[error("projection `{projection}` is not running ({state}): only its runner acts on parked events")]
    NotRunning {
        /// The projection.
        projection: &'static str,
        /// `stopped` or `abandoned`.
        state: &'static str,
    },
}

impl<P: Projection, S: EventStore> ProjectionHandle<P, S> {
    /// Hands every parked event to its handler again (once, then with the runner's retry
    /// policy), and waits until the runner has committed the outcome: the ones that succeed
    /// leave the list, the ones that fail again are parked again with the new error
    /// ([`ProjectionHandle::parked`] lists them). A retried event is handled after the events
    /// that followed it, and is never a replay ([`is_replay`](super::is_replay)).
    ///
    /// # Errors
    /// [`ParkedRequestError`] when the runner does not act within `timeout` or stops first.
    pub async fn retry_parked(&self, timeout: Duration) -> Result<(), ParkedRequestError> {
        self.ask(ParkedAction::Retry, timeout).await
    }

    /// Drops every parked event for good (each with a traced warning), and waits until the
    /// runner has stored the empty list.
    ///
    /// # Errors
    /// [`ParkedRequestError`] when the runner does not act within `timeout` or stops first.
    pub async fn discard_parked(&self, timeout: Duration) -> Result<(), ParkedRequestError> {
        self.ask(ParkedAction::Discard, timeout).await
    }

    async fn ask(&self, action: ParkedAction, timeout: Duration) -> Result<(), ParkedRequestError> {
        let ticket = {
            let mut progress = self.shared.lock();
            progress.parked_requests.queue.push(action);
            progress.parked_requests.asked += 1;
            progress.parked_requests.asked
        };
        // Wakes a runner waiting for commits; a busy one serves it before its next batch.
        self.shared.stopping.notify();
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.shared.changed.generation();
            {
                let progress = self.shared.lock();
                if progress.parked_requests.served >= ticket {
                    return Ok(());
                }
                let not_running = |state| ParkedRequestError::NotRunning { projection: P::NAME, state };
                match &progress.state {
                    RunState::Failed(error) => {
                        return Err(ParkedRequestError::Failed { projection: P::NAME, error: Arc::clone(error) });
                    }
                    RunState::Stopped => return Err(not_running("stopped")),
                    RunState::Abandoned => return Err(not_running("abandoned")),
                    RunState::NotStarted | RunState::CatchingUp | RunState::CaughtUp => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ParkedRequestError::Timeout { projection: P::NAME, timeout });
            }
            first_of(self.shared.changed.changed(seen), sleep(left)).await;
        }
    }
}

impl<P: Projection, S: EventStore, C: CommitBatch<P>> ProjectionRunner<P, S, C> {
    /// Carries out the requests about parked events, then commits the list (and what retried
    /// handlers changed) at `checkpoint`.
    pub(super) async fn serve_parked_requests(
        &self,
        identity: &ProjectionIdentity,
        checkpoint: &Checkpoint,
    ) -> Result<(), ProjectionError> {
        let (actions, asked) = {
            let mut progress = self.shared.lock();
            (std::mem::take(&mut progress.parked_requests.queue), progress.parked_requests.asked)
        };
        if actions.is_empty() {
            return Ok(());
        }
        for action in actions {
            let parked = std::mem::take(&mut self.shared.lock().parked);
            match action {
                ParkedAction::Discard => {
                    for gone in &parked {
                        tracing::warn!(projection = P::NAME, event = %gone.event, "parked event discarded");
                    }
                }
                ParkedAction::Retry => {
                    for waiting in parked {
                        self.retry(waiting).await?;
                    }
                }
            }
        }
        let saved = self.saved_at(identity, checkpoint, None);
        self.checkpoints
            .commit(&self.projection, &saved)
            .await
            .map_err(|source| ProjectionError::Checkpoints { projection: P::NAME, source })?;
        self.shared.update(|p| p.parked_requests.served = asked);
        Ok(())
    }

    /// Hands one parked event to its handler again; it is parked again if it fails.
    async fn retry(&self, waiting: ParkedEvent) -> Result<(), ProjectionError> {
        let found = self
            .store
            .find_event(waiting.event.event_id)
            .await
            .map_err(|source| ProjectionError::Store { projection: P::NAME, source })?;
        match found {
            Some(record) => {
                tracing::info!(projection = P::NAME, event = %waiting.event, "retrying a parked event");
                self.deliver(&record, false).await
            }
            None => {
                // Not in the store (any more): keep it listed, saying so.
                let error = format!("{}; the event is no longer in the store", waiting.error);
                self.shared.update(|p| p.parked.push(ParkedEvent { error, ..waiting }));
                Ok(())
            }
        }
    }
}

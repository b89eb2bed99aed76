//! Where a projection's checkpoint is kept, together with the identity it belongs to.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::ParkedEvent;
use crate::store::Checkpoint;

/// What a stored checkpoint belongs to: a projection's name, its version and the fingerprint
/// of the events it selects ([`fingerprint`](super::fingerprint)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProjectionIdentity {
    /// The projection's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The fingerprint of its selection.
    pub fingerprint: String,
}

impl ProjectionIdentity {
    /// An identity from its parts.
    pub fn new(name: impl Into<String>, version: u32, fingerprint: impl Into<String>) -> Self {
        Self { name: name.into(), version, fingerprint: fingerprint.into() }
    }
}

impl fmt::Display for ProjectionIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` version {} (selection {})", crate::store::bounded(&self.name), self.version, self.fingerprint)
    }
}

/// A projection's stored progress: where it stands, for which identity, and whether a rebuild
/// is under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCheckpoint {
    /// The identity the checkpoint was stored for.
    pub identity: ProjectionIdentity,
    /// Every event before it was handled.
    pub checkpoint: Checkpoint,
    /// Set from the reset of a rebuild until the checkpoint reaches the rebuild's target: a
    /// runner that finds it resumes the rebuild (a crash mid-rebuild never resumes the read
    /// model from before the reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildMarker>,
    /// Events set aside under [`OnFailure::Park`](super::OnFailure::Park), kept until they
    /// are retried or discarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parked: Vec<ParkedEvent>,
}

impl SavedCheckpoint {
    /// A checkpoint of `identity` with no rebuild under way.
    #[must_use]
    pub fn new(identity: ProjectionIdentity, checkpoint: Checkpoint) -> Self {
        Self { identity, checkpoint, rebuild: None, parked: Vec::new() }
    }

    /// Whether this is the first checkpoint of a rebuild (at [`Checkpoint::START`]): the read
    /// model is emptied in the commit that stores it ([`CommitBatch::reset`]).
    #[must_use]
    pub fn is_reset(&self) -> bool {
        self.checkpoint.is_start()
    }
}

/// A rebuild under way, stored with the checkpoint from its reset to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildMarker {
    /// The store's head when the rebuild began: the rebuild is done when the checkpoint
    /// reaches it.
    pub target: Checkpoint,
    /// How far the projection had got before the reset: the events up to here were handled
    /// once already, so handling them again is a replay
    /// ([`is_replay`](super::is_replay)).
    pub replay_until: Checkpoint,
    /// Selected events (of the runner's partition) up to `target`.
    pub total: u64,
    /// How many of them are handled and committed.
    pub done: u64,
}

/// Where a runner keeps its projection's checkpoint.
///
/// The runner saves after each batch: a read model kept outside this store receives each
/// event **at least once** (a crash after the handlers and before the save repeats them).
pub trait CheckpointStore: Send + Sync + 'static {
    /// The checkpoint stored for the projection named `name`, if any.
    ///
    /// # Errors
    /// Whatever the storage reports.
    fn load(&self, name: &str) -> impl Future<Output = Result<Option<SavedCheckpoint>, CheckpointStoreError>> + Send;

    /// Stores `saved` (all of it: the rebuild marker and the parked events too), replacing
    /// what was stored under its name.
    ///
    /// # Errors
    /// Whatever the storage reports.
    fn save(&self, saved: &SavedCheckpoint) -> impl Future<Output = Result<(), CheckpointStoreError>> + Send;
}

/// How a runner makes a batch durable once its handlers ran.
///
/// Every [`CheckpointStore`] does it by saving the checkpoint: the read model is the handlers'
/// business, and a crash between the two repeats the batch (**at least once**). A store that
/// keeps the read model in the same database as the checkpoint implements this trait itself
/// to write the batch's changes (kept by the projection until then) and the checkpoint in one
/// transaction (**exactly once**: a crash, or a handler that fails mid-batch, leaves neither),
/// as es-sqlite's `SqliteCheckpoints` does.
///
/// Whatever `commit` and `reset` are given, `load` returns: the checkpoint, its identity, the
/// [`RebuildMarker`] of a rebuild under way and the parked events, all of [`SavedCheckpoint`]
/// (a store that keeps it as JSON with serde keeps it whole).
pub trait CommitBatch<P>: Send + Sync + 'static {
    /// The checkpoint stored for the projection named `name`, if any.
    ///
    /// # Errors
    /// Whatever the storage reports.
    fn load(&self, name: &str) -> impl Future<Output = Result<Option<SavedCheckpoint>, CheckpointStoreError>> + Send;

    /// Makes the batch handled so far by `projection` durable, with `saved` as its checkpoint.
    ///
    /// # Errors
    /// Whatever the storage reports; the runner then stops, and its next run resumes from the
    /// checkpoint stored before.
    fn commit(
        &self,
        projection: &Arc<Mutex<P>>,
        saved: &SavedCheckpoint,
    ) -> impl Future<Output = Result<(), CheckpointStoreError>> + Send;

    /// Starts a rebuild: empties the read model and stores `saved` (the first checkpoint, at
    /// [`Checkpoint::START`], with its [`RebuildMarker`]) in one step, so that a crash leaves
    /// either the old read model with its old checkpoint or the empty one with the marker.
    ///
    /// The default commits `saved` like any batch: right for a read model that lives in the
    /// projection value (the runner starts from the fresh value it was given). A store whose
    /// read model lives in its own tables overrides it (es-sqlite's `SqliteCheckpoints` runs
    /// its `with_reset` function in the transaction).
    ///
    /// # Errors
    /// Whatever the storage reports; the runner then stops, and nothing was reset.
    fn reset(
        &self,
        projection: &Arc<Mutex<P>>,
        saved: &SavedCheckpoint,
    ) -> impl Future<Output = Result<(), CheckpointStoreError>> + Send {
        self.commit(projection, saved)
    }
}

impl<P: Send + 'static, C: CheckpointStore> CommitBatch<P> for C {
    fn load(&self, name: &str) -> impl Future<Output = Result<Option<SavedCheckpoint>, CheckpointStoreError>> + Send {
        CheckpointStore::load(self, name)
    }

    fn commit(
        &self,
        _projection: &Arc<Mutex<P>>,
        saved: &SavedCheckpoint,
    ) -> impl Future<Output = Result<(), CheckpointStoreError>> + Send {
        self.save(saved)
    }
}

/// A checkpoint store that could not load or save; the storage's own error is the source.
#[derive(Debug)]
pub struct CheckpointStoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CheckpointStoreError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), source: None }
    }

    /// An error with this message, caused by `source`.
    pub fn because(message: impl fmt::Display, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { message: message.to_string(), source: Some(source.into()) }
    }
}

impl fmt::Display for CheckpointStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckpointStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// Checkpoints in memory, for read models in memory (a read model that outlives the process
/// needs its checkpoint to outlive it too). Clones share the same checkpoints.
#[derive(Debug, Clone, Default)]
pub struct InMemoryCheckpointStore {
    saved: Arc<Mutex<HashMap<String, SavedCheckpoint>>>,
}

impl InMemoryCheckpointStore {
    /// No checkpoints.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SavedCheckpoint>> {
        // Each operation is one insert or one lookup: a panic cannot leave the map half-written.
        self.saved.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl CheckpointStore for InMemoryCheckpointStore {
    async fn load(&self, name: &str) -> Result<Option<SavedCheckpoint>, CheckpointStoreError> {
        Ok(self.lock().get(name).cloned())
    }

    async fn save(&self, saved: &SavedCheckpoint) -> Result<(), CheckpointStoreError> {
        self.lock().insert(saved.identity.name.clone(), saved.clone());
        Ok(())
    }
}

//! Where a projection's checkpoint is kept, together with the identity it belongs to.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

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

/// A projection's stored progress: where it stands and for which identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCheckpoint {
    /// The identity the checkpoint was stored for.
    pub identity: ProjectionIdentity,
    /// Every event before it was handled.
    pub checkpoint: Checkpoint,
}

impl SavedCheckpoint {
    /// A checkpoint as a store that keeps checkpoints in a table reads it back: the row of
    /// projection `name` with its stored `version`, `fingerprint` and `checkpoint` text (the
    /// layout es-sqlite's `SqliteCheckpoints` and es-postgres's `PostgresCheckpoints` share:
    /// `name`, `version`, `fingerprint`, `checkpoint`).
    ///
    /// ```
    /// use es_core::projection::SavedCheckpoint;
    /// use es_core::Checkpoint;
    ///
    /// let saved = SavedCheckpoint::from_row("balances", 2, "00ff", &Checkpoint::START.to_string()).unwrap();
    /// assert_eq!((saved.identity.version, saved.checkpoint), (2, Checkpoint::START));
    /// assert!(SavedCheckpoint::from_row("balances", -1, "00ff", "").is_err());
    /// ```
    ///
    /// # Errors
    /// A version that is not a `u32`, or a checkpoint text that does not parse: the message
    /// names the projection.
    pub fn from_row(
        name: &str,
        version: i64,
        fingerprint: impl Into<String>,
        checkpoint: &str,
    ) -> Result<Self, CheckpointStoreError> {
        let shown = crate::store::bounded(name);
        let version = u32::try_from(version)
            .map_err(|_| CheckpointStoreError::new(format!("projection `{shown}` has version {version} stored")))?;
        let checkpoint: Checkpoint = checkpoint.parse().map_err(|error| {
            CheckpointStoreError::because(format!("projection `{shown}`'s stored checkpoint"), error)
        })?;
        Ok(Self { identity: ProjectionIdentity::new(name, version, fingerprint), checkpoint })
    }
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

    /// Stores `saved`, replacing what was stored under its name.
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

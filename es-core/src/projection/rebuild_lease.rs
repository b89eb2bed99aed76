//! One rebuild of a projection at a time: the store's [`Lease`], taken before the reset (or
//! before resuming a rebuild), renewed with the batches and given up when the rebuild is done.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::store::{Lease, LeaseLost, Leases, StoreError};

/// How a runner takes the rebuild lease ([`ProjectionRunner::with_rebuild_lease`](super::ProjectionRunner::with_rebuild_lease)).
///
/// The lease is named `es.projection.rebuild/` followed by the key of the runner's checkpoint:
/// the projection's name, with `#index` for partitions after the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildLease {
    /// Who this runner is among all that share the store; unique per runner (two runners
    /// under one name would both hold the lease). By default the process id and a fresh id.
    pub holder: String,
    /// How long the lease lasts unless renewed; the runner renews it with its batches, so a
    /// batch must take less than this. 30 seconds by default.
    pub ttl: Duration,
    /// What a runner does when another one holds the lease.
    pub when_held: WhenHeld,
}

impl Default for RebuildLease {
    fn default() -> Self {
        Self {
            holder: format!("pid-{}-{}", std::process::id(), Uuid::new_v4().simple()),
            ttl: Duration::from_secs(30),
            when_held: WhenHeld::Wait,
        }
    }
}

/// What a runner that needs to rebuild does while another runner rebuilds the same projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhenHeld {
    /// Wait until the other one is done (or stops renewing its lease), then carry on from the
    /// checkpoint it left: resume its rebuild if it did not finish, or start an asked-for one.
    Wait,
    /// Stop at once with [`ProjectionError::RebuildLeaseHeld`](super::ProjectionError::RebuildLeaseHeld).
    Refuse,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The lease store, whatever its type.
trait LeaseStore: Send + Sync {
    fn take<'a>(&'a self, name: &'a str, lease: &'a RebuildLease) -> BoxFuture<'a, Result<Taken, StoreError>>;
}

/// A lease held, whatever its store.
trait HeldLease: Send + Sync {
    fn renew(&mut self) -> BoxFuture<'_, Result<(), LeaseLost>>;
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// What taking the lease found.
enum Taken {
    /// Ours (`waited`: only after another holder was done with it).
    Held { lease: Box<dyn HeldLease>, waited: bool },
    /// Someone else's, and the options say refuse.
    Busy { holder: String },
}

impl<L: Leases + Clone> LeaseStore for L {
    fn take<'a>(&'a self, name: &'a str, lease: &'a RebuildLease) -> BoxFuture<'a, Result<Taken, StoreError>> {
        Box::pin(async move {
            if let Some(held) = Lease::try_acquire(self.clone(), name, &lease.holder, lease.ttl).await? {
                return Ok(Taken::Held { lease: Box::new(held), waited: false });
            }
            if lease.when_held == WhenHeld::Refuse {
                let holder = match self.acquire_lease(name, &lease.holder, lease.ttl).await? {
                    crate::store::LeaseAttempt::Held { holder, .. } => holder,
                    crate::store::LeaseAttempt::Granted(grant) => {
                        // Free after all (the holder just gave it up): ours.
                        let held = Lease::acquire(self.clone(), &grant.name, &grant.holder, grant.ttl).await?;
                        return Ok(Taken::Held { lease: Box::new(held), waited: true });
                    }
                };
                return Ok(Taken::Busy { holder });
            }
            tracing::info!(lease = name, holder = %lease.holder, "another runner is rebuilding: waiting for it");
            let held = Lease::acquire(self.clone(), name, &lease.holder, lease.ttl).await?;
            Ok(Taken::Held { lease: Box::new(held), waited: true })
        })
    }
}

impl<L: Leases> HeldLease for Lease<L> {
    fn renew(&mut self) -> BoxFuture<'_, Result<(), LeaseLost>> {
        Box::pin(Lease::renew(self))
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(Lease::release(*self))
    }
}

/// A runner's rebuild lease: where to take it, how, and the one held.
pub(super) struct RebuildLock {
    store: Box<dyn LeaseStore>,
    options: RebuildLease,
    held: Mutex<Option<(Box<dyn HeldLease>, Instant)>>,
}

impl fmt::Debug for RebuildLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RebuildLock").field("options", &self.options).finish_non_exhaustive()
    }
}

/// What [`RebuildLock::take`] found.
pub(super) enum Took {
    /// Held now; `waited` when another runner had it first.
    Held { waited: bool },
    /// Held by `holder`, and the options say refuse.
    Refused { holder: String },
}

impl RebuildLock {
    pub(super) fn new<L: Leases + Clone>(leases: L, options: RebuildLease) -> Self {
        Self { store: Box::new(leases), options, held: Mutex::new(None) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<(Box<dyn HeldLease>, Instant)>> {
        // Each update replaces the value whole: a panic cannot leave it half-written.
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease's name for the checkpoint key `key` (the projection's, per partition).
    pub(super) fn name(key: &str) -> String {
        format!("es.projection.rebuild/{key}")
    }

    /// Takes the lease for `key` unless it is held already.
    pub(super) async fn take(&self, key: &str) -> Result<Took, StoreError> {
        if self.held().is_some() {
            return Ok(Took::Held { waited: false });
        }
        match self.store.take(&Self::name(key), &self.options).await? {
            Taken::Held { lease, waited } => {
                *self.held() = Some((lease, Instant::now()));
                Ok(Took::Held { waited })
            }
            Taken::Busy { holder } => Ok(Took::Refused { holder }),
        }
    }

    /// Renews the lease held when a third of its time to live has passed since the last
    /// renewal. Nothing when none is held.
    pub(super) async fn renew(&self) -> Result<(), LeaseLost> {
        let due = self.held().as_ref().is_some_and(|(_, renewed)| renewed.elapsed() >= self.options.ttl / 3);
        if !due {
            return Ok(());
        }
        let Some((mut lease, _)) = self.held().take() else { return Ok(()) };
        lease.renew().await?;
        *self.held() = Some((lease, Instant::now()));
        Ok(())
    }

    /// Gives the lease up, if one is held (a failure is traced: the lease then expires).
    pub(super) async fn release(&self) {
        let Some((lease, _)) = self.held().take() else { return };
        if let Err(error) = lease.release().await {
            tracing::warn!(holder = %self.options.holder, error = %error, "cannot release the rebuild lease; it expires");
        }
    }
}

//! Leases: one holder at a time for a named piece of work (a projection's rebuild, the relay
//! that publishes a store's events), kept in the store itself so that every process that
//! shares the store agrees on who holds it.
//!
//! A lease is taken for a time to live and renewed before it runs out; a holder that dies
//! stops renewing, and the lease passes to the next one asking once it has expired. Each time
//! a lease changes hands (or lapses and is taken again) its [`token`](LeaseGrant::token)
//! grows: work that writes under a lease can store the token beside what it writes and refuse
//! a write with a smaller one (a fencing token), so a holder that was paused past its expiry
//! cannot overwrite its successor.
//!
//! [`Leases`] is what a store implements (two calls); [`Lease`] is what work holds: it waits
//! for the lease, renews it ([`Lease::keep`], raced against the work) and gives it up.
//!
//! ```
//! # use std::time::Duration;
//! # use es_core::InMemoryStore;
//! # use es_core::store::{Lease, LeaseLost};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), es_core::StoreError> {
//! let store = InMemoryStore::new();
//! let mut lease = Lease::acquire(store.clone(), "rebuild:balances", "worker-1", Duration::from_secs(10)).await?;
//! // A second worker does not get it while the first renews it.
//! assert!(Lease::try_acquire(store.clone(), "rebuild:balances", "worker-2", Duration::from_secs(10)).await?.is_none());
//! let work = async { /* the work the lease guards */ };
//! tokio::select! {
//!     () = work => {}
//!     lost = lease.keep() => return Err(es_core::StoreError::from(lost)),
//! }
//! lease.release().await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StoreError;
use crate::timer::sleep;

/// What a store that hands out [`Lease`]s implements.
///
/// Both calls are atomic in the store: two holders asking at once never both get a lease.
pub trait Leases: Send + Sync + 'static {
    /// Takes lease `name` for `holder` for `ttl` when it is free, expired, or already held by
    /// `holder` (then this renews it, keeping its token).
    ///
    /// # Errors
    /// The store's errors.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<LeaseAttempt, StoreError>> + Send;

    /// Gives up `grant` (at once: the next holder need not wait for it to expire). Nothing
    /// happens when the lease has changed hands since.
    ///
    /// # Errors
    /// The store's errors.
    fn release_lease(&self, grant: &LeaseGrant) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<L: Leases> Leases for Arc<L> {
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<LeaseAttempt, StoreError>> + Send {
        (**self).acquire_lease(name, holder, ttl)
    }

    fn release_lease(&self, grant: &LeaseGrant) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release_lease(grant)
    }
}

/// What [`Leases::acquire_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// The lease is the asker's, until `ttl` from now.
    Granted(LeaseGrant),
    /// Someone else holds it.
    Held {
        /// Who.
        holder: String,
        /// How long until it expires unless renewed.
        expires_in: Duration,
    },
}

/// A lease held: by whom, under which token, for how long from its last renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease's name.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// Grows each time the lease changes hands or lapses: a fencing token.
    pub token: u64,
    /// How long it lasts from its last renewal.
    pub ttl: Duration,
}

/// Why a held [`Lease`] is no longer held.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseLost {
    /// Another holder has it: this one's lease expired and was taken over.
    #[error("lease `{name}` was taken over by `{holder}`: stop the work it guarded; acquire it again to resume")]
    TakenOver {
        /// The lease.
        name: String,
        /// Who holds it now.
        holder: String,
    },
    /// It expired before it was renewed (a pause longer than its time to live, say); nobody
    /// took it in between, but the work it guarded went unguarded for a while, so it counts
    /// as lost and is given up.
    #[error(
        "lease `{name}` expired before it was renewed (the holder paused longer than its time to live): it was given up; acquire it again, with a longer time to live if pauses are expected"
    )]
    Lapsed {
        /// The lease.
        name: String,
    },
    /// The store could not be reached to renew it before it expired.
    #[error(
        "lease `{name}` could not be renewed before it expired: the store did not answer; acquire it again once the store is back"
    )]
    Unrenewable {
        /// The lease.
        name: String,
        /// The store's last error.
        #[source]
        source: StoreError,
    },
}

impl From<LeaseLost> for StoreError {
    /// A lost lease as a store error: [`LeaseLost::Unrenewable`] is its store error, the others
    /// a [`StoreError::LeaseLost`].
    fn from(lost: LeaseLost) -> Self {
        match lost {
            LeaseLost::Unrenewable { source, .. } => source,
            other => StoreError::LeaseLost(Box::new(other)),
        }
    }
}

/// A lease held by this process: wait for it with [`Lease::acquire`], keep it with
/// [`Lease::keep`] raced against the work it guards, and give it up with [`Lease::release`].
///
/// Dropping a `Lease` does not release it (dropping cannot wait for the store): it then
/// expires after its time to live.
pub struct Lease<L: Leases> {
    leases: L,
    grant: LeaseGrant,
    renewed: Instant,
}

impl<L: Leases> fmt::Debug for Lease<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("grant", &self.grant).finish_non_exhaustive()
    }
}

impl<L: Leases> Lease<L> {
    /// Waits until lease `name` is `holder`'s for `ttl`: at once when it is free, otherwise
    /// when its holder gives it up or stops renewing it (asking again at most every `ttl / 4`).
    ///
    /// `holder` names this process among those that share the store (a host name and process
    /// id, say); two processes asking under one name would both hold the lease.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn acquire(leases: L, name: &str, holder: &str, ttl: Duration) -> Result<Self, StoreError> {
        loop {
            match leases.acquire_lease(name, holder, ttl).await? {
                LeaseAttempt::Granted(grant) => return Ok(Self { leases, grant, renewed: Instant::now() }),
                LeaseAttempt::Held { holder: other, expires_in } => {
                    tracing::debug!(lease = name, holder = %other, ?expires_in, "lease held; waiting");
                    sleep(expires_in.min(ttl / 4).max(Duration::from_millis(5))).await;
                }
            }
        }
    }

    /// Takes lease `name` for `holder` if it can be had now; `None` when someone else holds it.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn try_acquire(leases: L, name: &str, holder: &str, ttl: Duration) -> Result<Option<Self>, StoreError> {
        Ok(match leases.acquire_lease(name, holder, ttl).await? {
            LeaseAttempt::Granted(grant) => Some(Self { leases, grant, renewed: Instant::now() }),
            LeaseAttempt::Held { .. } => None,
        })
    }

    /// The lease as it was last granted.
    #[must_use]
    pub fn grant(&self) -> &LeaseGrant {
        &self.grant
    }

    /// Renews the lease for another time to live. A store that fails is asked again, with a
    /// growing pause, until the lease would have expired.
    ///
    /// # Errors
    /// [`LeaseLost`] when the lease is no longer this holder's.
    pub async fn renew(&mut self) -> Result<(), LeaseLost> {
        let mut pause = Duration::from_millis(20);
        loop {
            let asked = Instant::now();
            match self.leases.acquire_lease(&self.grant.name, &self.grant.holder, self.grant.ttl).await {
                Ok(LeaseAttempt::Granted(grant)) if grant.token == self.grant.token => {
                    self.grant = grant;
                    self.renewed = asked;
                    return Ok(());
                }
                Ok(LeaseAttempt::Granted(grant)) => {
                    // Held again, but under a new token: it lapsed in between. Give it up.
                    if let Err(error) = self.leases.release_lease(&grant).await {
                        tracing::warn!(lease = %grant.name, error = %error, "cannot give up a lapsed lease; it expires by itself");
                    }
                    return Err(LeaseLost::Lapsed { name: grant.name });
                }
                Ok(LeaseAttempt::Held { holder, .. }) => {
                    return Err(LeaseLost::TakenOver { name: self.grant.name.clone(), holder });
                }
                Err(error) => {
                    let left = self.grant.ttl.saturating_sub(self.renewed.elapsed());
                    if left.is_zero() {
                        return Err(LeaseLost::Unrenewable { name: self.grant.name.clone(), source: error });
                    }
                    tracing::warn!(lease = %self.grant.name, error = %error, ?left, "cannot renew a lease; asking again");
                    sleep(pause.min(left)).await;
                    pause = (pause * 2).min(self.grant.ttl / 4);
                }
            }
        }
    }

    /// Renews the lease every third of its time to live until it is lost; never returns while
    /// the lease is held. Race it against the work the lease guards (`tokio::select!`, or
    /// `futures::select`), and stop the work when it returns.
    pub async fn keep(&mut self) -> LeaseLost {
        loop {
            // A third of the time to live after the last renewal was asked for, however long
            // that renewal took to answer.
            let next = self.renewed + self.grant.ttl / 3;
            sleep(next.saturating_duration_since(Instant::now())).await;
            if let Err(lost) = self.renew().await {
                tracing::warn!(lease = %self.grant.name, error = %lost, "lease lost");
                return lost;
            }
        }
    }

    /// Gives the lease up at once.
    ///
    /// # Errors
    /// The store's errors (the lease then expires after its time to live).
    pub async fn release(self) -> Result<(), StoreError> {
        self.leases.release_lease(&self.grant).await
    }
}

/// A lease as a store keeps it, and the decision every store makes the same way.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Who holds it (or last held it).
    pub holder: String,
    /// Its token.
    pub token: u64,
    /// Whether it is still within its time to live.
    pub live: bool,
}

/// What a store does with a request for a lease, given the row it holds (if any): the token
/// to store and grant, or `None` when another holder has it. A live lease of the same holder is
/// renewed under its token; anything else that can be taken is taken under a greater one.
#[doc(hidden)]
#[must_use]
pub fn next_token(row: Option<&LeaseRow>, holder: &str) -> Option<u64> {
    match row {
        None => Some(1),
        Some(row) if row.live && row.holder == holder => Some(row.token),
        Some(row) if row.live => None,
        Some(row) => Some(row.token.saturating_add(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(holder: &str, token: u64, live: bool) -> LeaseRow {
        LeaseRow { holder: holder.to_owned(), token, live }
    }

    #[test]
    fn tokens_grow_whenever_the_lease_changes_hands_or_lapses() {
        assert_eq!(next_token(None, "a"), Some(1));
        assert_eq!(next_token(Some(&row("a", 3, true)), "a"), Some(3));
        assert_eq!(next_token(Some(&row("a", 3, true)), "b"), None);
        assert_eq!(next_token(Some(&row("a", 3, false)), "b"), Some(4));
        assert_eq!(next_token(Some(&row("a", 3, false)), "a"), Some(4));
    }
}

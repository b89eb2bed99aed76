//! One relay at a time per store: a lease with a time to live, taken and renewed in the store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use es_core::projection::CheckpointStoreError;
use uuid::Uuid;

/// A named lease held by one holder at a time until it expires, kept where every relay of a
/// store sees it (the store's own database).
///
/// A relay calls [`Lease::try_acquire`] until it returns `true`, then again every third of the
/// time to live to renew it; a holder that stops renewing (a killed process) loses it when it
/// expires, and a waiting relay takes over.
pub trait Lease: Send + Sync + 'static {
    /// Takes lease `name` for `holder` for `ttl` when it is free, expired or already
    /// `holder`'s (which renews it). `false` while another holder has it.
    ///
    /// # Errors
    /// Whatever the storage reports.
    fn try_acquire(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, CheckpointStoreError>> + Send;

    /// Gives lease `name` up if `holder` has it, so that a waiting relay takes over at once.
    ///
    /// # Errors
    /// Whatever the storage reports.
    fn release(&self, name: &str, holder: Uuid) -> impl Future<Output = Result<(), CheckpointStoreError>> + Send;
}

/// Leases in this process's memory: relays in one process take turns. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct InMemoryLease {
    held: Arc<Mutex<HashMap<String, (Uuid, Instant)>>>,
}

impl InMemoryLease {
    /// No lease held.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl Lease for InMemoryLease {
    async fn try_acquire(&self, name: &str, holder: Uuid, ttl: Duration) -> Result<bool, CheckpointStoreError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match held.get(name) {
            Some((other, until)) if *other != holder && *until > now => Ok(false),
            _ => {
                held.insert(name.to_owned(), (holder, now + ttl));
                Ok(true)
            }
        }
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointStoreError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(name).is_some_and(|(current, _)| *current == holder) {
            held.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_until_it_expires_or_is_released() {
        let lease = InMemoryLease::new();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let ttl = Duration::from_millis(50);
        assert!(lease.try_acquire("relay", a, ttl).await.unwrap());
        assert!(!lease.try_acquire("relay", b, ttl).await.unwrap());
        assert!(lease.try_acquire("relay", a, ttl).await.unwrap(), "the holder renews");
        assert!(lease.try_acquire("other", b, ttl).await.unwrap(), "names are separate");
        tokio::time::sleep(ttl * 2).await;
        assert!(lease.try_acquire("relay", b, ttl).await.unwrap(), "expired: taken over");
        lease.release("relay", a).await.unwrap();
        assert!(!lease.try_acquire("relay", a, ttl).await.unwrap(), "only the holder releases");
        lease.release("relay", b).await.unwrap();
        assert!(lease.try_acquire("relay", a, ttl).await.unwrap());
    }
}

//! Per-command options and the retry policy.

use std::time::Duration;

use uuid::Uuid;

use crate::record::{Envelope, Metadata};

/// Retrying a command whose append met a version conflict: reload, decide again, append again,
/// with jittered exponential backoff between attempts.
///
/// The backoff sleeps through [`crate::timer::sleep`], which needs no particular async
/// runtime: retries work under any executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The backoff before the second attempt; it doubles each time.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// No retries: a conflict is returned to the caller.
    pub const NONE: RetryPolicy =
        RetryPolicy { max_attempts: 1, base_delay: Duration::ZERO, max_delay: Duration::ZERO };

    /// Up to `max_attempts` attempts with the default backoff (1 ms doubling to 100 ms).
    #[must_use]
    pub const fn attempts(max_attempts: u32) -> Self {
        RetryPolicy { max_attempts, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(100) }
    }

    /// The backoff before attempt `attempt + 1`: a random duration up to the exponential bound
    /// ("full jitter"), so contending writers spread out instead of colliding again.
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let bound = self.bound(attempt);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % nanos + 1)
    }

    /// The largest backoff before attempt `attempt + 1`.
    fn bound(&self, attempt: u32) -> Duration {
        self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.max_delay)
    }
}

impl Default for RetryPolicy {
    /// 100 attempts, backoff from 1 ms doubling up to 100 ms: enough for 8 writers contending
    /// for one aggregate on SQLite (measured: up to 31 attempts for one command).
    fn default() -> Self {
        Self::attempts(100)
    }
}

/// A random number (UUID v4's random bits: no RNG dependency of our own).
fn random_u64() -> u64 {
    let bits = Uuid::new_v4().as_u128();
    (bits as u64) ^ ((bits >> 64) as u64)
}

/// Per-command settings: metadata for the events and an optional command id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// Stored with every event the command produces.
    pub metadata: Metadata,
    /// When set, the events' ids derive from it, and running a command with an id whose
    /// events are already stored returns those events instead of deciding again: a retried
    /// request never applies twice, and gets the first run's outcome.
    pub command_id: Option<Uuid>,
}

impl CommandOptions {
    /// Options with this command id.
    #[must_use]
    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = Some(command_id);
        self
    }

    /// Options with this metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Options for a command caused by `cause`: its correlation id carried forward, its event
    /// id as causation id.
    #[must_use]
    pub fn caused_by<E>(cause: &Envelope<E>) -> Self {
        Self { metadata: Metadata::caused_by(cause), command_id: None }
    }

    /// The id of the `index`-th event of a command with id `command_id` (UUID v5 in the
    /// command id's namespace).
    #[must_use]
    pub fn derived_event_id(command_id: Uuid, index: usize) -> Uuid {
        Uuid::new_v5(&command_id, &(index as u64).to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stays_within_its_bound() {
        let policy = RetryPolicy::attempts(10);
        let bounds: Vec<u128> = (1..=9).map(|attempt| policy.bound(attempt).as_millis()).collect();
        assert_eq!(bounds, [1, 2, 4, 8, 16, 32, 64, 100, 100]);
        for attempt in 1..30 {
            let delay = policy.backoff(attempt);
            assert!(delay > Duration::ZERO && delay <= policy.bound(attempt), "{attempt}: {delay:?}");
        }
        assert_eq!(RetryPolicy::NONE.backoff(1), Duration::ZERO);
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let command = Uuid::from_u128(42);
        assert_eq!(CommandOptions::derived_event_id(command, 0), CommandOptions::derived_event_id(command, 0));
        assert_ne!(CommandOptions::derived_event_id(command, 0), CommandOptions::derived_event_id(command, 1));
    }
}

//! What a [`ProjectionRunner`](super::ProjectionRunner) reports to the
//! [`metrics`](https://docs.rs/metrics) facade and to `tracing`, and the metric names.
//!
//! Every metric is labelled `projection` (the name) and `partition` (its index). With no
//! recorder installed, each is a no-op. The runner registers them on its first use, so install
//! the recorder (a Prometheus exporter, say) before starting runners.
//!
//! | metric | kind | counts |
//! | --- | --- | --- |
//! | `es_projection_events_handled_total` | counter | events handled by the projection's handlers |
//! | `es_projection_batches_committed_total` | counter | batches made durable with their checkpoint |
//! | `es_projection_handler_failures_total` | counter | handler attempts that failed (each retry that fails too) |
//! | `es_projection_handler_retries_total` | counter | retries after a failed attempt |
//! | `es_projection_events_parked_total` | counter | events set aside under `OnFailure::Park` |
//! | `es_projection_lag_events` | gauge | selected events not handled yet: 0 when caught up, what is left during a rebuild, the count of the last `status()` |
//!
//! Each batch runs in a `tracing` span `projection_batch` (level debug) with the projection,
//! the partition and the number of events read.

use metrics::{Counter, Gauge, counter, gauge};

use super::Partition;
use crate::store::AllEventsPage;

/// Counter: events handled.
pub const EVENTS_HANDLED: &str = "es_projection_events_handled_total";
/// Counter: batches committed with their checkpoint.
pub const BATCHES_COMMITTED: &str = "es_projection_batches_committed_total";
/// Counter: failed handler attempts.
pub const HANDLER_FAILURES: &str = "es_projection_handler_failures_total";
/// Counter: retries of a failed handler.
pub const HANDLER_RETRIES: &str = "es_projection_handler_retries_total";
/// Counter: events parked.
pub const EVENTS_PARKED: &str = "es_projection_events_parked_total";
/// Gauge: selected events not handled yet.
pub const LAG: &str = "es_projection_lag_events";

/// One runner's metric handles, labelled with its projection and partition.
pub(super) struct RunnerMetrics {
    pub(super) handled: Counter,
    pub(super) batches: Counter,
    pub(super) failures: Counter,
    pub(super) retries: Counter,
    pub(super) parked: Counter,
    pub(super) lag: Gauge,
}

impl RunnerMetrics {
    pub(super) fn new(projection: &'static str, partition: Partition) -> Self {
        let labels = [("projection", projection.to_owned()), ("partition", partition.index().to_string())];
        Self {
            handled: counter!(EVENTS_HANDLED, &labels),
            batches: counter!(BATCHES_COMMITTED, &labels),
            failures: counter!(HANDLER_FAILURES, &labels),
            retries: counter!(HANDLER_RETRIES, &labels),
            parked: counter!(EVENTS_PARKED, &labels),
            lag: gauge!(LAG, &labels),
        }
    }

    /// Sets the lag gauge to `events`.
    pub(super) fn lag(&self, events: u64) {
        // A lag beyond 2^52 events loses precision in the gauge only.
        #[allow(clippy::cast_precision_loss)]
        self.lag.set(events as f64);
    }
}

/// The span a batch of `page` runs in.
pub(super) fn batch_span(projection: &'static str, partition: Partition, page: &AllEventsPage) -> tracing::Span {
    tracing::debug_span!("projection_batch", projection, partition = partition.index(), events = page.events.len())
}

//! The runner's metrics through the `metrics` facade, seen by a recorder as an exporter sees
//! them: events handled, batches committed, failures, retries, parked events and the lag, per
//! projection and partition. (One test: the recorder is global to this test binary.)

#![allow(missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use es::prelude::*;
use es::projection::{InMemoryCheckpointStore, OnFailure, ProjectionOptions, ProjectionRunner, metrics};
use es::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// Money was paid in.
#[event(version = 1)]
pub struct Paid {
    pub amount: u64,
}

/// Fails twice on 13 (then succeeds), and always on 99.
#[derive(Projection, Default, Debug)]
#[projection(name = "metered", events(Paid))]
pub struct Metered {
    thirteens: u32,
    total: u64,
}

impl Handle<Paid> for Metered {
    fn handle(&mut self, event: &Envelope<Paid>) -> Result<(), HandlerError> {
        match event.event.amount {
            13 if self.thirteens < 2 => {
                self.thirteens += 1;
                Err("not yet".into())
            }
            99 => Err("never".into()),
            amount => {
                self.total += amount;
                Ok(())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_counts_what_it_does_per_projection_and_partition() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let store = InMemoryStore::new();
    for amount in [1, 2, 13, 4, 99] {
        let event = NewEvent::new(RawEvent::new("Paid", 1, format!(r#"{{"amount":{amount}}}"#)));
        store.append(&StreamId::new("Account", "a"), ExpectedVersion::Any, vec![event]).await.unwrap();
    }
    let options = ProjectionOptions {
        batch_size: 2,
        on_failure: OnFailure::Park,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        },
        ..ProjectionOptions::default()
    };
    let runner = ProjectionRunner::new(Metered::default(), store, InMemoryCheckpointStore::new()).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(Duration::from_secs(10)).await.unwrap();
    // The lag gauge is 0 once the runner is caught up; the status count sets it too.
    assert_eq!(handle.status().await.unwrap().lag, 0);
    handle.stop();
    task.await.unwrap().unwrap();

    let mut seen: HashMap<String, f64> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<(&str, &str)> = key.labels().map(|label| (label.key(), label.value())).collect();
        assert_eq!(labels, [("projection", "metered"), ("partition", "0")], "{key:?}");
        #[allow(clippy::cast_precision_loss)]
        let value = match value {
            DebugValue::Counter(count) => count as f64,
            DebugValue::Gauge(gauge) => gauge.into_inner(),
            DebugValue::Histogram(_) => continue,
        };
        seen.insert(key.name().to_owned(), value);
    }
    let expected = [
        (metrics::EVENTS_HANDLED, 4.0),
        (metrics::BATCHES_COMMITTED, 3.0),
        (metrics::HANDLER_FAILURES, 5.0),
        (metrics::HANDLER_RETRIES, 4.0),
        (metrics::EVENTS_PARKED, 1.0),
        (metrics::LAG, 0.0),
    ];
    for (name, value) in expected {
        assert_eq!(seen.get(name), Some(&value), "{name} in {seen:?}");
    }
}

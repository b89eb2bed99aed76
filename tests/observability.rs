//! What a repository tells an operator: tracing spans around load, decide, append and
//! snapshot, with the stream, versions and counts. (One test in this file: tracing caches
//! each call site's interest process-wide, so a test running beside it without a subscriber
//! would hide spans from it. The counters, readable without a subscriber, are tested in
//! `runtime.rs`.)

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use es::InMemoryStore;
use es::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event as TracingEvent, Metadata, Subscriber};

/// One unit of work was done.
#[event(version = 1)]
pub struct Worked {}

/// Counts work; snapshotted every 2 events.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "es::serde")]
#[aggregate(id = String, events(Worked), snapshot(every = 2, version = 1))]
pub struct Worker {
    done: u64,
}

impl Apply<Worked> for Worker {
    fn apply(&mut self, _: &Worked) {
        self.done += 1;
    }
}

/// A span's name and its fields as text.
type Recorded = (String, Vec<(String, String)>);

/// Every span opened, with its fields, in order.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<Recorded>>>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        span.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        spans.push((span.metadata().name().to_owned(), fields));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, fields)) = usize::try_from(span.into_u64() - 1).ok().and_then(|i| spans.get_mut(i)) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &TracingEvent<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn commands_and_loads_are_traced_with_their_stream_and_versions() {
    let recorder = Recorder::default();
    let workers = Repository::<Worker, _>::new(InMemoryStore::new());
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    tracing::subscriber::with_default(recorder.clone(), || {
        runtime.block_on(async {
            workers.execute("w", |_| Ok(Worked {})).await.expect("execute failed");
            workers.execute("w", |_| Ok(Worked {})).await.expect("execute failed");
            workers.load("w").await.expect("load failed");
        });
    });
    let spans = recorder.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let field = |name: &str, key: &str| -> Vec<String> {
        spans
            .iter()
            .filter(|(span, _)| span == name)
            .flat_map(|(_, fields)| fields.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()))
            .collect()
    };
    let names: Vec<&str> = spans.iter().map(|(name, _)| name.as_str()).collect();
    for expected in ["es.execute", "es.decide", "es.append", "es.snapshot", "es.load"] {
        assert!(names.contains(&expected), "no `{expected}` span in {names:?}");
    }
    assert_eq!(field("es.execute", "stream"), ["Worker/w", "Worker/w"]);
    assert_eq!(field("es.execute", "version"), ["1", "2"], "execute records the version it wrote");
    assert_eq!(field("es.execute", "events"), ["1", "1"]);
    assert_eq!(field("es.append", "expected"), ["no stream", "version 1"]);
    assert_eq!(field("es.snapshot", "version"), ["2"]);
    assert_eq!(field("es.load", "version"), ["2"]);
}

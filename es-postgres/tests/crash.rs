//! A writer killed with SIGKILL while it appends leaves every batch whole or absent, no hole
//! in the positions, and the store takes appends again at once.
//!
//! The test binary is its own child: `crash_child_appender` is an ignored test that does
//! nothing unless `ES_PG_CRASH_CHILD_SCHEMA` is set, and then appends batches until killed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use es_core::{
    Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent, RawEvent, ReadAllFilter, StoredEvent, StreamId,
};
use es_postgres::{PostgresOptions, PostgresStore};
use uuid::Uuid;

const CHILD_ENV: &str = "ES_PG_CRASH_CHILD_SCHEMA";
const READY: &str = "crash-child: first batch committed";
const BATCH: usize = 50;
const STREAMS: usize = 3;
const ROUNDS: usize = 4;

fn batch(batch_id: Uuid) -> Vec<NewEvent> {
    (0..BATCH)
        .map(|index| {
            let payload = serde_json::json!({ "batch": batch_id, "index": index, "padding": "x".repeat(300) });
            NewEvent::new(RawEvent::new("Tick", 1, payload.to_string()))
                .with_metadata(Metadata::new().with_correlation_id(batch_id))
        })
        .collect()
}

/// The connection URL of the child, tagged so the parent can wait for its server sessions to
/// end.
fn child_url(schema: &str) -> String {
    let url = common::database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={schema}")
}

#[test]
#[ignore = "the child process of `a_killed_writer_leaves_only_whole_batches`; does nothing on its own"]
fn crash_child_appender() {
    let Ok(schema) = std::env::var(CHILD_ENV) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let options = PostgresOptions::new().schema(schema.clone()).max_connections(STREAMS);
        let store = PostgresStore::connect_with(&child_url(&schema), options).await.expect("child: connect");
        // One writer per stream, so that a kill lands in the middle of several appends.
        let mut writers = Vec::new();
        for stream in 0..STREAMS {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let stream = StreamId::new("Crash", stream.to_string());
                for round in 0usize.. {
                    let version = store.stream_version(&stream).await.expect("child: version");
                    store
                        .append(&stream, ExpectedVersion::Exact(version), batch(Uuid::now_v7()))
                        .await
                        .expect("child: append");
                    if round == 0 {
                        let mut stdout = std::io::stdout();
                        let _ = writeln!(stdout, "{READY}");
                        let _ = stdout.flush();
                    }
                }
            }));
        }
        for writer in writers {
            let _ = writer.await;
        }
    });
}

fn random() -> u64 {
    let id = Uuid::new_v4();
    u64::from_le_bytes(id.as_bytes()[..8].try_into().unwrap_or_default())
}

/// Checks the store after a crash; returns the number of whole batches in it.
fn check_batches(events: &[StoredEvent]) -> usize {
    let positions: Vec<u64> = events.iter().map(|e| e.position.0).collect();
    assert_eq!(positions, (1..=events.len() as u64).collect::<Vec<_>>(), "positions 1, 2, 3 … without a hole");
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut batches: BTreeMap<Uuid, Vec<&StoredEvent>> = BTreeMap::new();
    for event in events {
        versions.entry(event.stream.id()).or_default().push(event.stream_version.0);
        let batch_id = event.metadata.correlation_id.expect("every event carries its batch id");
        batches.entry(batch_id).or_default().push(event);
    }
    for (stream, versions) in &versions {
        assert_eq!(*versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "stream {stream} is gapless");
    }
    for (batch_id, events) in &batches {
        assert_eq!(events.len(), BATCH, "batch {batch_id} is whole");
        for (index, event) in events.iter().enumerate() {
            let payload: serde_json::Value = serde_json::from_str(&event.event.payload).expect("payload is JSON");
            assert_eq!(payload["index"], serde_json::json!(index), "batch {batch_id} in order");
            assert_eq!(event.stream, events[0].stream, "batch {batch_id} in one stream");
            assert_eq!(event.position.0, events[0].position.0 + index as u64, "batch {batch_id} is contiguous");
        }
    }
    batches.len()
}

#[test]
fn a_killed_writer_leaves_only_whole_batches() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let schema = common::unique_schema("crash");
    let store = runtime.block_on(async {
        let options = PostgresOptions::new().schema(schema.clone());
        PostgresStore::connect_with(&common::database_url(), options).await.unwrap_or_else(|error| {
            panic!("cannot open a PostgreSQL store at DATABASE_URL (is the server up?): {error}")
        })
    });
    let mut batches_before = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["crash_child_appender", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &schema)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("child stdout");
        let (ready, is_ready) = mpsc::channel();
        std::thread::spawn(move || {
            let found = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.contains(READY));
            let _ = ready.send(found);
        });
        match is_ready.recv_timeout(Duration::from_secs(60)) {
            Ok(true) => {}
            outcome => {
                let _ = child.kill();
                panic!("round {round}: the child never committed a batch ({outcome:?}, {:?})", child.wait());
            }
        }
        std::thread::sleep(Duration::from_millis(20 + random() % 200));
        child.kill().expect("kill"); // SIGKILL: the child's connections just vanish.
        let status = child.wait().expect("wait");
        assert!(!status.success(), "round {round}: the child was killed");

        runtime.block_on(async {
            // The server ends the child's sessions when it notices the sockets closed (rolling
            // back, or finishing a statement it already had whole): wait for that.
            let client = common::raw_client().await;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let rows = client
                    .query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1", &[&schema])
                    .await
                    .expect("pg_stat_activity");
                if rows.is_empty() {
                    break;
                }
                assert!(Instant::now() < deadline, "round {round}: the child's sessions did not end");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let events = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.expect("read");
            let batches = check_batches(&events.events);
            assert!(batches > batches_before, "round {round}: the child added batches");

            let stream = StreamId::new("Crash", "0");
            let version = store.stream_version(&stream).await.expect("version");
            let appended =
                store.append(&stream, ExpectedVersion::Exact(version), batch(Uuid::now_v7())).await.expect("append");
            assert_eq!(appended.events[0].stream_version.0, version.0 + 1);
            assert_eq!(appended.events[0].position.0, events.events.len() as u64 + 1);
            let events = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.expect("read");
            batches_before = check_batches(&events.events);
            assert_eq!(batches_before, batches + 1);
        });
    }
    runtime.block_on(common::drop_schema(&store));
}

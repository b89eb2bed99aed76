//! What the NATS tests share: the server, unique streams, the domain, an exactly-once
//! read model in SQLite that records every application, and child processes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use es::nats::async_nats::{self, jetstream};
use es::nats::sqlite::SqliteReadModel;
use es::nats::{StreamSettings, Subjects};
use es::prelude::*;
use es::{EventStore, ExpectedVersion, NewEvent, RawEvent, SqliteStore, StreamId};
use es_sqlite::rusqlite::Transaction;
use futures_util::StreamExt;

/// The server the tests use: `NATS_URL`, or the local one `.ci/run` starts.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned())
}

/// A JetStream context on the test server; fails (never skips) when it is down.
pub async fn jetstream() -> jetstream::Context {
    let url = nats_url();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap_or_else(|error| {
            panic!("NATS is unreachable at {url} ({error}): start `nats-server -js` (see .ci/run)")
        });
    jetstream::new(client)
}

/// Stream settings no other test run uses: `ES_TEST_<label>_<unix seconds>_<random>` on
/// subjects `es_test_<label>_<…>.>`. Streams of this shape older than an hour are deleted
/// first (left by a run that panicked).
pub async fn unique_stream(jetstream: &jetstream::Context, label: &str) -> StreamSettings {
    sweep(jetstream).await;
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let random = &Uuid::now_v7().simple().to_string()[20..];
    let name = format!("ES_TEST_{label}_{secs}_{random}");
    StreamSettings::new(name.clone(), name.to_lowercase())
}

async fn sweep(jetstream: &jetstream::Context) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let names: Vec<String> = jetstream.stream_names().filter_map(|name| async move { name.ok() }).collect().await;
    for name in names {
        let Some(rest) = name.strip_prefix("ES_TEST_") else { continue };
        let secs = rest.rsplit('_').nth(1).and_then(|secs| secs.parse::<u64>().ok());
        if secs.is_some_and(|secs| now.saturating_sub(secs) > 3600) {
            let _ = jetstream.delete_stream(&name).await;
        }
    }
}

/// Deletes the test's stream (with its consumers).
pub async fn delete(jetstream: &jetstream::Context, settings: &StreamSettings) {
    jetstream.delete_stream(&settings.name).await.expect("the test stream could not be deleted");
}

/// How many messages the stream holds.
pub async fn messages_in(jetstream: &jetstream::Context, settings: &StreamSettings) -> u64 {
    let mut stream = jetstream.get_stream(&settings.name).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// A tick of a counter.
#[event(version = 1)]
pub struct Ticked {
    /// Which tick.
    pub n: u64,
}

/// Money was paid in. Version 2 added `reference`.
#[event(version = 2, upcast_from = PaidV1)]
pub struct Paid {
    /// How much.
    pub amount: u64,
    /// The payer's reference.
    pub reference: String,
}

/// The first shape of `Paid`.
#[event(name = "Paid", version = 1)]
pub struct PaidV1 {
    /// How much.
    pub amount: u64,
}

impl From<PaidV1> for Paid {
    fn from(old: PaidV1) -> Self {
        Self { amount: old.amount, reference: "(v1)".into() }
    }
}

/// One application of one event, as the read model records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub event_id: String,
    pub stream: String,
    pub version: u64,
    pub note: String,
}

/// Records every event it is handed, in order; writes them with the applied versions in one
/// transaction (`flush`).
#[derive(Projection, Default, Debug)]
#[projection(name = "ledger", events(Ticked, Paid))]
pub struct Ledger {
    pub pending: Vec<Row>,
    /// Its handler fails on a tick with this number.
    pub fail_on: Option<u64>,
    /// How long each flush takes (to make a kill land mid-batch).
    pub slow_flush: Duration,
}

impl Ledger {
    fn record<E>(&mut self, event: &Envelope<E>, note: String) {
        self.pending.push(Row {
            event_id: event.event_id.to_string(),
            stream: event.stream.to_string(),
            version: event.stream_version.0,
            note,
        });
    }
}

impl Handle<Ticked> for Ledger {
    fn handle(&mut self, event: &Envelope<Ticked>) -> Result<(), HandlerError> {
        if self.fail_on == Some(event.event.n) {
            return Err(format!("tick {} refused", event.event.n).into());
        }
        self.record(event, format!("tick {}", event.event.n));
        Ok(())
    }
}

impl Handle<Paid> for Ledger {
    fn handle(&mut self, event: &Envelope<Paid>) -> Result<(), HandlerError> {
        self.record(event, format!("paid {} {}", event.event.amount, event.event.reference));
        Ok(())
    }
}

/// `Ledger`'s flush: appends its rows to table `ledger` (no key: a duplicate would show).
pub fn flush_ledger(tx: &Transaction<'_>, ledger: &mut Ledger) -> Result<(), HandlerError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS ledger (event_id TEXT NOT NULL, stream TEXT NOT NULL, version INTEGER NOT NULL, note TEXT NOT NULL)",
    )?;
    let mut insert =
        tx.prepare_cached("INSERT INTO ledger (event_id, stream, version, note) VALUES (?1, ?2, ?3, ?4)")?;
    for row in ledger.pending.drain(..) {
        insert.execute((row.event_id, row.stream, i64::try_from(row.version)?, row.note))?;
    }
    if !ledger.slow_flush.is_zero() {
        std::thread::sleep(ledger.slow_flush);
    }
    Ok(())
}

/// The ledger read model in the SQLite file at `path`.
pub async fn ledger_model(
    path: &std::path::Path,
) -> SqliteReadModel<fn(&Transaction<'_>, &mut Ledger) -> Result<(), HandlerError>> {
    let store = SqliteStore::open(path).unwrap();
    SqliteReadModel::new(store, flush_ledger as fn(&Transaction<'_>, &mut Ledger) -> Result<(), HandlerError>)
        .await
        .unwrap()
}

/// Every row of the ledger, in the order they were written.
pub async fn ledger_rows(path: &std::path::Path) -> Vec<Row> {
    let store = SqliteStore::open(path).unwrap();
    store
        .read(|tx| {
            let exists: bool = tx
                .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'ledger'", [], |row| row.get(0))
                .map_err(|e| es_sqlite::backend_error("ledger", e))?;
            if !exists {
                return Ok(Vec::new());
            }
            let mut statement = tx
                .prepare("SELECT event_id, stream, version, note FROM ledger ORDER BY rowid")
                .map_err(|e| es_sqlite::backend_error("ledger", e))?;
            let rows = statement
                .query_map([], |row| {
                    Ok(Row {
                        event_id: row.get(0)?,
                        stream: row.get(1)?,
                        version: row.get::<_, i64>(2)? as u64,
                        note: row.get(3)?,
                    })
                })
                .map_err(|e| es_sqlite::backend_error("ledger", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| es_sqlite::backend_error("ledger", e))
        })
        .await
        .unwrap()
}

/// Asserts that `rows` hold every event of `store` exactly once, each stream in version order.
pub async fn assert_exactly_once_in_order(store: &SqliteStore, rows: &[Row]) {
    let all = store.read_all(&es::Checkpoint::START, &es::ReadAllFilter::all(), usize::MAX).await.unwrap().events;
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        *seen.entry(&row.event_id).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(repeated.is_empty(), "events applied more than once: {repeated:?}");
    let missing: Vec<_> = all.iter().filter(|e| !seen.contains_key(e.event_id.to_string().as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never reached the read model: {:?}",
        missing.len(),
        all.len(),
        missing.first()
    );
    assert_eq!(rows.len(), all.len());
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for row in rows {
        versions.entry(&row.stream).or_default().push(row.version);
    }
    for (stream, versions) in versions {
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "stream {stream} in order");
    }
}

/// Appends ticks to `streams` counter streams, round robin, one or two events per append,
/// pausing `pause` between rounds, until `stop` is set (after at least one round). Returns the
/// number of events appended.
pub async fn write_ticks(
    store: SqliteStore,
    label: String,
    streams: usize,
    pause: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut written = 0;
    for n in 0u64.. {
        for index in 0..streams {
            let stream = StreamId::new("Counter", format!("{label}-{index}"));
            let events: Vec<NewEvent> = (0..1 + n % 2)
                .map(|k| NewEvent::new(RawEvent::json("Ticked", 1, &serde_json::json!({ "n": n * 10 + k }))))
                .collect();
            written += events.len() as u64;
            store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
        }
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    written
}

/// The test binary run again as a child: the ignored test `name`, with `env` set. Its stdout
/// is read until a line contains `ready`.
pub fn start_child(name: &str, env: &[(&str, String)], ready: &str) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let found = lines.any(|line| line.contains(&ready));
        let _ = sender.send(found);
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(true) => child,
        outcome => {
            let _ = child.kill();
            panic!("child `{name}` never got ready ({outcome:?}, {:?})", child.wait());
        }
    }
}

/// SIGKILL: no destructor, no rollback, no lease release.
pub fn kill(mut child: Child) {
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");
}

/// A pseudo-random number, different on every call.
pub fn random() -> u64 {
    let id = Uuid::now_v7();
    u64::from_le_bytes(id.as_bytes()[8..].try_into().unwrap_or_default())
}

/// `Subjects` for `settings` (what the relay publishes on).
pub fn subjects(settings: &StreamSettings) -> Subjects {
    settings.subjects.clone()
}

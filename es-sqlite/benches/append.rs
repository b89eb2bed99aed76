//! `SqliteStore` beside plain rusqlite doing the same work on the same schema: the engine's
//! own limit for these settings, and what the store adds to it.
//!
//! Both sides use a file in a temporary directory with the same schema and indexes (the raw
//! database is created by `SqliteStore::open`), WAL and `synchronous = FULL`, ids in insertion
//! order (UUID v7). An append is one IMMEDIATE transaction that checks the stream's version,
//! serializes the metadata and inserts the rows; the store also looks the batch's ids up (for
//! idempotent retries) and checks the payloads read back. A read builds the same records
//! (`StoredEvent`) on both sides; the store also checks every value and the versions.
//! Building the events to append is outside the timing.
//!
//! Workloads: appends of 100 events, appends of one event per commit (each a durable commit),
//! a read of a 10,000-event stream, and a read of 100,000 events through `read_all` in pages
//! of 1,000 (whole batches, and streams interleaved event by event: the worst case of the
//! store's version predecessor check). The summary also runs the raw read with the check done
//! as a LEFT JOIN on the stream index in SQL, the design the store does not use, to show what
//! that would cost.
//!
//! The store is driven inside a Tokio runtime (its calls then hop to the blocking pool, as in
//! a service) and, for appends, also without one (the calls run inline).
//!
//! `cargo bench -p es-sqlite --bench append` prints criterion's figures and then runs every
//! workload again with the store and raw rusqlite interleaved run by run (so that both meet the
//! same load from anything else on the machine), printing events per second from the median
//! run and the ratio store / raw. `ES_BENCH_SUMMARY_ONLY=1` prints that summary only, and
//! `ES_BENCH_SUMMARY=append` (or `read`) runs only those workloads of it.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion, Throughput};
use es_core::store::AppendOutcome;
use es_core::{
    Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent, Position, RawEvent, ReadAllFilter, StoredEvent,
    StreamId, Version,
};
use es_sqlite::SqliteStore;
use es_sqlite::rusqlite::{self, Connection, Row, TransactionBehavior, params};
use uuid::Uuid;

const COLUMNS: &str = "position, stream_type, stream_id, stream_version, event_id, event_type, schema_version, \
     payload, metadata, recorded_at";
const SELECT_STREAM_VERSION: &str =
    "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_type = ?1 AND stream_id = ?2";
const INSERT_EVENT: &str = "INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, \
     schema_version, payload, metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| {
            NewEvent::new(RawEvent::new("MoneyDeposited", 2, format!(r#"{{"amount":{n},"reference":"salary"}}"#)))
                .with_metadata(Metadata::new().with_correlation_id(Uuid::now_v7()).with_header("user", "ann"))
        })
        .collect()
}

/// A connection to a new database at `path` with the store's schema, set up as the store sets
/// up its writer.
fn raw_connection(path: &Path) -> Connection {
    drop(SqliteStore::open(path).unwrap());
    let connection = Connection::open(path).unwrap();
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    let _: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).unwrap();
    connection.pragma_update(None, "synchronous", "FULL").unwrap();
    connection
}

/// One append with plain rusqlite: version check, inserts, commit.
fn raw_append(connection: &mut Connection, stream: &StreamId, expected: i64, batch: &[NewEvent]) -> i64 {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
    let actual: i64 = transaction
        .prepare_cached(SELECT_STREAM_VERSION)
        .unwrap()
        .query_row(params![stream.stream_type(), stream.id()], |row| row.get(0))
        .unwrap();
    assert_eq!(actual, expected);
    let micros = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros() as i64;
    let mut last = 0;
    {
        let mut insert = transaction.prepare_cached(INSERT_EVENT).unwrap();
        for (offset, event) in batch.iter().enumerate() {
            let metadata = serde_json::to_string(&event.metadata).unwrap();
            insert
                .execute(params![
                    stream.stream_type(),
                    stream.id(),
                    actual + offset as i64 + 1,
                    event.event_id.as_bytes(),
                    event.event.event_type,
                    event.event.schema_version,
                    event.event.payload,
                    metadata,
                    micros,
                ])
                .unwrap();
            last = transaction.last_insert_rowid();
        }
    }
    transaction.commit().unwrap();
    last
}

/// A row as the store's columns hold it, into a record, trusting every value.
fn raw_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let id: [u8; 16] = row.get(4)?;
    let metadata: String = row.get(8)?;
    let micros: i64 = row.get(9)?;
    Ok(StoredEvent {
        position: Position(row.get::<_, i64>(0)? as u64),
        stream: StreamId::new(row.get::<_, String>(1)?, row.get::<_, String>(2)?),
        stream_version: Version(row.get::<_, i64>(3)? as u64),
        event_id: Uuid::from_bytes(id),
        metadata: serde_json::from_str(&metadata).unwrap(),
        recorded_at: SystemTime::UNIX_EPOCH + Duration::from_micros(micros as u64),
        event: RawEvent { event_type: row.get(5)?, schema_version: row.get(6)?, payload: row.get(7)? },
    })
}

fn raw_read_stream(connection: &Connection, stream: &StreamId, limit: i64) -> Vec<StoredEvent> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE stream_type = ?1 AND stream_id = ?2 AND stream_version >= ?3 \
         ORDER BY stream_version LIMIT ?4"
    );
    let mut statement = connection.prepare_cached(&sql).unwrap();
    let rows = statement.query_map(params![stream.stream_type(), stream.id(), 1, limit], raw_event).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// Every event in pages of `page` through the store's `read_all` query, with or without the
/// predecessor check; returns how many were read.
fn raw_read_all(connection: &Connection, page: i64, predecessor_check: bool) -> usize {
    let columns = COLUMNS.split(", ").map(|column| format!("e.{column}")).collect::<Vec<_>>().join(", ");
    let sql = if predecessor_check {
        format!(
            "SELECT {columns}, e.stream_version > 1 AND p.position IS NULL FROM events e \
             LEFT JOIN events p ON p.stream_type = e.stream_type AND p.stream_id = e.stream_id \
             AND p.stream_version = e.stream_version - 1 \
             WHERE e.position > ?1 AND e.position <= ?2 ORDER BY e.position LIMIT ?3"
        )
    } else {
        format!(
            "SELECT {columns} FROM events e WHERE e.position > ?1 AND e.position <= ?2 ORDER BY e.position LIMIT ?3"
        )
    };
    let (mut after, mut total) = (0i64, 0usize);
    loop {
        let transaction = connection.unchecked_transaction().unwrap();
        let head: i64 = transaction.query_row("SELECT MAX(position) FROM events", [], |row| row.get(0)).unwrap();
        let mut statement = transaction.prepare_cached(&sql).unwrap();
        let events: Vec<StoredEvent> = statement
            .query_map(params![after, head, page], |row| {
                if predecessor_check {
                    assert!(!row.get::<_, bool>(10)?);
                }
                raw_event(row)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let Some(last) = events.last() else { return total };
        after = last.position.0 as i64;
        total += black_box(events).len();
    }
}

/// Polls a future once: the store's futures complete on their first poll outside a runtime.
fn inline<F: Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the store's future did not complete inline"),
    }
}

fn appends(c: &mut Criterion, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let stream = StreamId::new("BankAccount", "bench");

    for (name, size) in [("append_batch_100", 100usize), ("append_single", 1)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(size as u64));

        for (function, in_runtime) in [("es_tokio", true), ("es_inline", false)] {
            let store = SqliteStore::open(dir.join(format!("{name}-{function}.db"))).unwrap();
            let mut version = 0u64;
            group.bench_function(function, |b| {
                b.iter_batched(
                    || events(size),
                    |batch| {
                        let append = store.append(&stream, ExpectedVersion::Exact(Version(version)), batch);
                        let appended = if in_runtime { runtime.block_on(append) } else { inline(append) }.unwrap();
                        assert_eq!(appended.outcome, AppendOutcome::Written);
                        version += appended.events.len() as u64;
                        black_box(appended)
                    },
                    BatchSize::SmallInput,
                );
            });
        }

        let mut connection = raw_connection(&dir.join(format!("{name}-raw.db")));
        let mut raw_version = 0i64;
        group.bench_function("rusqlite", |b| {
            b.iter_batched(
                || events(size),
                |batch| {
                    let last = raw_append(&mut connection, &stream, raw_version, &batch);
                    raw_version += batch.len() as i64;
                    black_box(last)
                },
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

/// A store with `streams` streams of `per_stream` events, appended in batches of 1,000
/// spread over the streams, and a raw connection to the same file.
fn filled(dir: &Path, name: &str, streams: usize, per_stream: usize) -> (SqliteStore, Connection) {
    let path = dir.join(format!("{name}.db"));
    let store = SqliteStore::open(&path).unwrap();
    let chunk = per_stream.min(1_000);
    for round in 0..per_stream / chunk {
        for stream in 0..streams {
            let id = StreamId::new("BankAccount", stream.to_string());
            let expected = ExpectedVersion::at(Version((round * chunk) as u64));
            inline(store.append(&id, expected, events(chunk))).unwrap();
        }
    }
    let connection = Connection::open(&path).unwrap();
    (store, connection)
}

fn reads(c: &mut Criterion, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();

    let (store, connection) = filled(dir, "read_stream", 1, 10_000);
    let stream = StreamId::new("BankAccount", "0");
    let mut group = c.benchmark_group("read_stream_10k");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("es_tokio", |b| {
        b.iter(|| {
            let events = runtime.block_on(store.read_stream(&stream, Version(0), 10_000)).unwrap();
            assert_eq!(events.len(), 10_000);
            black_box(events)
        });
    });
    group.bench_function("rusqlite", |b| {
        b.iter(|| {
            let events = raw_read_stream(&connection, &stream, 10_000);
            assert_eq!(events.len(), 10_000);
            black_box(events)
        });
    });
    group.finish();

    let (store, connection) = filled(dir, "read_all", 100, 1_000);
    let mut group = c.benchmark_group("read_all_100k");
    group.throughput(Throughput::Elements(100_000));
    group.sample_size(10);
    group.bench_function("es_tokio", |b| {
        b.iter(|| assert_eq!(es_read_all(&runtime, &store), 100_000));
    });
    for (function, check) in [("rusqlite", false), ("rusqlite_predecessor_check", true)] {
        group.bench_function(function, |b| b.iter(|| assert_eq!(raw_read_all(&connection, 1_000, check), 100_000)));
    }
    group.finish();
}

/// The median of `times`.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Runs `es` and `raw` alternately `rounds` times each (so that both meet the same load from
/// anything else on the machine) and prints the events per second of each, from the median
/// time of one run, and their ratio.
fn paired(
    workload: &str,
    events: usize,
    rounds: usize,
    mut es: impl FnMut() -> Duration,
    mut raw: impl FnMut() -> Duration,
) {
    let (mut es_times, mut raw_times) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds {
        if round % 2 == 0 {
            es_times.push(es());
            raw_times.push(raw());
        } else {
            raw_times.push(raw());
            es_times.push(es());
        }
    }
    let (es, raw) = (median(es_times), median(raw_times));
    let per_second = |time: Duration| events as f64 / time.as_secs_f64();
    println!(
        "{workload:<34} {:>12.0} {:>12.0} {:>8.2}x",
        per_second(es),
        per_second(raw),
        raw.as_secs_f64() / es.as_secs_f64()
    );
}

/// The workloads again, store and raw interleaved, with the ratio store / raw.
fn summary(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let stream = StreamId::new("BankAccount", "paired");
    println!("\n{:<34} {:>12} {:>12} {:>9}", "workload (median of interleaved runs)", "es/s", "rusqlite/s", "es/raw");
    let appends = if std::env::var("ES_BENCH_SUMMARY").is_ok_and(|only| only == "read") {
        &[][..]
    } else {
        &[("append 100 per commit", 100usize, 200usize), ("append 1 per commit", 1, 1_000)][..]
    };
    for &(name, size, rounds) in appends {
        // The last one in CPU time of this thread (the store runs inline there): what each
        // side spends besides waiting for the disk.
        for (label, in_runtime, cpu) in [("tokio", true, false), ("inline", false, false), ("inline, CPU", false, true)]
        {
            if cpu && thread_cpu_time().is_none() {
                continue;
            }
            let clock = move || if cpu { thread_cpu_time().unwrap_or_default() } else { wall_time() };
            let file = label.replace(", ", "-");
            let store = SqliteStore::open(dir.join(format!("paired-{size}-{file}.db"))).unwrap();
            let mut connection = raw_connection(&dir.join(format!("paired-{size}-{file}-raw.db")));
            let (mut version, mut raw_version) = (0u64, 0i64);
            paired(
                &format!("{name}, {label}"),
                size,
                rounds,
                || {
                    let batch = events(size);
                    let started = clock();
                    let append = store.append(&stream, ExpectedVersion::Exact(Version(version)), batch);
                    let appended = if in_runtime { runtime.block_on(append) } else { inline(append) }.unwrap();
                    let elapsed = clock().saturating_sub(started);
                    version += appended.events.len() as u64;
                    elapsed
                },
                || {
                    let batch = events(size);
                    let started = clock();
                    black_box(raw_append(&mut connection, &stream, raw_version, &batch));
                    let elapsed = clock().saturating_sub(started);
                    raw_version += batch.len() as i64;
                    elapsed
                },
            );
        }
    }

    // `ES_BENCH_SUMMARY=append` runs only the appends of the summary, `=read` only the reads.
    let only = std::env::var("ES_BENCH_SUMMARY").unwrap_or_default();
    if only == "append" {
        return;
    }
    let (store, connection) = filled(dir, "paired-read-stream", 1, 10_000);
    let stream = StreamId::new("BankAccount", "0");
    paired(
        "read a 10,000-event stream, tokio",
        10_000,
        60,
        || {
            let started = Instant::now();
            black_box(runtime.block_on(store.read_stream(&stream, Version(0), 10_000)).unwrap());
            started.elapsed()
        },
        || {
            let started = Instant::now();
            black_box(raw_read_stream(&connection, &stream, 10_000));
            started.elapsed()
        },
    );

    // Whole batches (100 streams of 1,000 events: a page holds one stream) and interleaved
    // streams (1,000 streams, one event each in turn: every event of a page is of another
    // stream), the worst case of the store's version predecessor check (one index lookup per
    // event whose predecessor is not the event of its stream before it in the page).
    let batched = filled(dir, "paired-read-all", 100, 1_000);
    let interleaved = interleaved(dir, "paired-read-all-interleaved", 1_000, 100);
    for (layout, (store, connection)) in [("batches", batched), ("interleaved", interleaved)] {
        paired(
            &format!("read_all 100,000, {layout}, tokio"),
            100_000,
            20,
            || {
                let started = Instant::now();
                black_box(es_read_all(&runtime, &store));
                started.elapsed()
            },
            || {
                let started = Instant::now();
                black_box(raw_read_all(&connection, 1_000, false));
                started.elapsed()
            },
        );
        // In CPU time of this thread (the store runs inline here), which the machine's other
        // load does not inflate.
        if thread_cpu_time().is_none() {
            continue;
        }
        let cpu = |work: &mut dyn FnMut()| {
            let started = thread_cpu_time().unwrap_or_default();
            work();
            thread_cpu_time().map_or(Duration::ZERO, |now| now.saturating_sub(started))
        };
        paired(
            &format!("read_all 100,000, {layout}, CPU"),
            100_000,
            20,
            || cpu(&mut || assert_eq!(es_read_all_inline(&store), 100_000)),
            || cpu(&mut || assert_eq!(raw_read_all(&connection, 1_000, false), 100_000)),
        );
        paired(
            &format!("  raw with a JOIN check, {layout}, CPU"),
            100_000,
            20,
            || cpu(&mut || assert_eq!(raw_read_all(&connection, 1_000, true), 100_000)),
            || cpu(&mut || assert_eq!(raw_read_all(&connection, 1_000, false), 100_000)),
        );
    }
}

/// A store with `streams` streams of `per_stream` events, written straight in one
/// transaction, the streams taking turns event by event.
fn interleaved(dir: &Path, name: &str, streams: usize, per_stream: usize) -> (SqliteStore, Connection) {
    let path = dir.join(format!("{name}.db"));
    let store = SqliteStore::open(&path).unwrap();
    let mut connection = Connection::open(&path).unwrap();
    let transaction = connection.transaction().unwrap();
    {
        let mut insert = transaction.prepare(INSERT_EVENT).unwrap();
        for version in 1..=per_stream {
            for (stream, event) in events(streams).into_iter().enumerate() {
                let metadata = serde_json::to_string(&event.metadata).unwrap();
                insert
                    .execute(params![
                        "BankAccount",
                        stream.to_string(),
                        version as i64,
                        event.event_id.as_bytes(),
                        event.event.event_type,
                        event.event.schema_version,
                        event.event.payload,
                        metadata,
                        1_700_000_000_000_000i64,
                    ])
                    .unwrap();
            }
        }
    }
    transaction.commit().unwrap();
    (store, connection)
}

/// Every event through `read_all` in pages of 1,000, outside any runtime (so on this thread).
fn es_read_all_inline(store: &SqliteStore) -> usize {
    let (mut from, mut total) = (Checkpoint::START, 0);
    loop {
        let page = inline(store.read_all(&from, &ReadAllFilter::all(), 1_000)).unwrap();
        if page.events.is_empty() {
            return total;
        }
        total += black_box(page.events).len();
        from = page.next;
    }
}

/// The time since the first call, as a `Duration` (to subtract like CPU times).
fn wall_time() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The CPU time this thread has run, from Linux's `/proc/thread-self/schedstat` (nanoseconds);
/// `None` elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(text.split_whitespace().next()?.parse().ok()?))
}

/// Every event through `read_all` in pages of 1,000.
fn es_read_all(runtime: &tokio::runtime::Runtime, store: &SqliteStore) -> usize {
    let (mut from, mut total) = (Checkpoint::START, 0);
    loop {
        let page = runtime.block_on(store.read_all(&from, &ReadAllFilter::all(), 1_000)).unwrap();
        if page.events.is_empty() {
            return total;
        }
        total += black_box(page.events).len();
        from = page.next;
    }
}

fn main() {
    let data = tempfile::tempdir().unwrap();
    // `ES_BENCH_SUMMARY_ONLY=1` skips criterion's runs and prints the interleaved summary only.
    if std::env::var_os("ES_BENCH_SUMMARY_ONLY").is_none() {
        let mut criterion = Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5))
            .configure_from_args();
        appends(&mut criterion, data.path());
        reads(&mut criterion, data.path());
        criterion.final_summary();
    }
    summary(data.path());
}

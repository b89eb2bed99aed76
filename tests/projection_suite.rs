//! The projection suite (`es::projection_suite!`) on every store, each with its read model
//! where a user keeps it: in memory for the in-memory store, in the store's own database for
//! SQLite (`SqliteCheckpoints`) and PostgreSQL (`PostgresCheckpoints`), committed with the
//! checkpoint. And, for SQLite and PostgreSQL, a child process killed between its handlers
//! and its checkpoint loses and repeats nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use es::projection::{ProjectionOptions, ProjectionRunner};
use es::testing::projection_suite::{ReadModelFixture, Row, Ticks, counter, increment};
use es::{EventStore, ExpectedVersion, HandlerError};

#[cfg(feature = "postgres")]
mod common;

mod memory {
    es::projection_suite!(|_test: &str| async {
        es::testing::projection_suite::InMemoryFixture::new(es::InMemoryStore::new())
    });
}

/// Set in a crash child: its flush stalls (rows written, not committed) at this flush.
static STALL_AT_FLUSH: AtomicU32 = AtomicU32::new(0);
static FLUSHES: AtomicU32 = AtomicU32::new(0);
static STALLING: AtomicBool = AtomicBool::new(false);

const STALLED: &str = "crash-child: stalled";

/// In a crash child: says so, and never returns (the parent kills the process).
fn stall() -> ! {
    println!("{STALLED}");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Counts a flush, and stalls at the one a crash child was told to stall at.
fn maybe_stall_in_flush() {
    let flush = FLUSHES.fetch_add(1, Ordering::SeqCst) + 1;
    if STALLING.load(Ordering::SeqCst) && flush == STALL_AT_FLUSH.load(Ordering::SeqCst) {
        stall();
    }
}

mod sqlite {
    use super::*;

    /// The read model in the store's file, written by `SqliteCheckpoints` with the checkpoint.
    pub struct SqliteFixture {
        pub store: es::SqliteStore,
        pub path: std::path::PathBuf,
        _dir: Option<tempfile::TempDir>,
    }

    const CREATE: &str = "CREATE TABLE IF NOT EXISTS suite_rows (version INTEGER NOT NULL, partition INTEGER NOT NULL,
        handled INTEGER NOT NULL, stream TEXT NOT NULL, stream_version INTEGER NOT NULL, position INTEGER NOT NULL)";

    impl SqliteFixture {
        pub async fn new() -> Self {
            let dir = tempfile::tempdir().expect("cannot create a temporary directory");
            let mut fixture = Self::open(dir.path().join("suite.db")).await;
            fixture._dir = Some(dir);
            fixture
        }

        /// The store in `path`, with the read model's table.
        pub async fn open(path: std::path::PathBuf) -> Self {
            let store = es::SqliteStore::open(&path).expect("cannot open the SQLite store");
            store
                .transaction(|tx| {
                    tx.execute_batch(CREATE)?;
                    Ok::<_, HandlerError>(())
                })
                .await
                .expect("cannot create the read model's table");
            Self { store, path, _dir: None }
        }
    }

    fn flush<const V: u32>(
        tx: &es_sqlite::rusqlite::Transaction<'_>,
        ticks: &mut Ticks<V>,
    ) -> Result<(), HandlerError> {
        let mut insert = tx.prepare_cached(
            "INSERT INTO suite_rows (version, partition, handled, stream, stream_version, position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for row in ticks.take_rows() {
            insert.execute((
                row.version,
                row.partition,
                i64::try_from(row.handled)?,
                row.stream,
                i64::try_from(row.stream_version)?,
                i64::try_from(row.position)?,
            ))?;
        }
        maybe_stall_in_flush();
        Ok(())
    }

    impl ReadModelFixture for SqliteFixture {
        type Store = es::SqliteStore;

        fn store(&self) -> es::SqliteStore {
            self.store.clone()
        }

        async fn checkpoints<const V: u32>(&self) -> impl es::projection::CommitBatch<Ticks<V>> {
            es::SqliteCheckpoints::new(self.store.clone(), flush::<V>).await.expect("cannot create the checkpoints")
        }

        async fn rows(&self, version: u32) -> Vec<Row> {
            self.store
                .read(move |tx| {
                    let mut select = tx.prepare(
                        "SELECT version, partition, handled, stream, stream_version, position FROM suite_rows
                         WHERE version = ?1",
                    )?;
                    // Numbers as SQLite stores them; the suite's rows are never negative.
                    let number = |row: &es_sqlite::rusqlite::Row<'_>, index| row.get::<_, i64>(index).map(|n| n as u64);
                    let rows = select.query_map([version], |row| {
                        Ok(Row {
                            version: row.get(0)?,
                            partition: row.get(1)?,
                            handled: number(row, 2)?,
                            stream: row.get(3)?,
                            stream_version: number(row, 4)?,
                            position: number(row, 5)?,
                        })
                    })?;
                    Ok::<_, HandlerError>(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await
                .expect("cannot read the read model")
        }
    }

    es::projection_suite!(|_test: &str| SqliteFixture::new());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_child_loses_and_repeats_nothing() {
        let fixture = SqliteFixture::new().await;
        killed_children_lose_and_repeat_nothing(&fixture, &format!("sqlite:{}", fixture.path.display())).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use es_postgres::tokio_postgres::Transaction;
    use es_postgres::tokio_postgres::types::Type;

    use super::*;
    use crate::common;

    /// The read model in the store's schema, written by `PostgresCheckpoints` with the
    /// checkpoint.
    pub struct PostgresFixture {
        pub store: es::PostgresStore,
        table: String,
    }

    impl PostgresFixture {
        pub async fn new(test: &str) -> Self {
            Self::open(&common::facade_schema(test)).await
        }

        /// The store in `schema`, with the read model's table.
        pub async fn open(schema: &str) -> Self {
            let store = common::postgres_store(es::PostgresOptions::new().schema(schema)).await;
            let table = format!("\"{schema}\".suite_rows");
            let client = store.pool().get().await.expect("a connection");
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (version bigint NOT NULL, partition bigint NOT NULL,
                     handled bigint NOT NULL, stream text NOT NULL, stream_version bigint NOT NULL,
                     position bigint NOT NULL)"
                ))
                .await
                .expect("cannot create the read model's table");
            drop(client);
            Self { store, table }
        }
    }

    /// Writes a batch's rows in one statement.
    pub struct Flush {
        insert: String,
    }

    impl<const V: u32> es::PostgresFlush<Ticks<V>> for Flush {
        type Batch = Vec<Row>;

        fn take(&self, ticks: &mut Ticks<V>) -> Vec<Row> {
            ticks.take_rows()
        }

        async fn write(
            &self,
            tx: &Transaction<'_>,
            rows: Vec<Row>,
            _: &es::projection::SavedCheckpoint,
        ) -> Result<(), HandlerError> {
            let column =
                |f: fn(&Row) -> u64| rows.iter().map(|row| i64::try_from(f(row))).collect::<Result<Vec<i64>, _>>();
            let versions = column(|row| u64::from(row.version))?;
            let partitions = column(|row| u64::from(row.partition))?;
            let handled = column(|row| row.handled)?;
            let streams: Vec<&str> = rows.iter().map(|row| row.stream.as_str()).collect();
            let stream_versions = column(|row| row.stream_version)?;
            let positions = column(|row| row.position)?;
            tx.execute_typed(
                &self.insert,
                &[
                    (&versions, Type::INT8_ARRAY),
                    (&partitions, Type::INT8_ARRAY),
                    (&handled, Type::INT8_ARRAY),
                    (&streams, Type::TEXT_ARRAY),
                    (&stream_versions, Type::INT8_ARRAY),
                    (&positions, Type::INT8_ARRAY),
                ],
            )
            .await?;
            maybe_stall_in_flush();
            Ok(())
        }
    }

    impl ReadModelFixture for PostgresFixture {
        type Store = es::PostgresStore;

        fn store(&self) -> es::PostgresStore {
            self.store.clone()
        }

        async fn checkpoints<const V: u32>(&self) -> impl es::projection::CommitBatch<Ticks<V>> {
            let insert = format!(
                "INSERT INTO {} (version, partition, handled, stream, stream_version, position)
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::int8[])",
                self.table
            );
            es::PostgresCheckpoints::new(self.store.clone(), Flush { insert })
                .await
                .expect("cannot create the checkpoints")
        }

        async fn rows(&self, version: u32) -> Vec<Row> {
            let client = self.store.pool().get().await.expect("a connection");
            let select = format!(
                "SELECT version, partition, handled, stream, stream_version, position FROM {} WHERE version = $1",
                self.table
            );
            let rows = client.query_typed(&select, &[(&i64::from(version), Type::INT8)]).await.expect("read model");
            let number = |row: &es_postgres::tokio_postgres::Row, index: usize| {
                u64::try_from(row.get::<_, i64>(index)).expect("a stored number is not negative")
            };
            rows.iter()
                .map(|row| Row {
                    version: u32::try_from(number(row, 0)).expect("a version"),
                    partition: u32::try_from(number(row, 1)).expect("a partition"),
                    handled: number(row, 2),
                    stream: row.get(3),
                    stream_version: number(row, 4),
                    position: number(row, 5),
                })
                .collect()
        }

        async fn finish(self) {
            let client = self.store.pool().get().await.expect("a connection");
            let schema = self.store.schema().to_owned();
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .expect("drop the schema");
        }
    }

    es::projection_suite!(|test: &str| {
        let test = test.to_owned();
        async move { PostgresFixture::new(&test).await }
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_child_loses_and_repeats_nothing() {
        let fixture = PostgresFixture::new("crash").await;
        let schema = fixture.store.schema().to_owned();
        killed_children_lose_and_repeat_nothing(&fixture, &format!("postgres:{schema}")).await;
        fixture.finish().await;
    }
}

const CHILD_ENV: &str = "ES_PROJECTION_CRASH_CHILD";
const STALL_ENV: &str = "ES_PROJECTION_CRASH_STALL";
const STREAMS: u64 = 20;
const PER_STREAM: u64 = 100;
const BATCH: usize = 50;

fn options() -> ProjectionOptions {
    ProjectionOptions { batch_size: BATCH, poll_interval: Duration::from_millis(20), ..ProjectionOptions::default() }
}

/// Runs `Ticks` over the fixture's store until it stalls (and is killed there).
async fn child_run<F: ReadModelFixture>(fixture: &F, stall_at: &str) {
    let mut ticks = Ticks::<1>::default();
    match stall_at.split_once(':') {
        // In a handler, with the batch's earlier events handled and kept, nothing committed.
        Some(("handler", at)) => {
            let at: u64 = at.parse().expect("a handled count");
            let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
            ticks = ticks.on_handled(Arc::new(move |_| {
                if handled.fetch_add(1, Ordering::SeqCst) + 1 == at {
                    stall();
                }
            }));
        }
        // In the flush, with the batch's rows written in its transaction, not committed.
        Some(("flush", at)) => {
            STALL_AT_FLUSH.store(at.parse().expect("a flush count"), Ordering::SeqCst);
            STALLING.store(true, Ordering::SeqCst);
        }
        _ => panic!("child: unknown stall `{stall_at}`"),
    }
    let runner =
        ProjectionRunner::new(ticks, fixture.store(), fixture.checkpoints::<1>().await).with_options(options());
    let error = runner.run().await;
    panic!("child: the runner returned without stalling: {error:?}");
}

#[test]
#[ignore = "the child process of `a_killed_child_loses_and_repeats_nothing`; does nothing on its own"]
fn projection_crash_child() {
    let (Ok(store), Ok(stall)) = (std::env::var(CHILD_ENV), std::env::var(STALL_ENV)) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        match store.split_once(':') {
            Some(("sqlite", path)) => child_run(&sqlite::SqliteFixture::open(path.into()).await, &stall).await,
            #[cfg(feature = "postgres")]
            Some(("postgres", schema)) => child_run(&postgres::PostgresFixture::open(schema).await, &stall).await,
            _ => panic!("child: unknown store `{store}`"),
        }
    });
}

/// Starts a child on the store `child_store` names, waits until it stalls where `stall` says,
/// and kills it there with SIGKILL.
fn kill_child_at(child_store: &str, stall: &str) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "projection_crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, child_store)
        .env(STALL_ENV, stall)
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the child");
    let stdout = child.stdout.take().expect("the child's stdout");
    let (mut seen, mut stalled) = (Vec::new(), false);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        // The harness writes `test projection_crash_child ... ` before it, on the same line.
        if line.ends_with(STALLED) {
            stalled = true;
            break;
        }
        seen.push(line);
    }
    child.kill().expect("cannot kill the child");
    let status = child.wait().expect("the child did not end");
    assert!(stalled, "the child ended before it stalled at {stall}: {status}; it wrote {seen:#?}");
}

/// 2,000 events; a child killed in a handler of its third batch, then one killed inside the
/// transaction of its second flush (rows written, checkpoint not), then a run to the head in
/// this process: every event committed exactly once, each stream in order.
async fn killed_children_lose_and_repeat_nothing<F: ReadModelFixture>(fixture: &F, child_store: &str) {
    let store = fixture.store();
    for stream in 0..STREAMS {
        for half in 0..2 {
            let batch = (0..PER_STREAM / 2).map(|n| increment(half * 100 + n)).collect();
            store.append(&counter(&stream.to_string()), ExpectedVersion::Any, batch).await.expect("append");
        }
    }
    let total = usize::try_from(STREAMS * PER_STREAM).expect("a count");

    // Killed while handling its third batch: two batches committed, the third not at all.
    tokio::task::spawn_blocking({
        let child_store = child_store.to_owned();
        move || kill_child_at(&child_store, &format!("handler:{}", 2 * BATCH + 20))
    })
    .await
    .expect("the first child");
    let rows = fixture.rows(1).await;
    assert_eq!(rows.len(), 2 * BATCH, "the batches committed before the kill, and nothing of the killed one");

    // Resumed, then killed inside its second flush: one more batch, not the one being written.
    tokio::task::spawn_blocking({
        let child_store = child_store.to_owned();
        move || kill_child_at(&child_store, "flush:2")
    })
    .await
    .expect("the second child");
    let rows = fixture.rows(1).await;
    assert_eq!(rows.len(), 3 * BATCH, "the resumed child's first batch, and nothing of the killed flush");

    // Finished here: nothing lost, nothing twice.
    let runner = ProjectionRunner::new(Ticks::<1>::default(), store.clone(), fixture.checkpoints::<1>().await)
        .with_options(options());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(Duration::from_secs(60)).await.expect("the last run reaches the head");
    handle.stop();
    task.await.expect("the runner panicked").expect("the runner failed");
    assert_eq!(handle.read(Ticks::handled), (total - 3 * BATCH) as u64, "it resumed after the committed batches");
    let rows = fixture.rows(1).await;
    let mut positions: Vec<u64> = rows.iter().map(|row| row.position).collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!((rows.len(), positions.len()), (total, total), "every event committed exactly once");
    let mut by_stream: std::collections::BTreeMap<&str, Vec<u64>> = std::collections::BTreeMap::new();
    let mut sorted = rows.clone();
    sorted.sort_by_key(|row| row.position);
    for row in &sorted {
        by_stream.entry(&row.stream).or_default().push(row.stream_version);
    }
    for (stream, versions) in by_stream {
        assert_eq!(versions, (1..=PER_STREAM).collect::<Vec<_>>(), "stream {stream}");
    }
}

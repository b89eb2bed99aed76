//! Projection catch-up on PostgreSQL, in one run over the same 50,000 events:
//!
//! - **bare read_all**: a loop of `read_all` pages, nothing else (the floor);
//! - **hand-written**: that loop, decoding each event and writing its row, with the batch's
//!   rows and the checkpoint committed in one transaction per page (what a user would write by
//!   hand for an exactly-once read model in the same database);
//! - **runner**: `ProjectionRunner` with `PostgresCheckpoints` doing the same writes.
//!
//! `cargo bench -p es-postgres --bench projections` (needs `DATABASE_URL`, the local server by
//! default; prints figures, no criterion). Each run uses a schema of its own and drops it.

use std::time::{Duration, Instant};

use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use es_core::projection::{HandlerError, ProjectionOptions, ProjectionRunner, SavedCheckpoint, decode_event};
use es_core::testing::counter::Incremented;
use es_core::testing::projection_suite::{Row, Ticks, counter, increment};
use es_core::{Checkpoint, EventStore, ExpectedVersion, ReadAllFilter};
use es_postgres::{PostgresCheckpoints, PostgresFlush, PostgresOptions, PostgresStore};

const EVENTS: u64 = 50_000;
const BATCH: usize = 500;
const ROUNDS: usize = 3;

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    }
}

/// Writes a batch's rows into `table` in one statement.
struct Flush {
    insert: String,
}

impl Flush {
    fn new(table: &str) -> Self {
        Self {
            insert: format!(
                "INSERT INTO {table} (stream, stream_version, position) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[])"
            ),
        }
    }

    async fn write_rows(&self, tx: &Transaction<'_>, rows: &[Row]) -> Result<(), HandlerError> {
        let streams: Vec<&str> = rows.iter().map(|row| row.stream.as_str()).collect();
        let versions = rows.iter().map(|row| i64::try_from(row.stream_version)).collect::<Result<Vec<_>, _>>()?;
        let positions = rows.iter().map(|row| i64::try_from(row.position)).collect::<Result<Vec<_>, _>>()?;
        tx.execute_typed(
            &self.insert,
            &[(&streams, Type::TEXT_ARRAY), (&versions, Type::INT8_ARRAY), (&positions, Type::INT8_ARRAY)],
        )
        .await?;
        Ok(())
    }
}

impl PostgresFlush<Ticks<1>> for Flush {
    type Batch = Vec<Row>;

    fn take(&self, ticks: &mut Ticks<1>) -> Vec<Row> {
        ticks.take_rows()
    }

    async fn write(&self, tx: &Transaction<'_>, rows: Vec<Row>, _: &SavedCheckpoint) -> Result<(), HandlerError> {
        self.write_rows(tx, &rows).await
    }
}

async fn bare_read_all(store: &PostgresStore, filter: &ReadAllFilter) -> (u64, Duration) {
    let started = Instant::now();
    let (mut checkpoint, mut seen) = (Checkpoint::START, 0u64);
    loop {
        let page = store.read_all(&checkpoint, filter, BATCH).await.expect("read_all");
        if page.next == checkpoint {
            break;
        }
        seen += page.events.len() as u64;
        checkpoint = page.next;
    }
    (seen, started.elapsed())
}

/// The loop a user would write by hand: read a page, decode, write the rows and the
/// checkpoint in one transaction.
async fn hand_written(store: &PostgresStore, filter: &ReadAllFilter, flush: &Flush) -> (u64, Duration) {
    let save = format!(
        "INSERT INTO \"{}\".hand_checkpoint (name, checkpoint) VALUES ('bench', $1)
         ON CONFLICT (name) DO UPDATE SET checkpoint = excluded.checkpoint",
        store.schema()
    );
    let started = Instant::now();
    let (mut checkpoint, mut seen) = (Checkpoint::START, 0u64);
    let mut client = store.pool().get().await.expect("a connection");
    loop {
        let page = store.read_all(&checkpoint, filter, BATCH).await.expect("read_all");
        if page.next == checkpoint {
            break;
        }
        let rows: Vec<Row> = page
            .events
            .iter()
            .map(|record| {
                let event = decode_event::<Incremented>(record).expect("decodes");
                Row {
                    version: 1,
                    partition: 0,
                    handled: event.event.by,
                    stream: record.stream.id().to_owned(),
                    stream_version: record.stream_version.0,
                    position: record.position.0,
                }
            })
            .collect();
        let tx = client.transaction().await.expect("begin");
        flush.write_rows(&tx, &rows).await.expect("rows");
        tx.execute_typed(&save, &[(&page.next.to_string(), Type::TEXT)]).await.expect("checkpoint");
        tx.commit().await.expect("commit");
        seen += rows.len() as u64;
        checkpoint = page.next;
    }
    (seen, started.elapsed())
}

async fn runner(store: &PostgresStore, table: &str) -> Duration {
    let checkpoints = PostgresCheckpoints::new(store.clone(), Flush::new(table)).await.expect("checkpoints");
    let options = ProjectionOptions { batch_size: BATCH, ..ProjectionOptions::default() };
    let runner = ProjectionRunner::new(Ticks::<1>::default(), store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let head = store.head().await.expect("head");
    let started = Instant::now();
    let task = tokio::spawn(runner.run());
    handle.wait_for(&head, Duration::from_secs(600)).await.expect("catch up");
    let elapsed = started.elapsed();
    handle.stop();
    task.await.expect("runner task").expect("runner");
    elapsed
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let schema = format!("es_bench_projections_{}", &random[..8]);
        let store = PostgresStore::connect_with(&database_url(), PostgresOptions::new().schema(schema.as_str()))
            .await
            .expect("cannot open a PostgreSQL store at DATABASE_URL");
        for chunk in 0..EVENTS / 100 {
            let events = (0..100).map(|n| increment(chunk * 100 + n)).collect();
            store.append(&counter(&(chunk % 100).to_string()), ExpectedVersion::Any, events).await.expect("append");
        }
        let client = store.pool().get().await.expect("a connection");
        let filter = <Ticks<1> as es_core::projection::Projection>::filter();
        let rate = |elapsed: Duration| EVENTS as f64 / elapsed.as_secs_f64();
        println!("catch-up of {EVENTS} events on PostgreSQL, batches of {BATCH}, read model in the same database:");
        for round in 1..=ROUNDS {
            let (hand_table, runner_table) = (format!("\"{schema}\".hand_rows"), format!("\"{schema}\".runner_rows"));
            client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {hand_table}, {runner_table}, \"{schema}\".hand_checkpoint,
                         \"{schema}\".projection_checkpoints;
                     CREATE TABLE {hand_table} (stream text NOT NULL, stream_version bigint NOT NULL, position bigint NOT NULL);
                     CREATE TABLE {runner_table} (stream text NOT NULL, stream_version bigint NOT NULL, position bigint NOT NULL);
                     CREATE TABLE \"{schema}\".hand_checkpoint (name text PRIMARY KEY, checkpoint text NOT NULL);"
                ))
                .await
                .expect("tables");
            let (seen, bare) = bare_read_all(&store, &filter).await;
            assert_eq!(seen, EVENTS);
            let (seen, hand) = hand_written(&store, &filter, &Flush::new(&hand_table)).await;
            assert_eq!(seen, EVENTS);
            let runner = runner(&store, &runner_table).await;
            println!(
                "  round {round}: bare read_all {:.0} ev/s ({bare:.2?}); hand-written loop {:.0} ev/s ({hand:.2?}); \
                 runner + PostgresCheckpoints {:.0} ev/s ({runner:.2?}); runner/bare {:.2}x, runner/hand-written {:.2}x",
                rate(bare),
                rate(hand),
                rate(runner),
                bare.as_secs_f64() / runner.as_secs_f64(),
                hand.as_secs_f64() / runner.as_secs_f64(),
            );
        }
        client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.expect("drop the schema");
    });
}

//! `PostgresCheckpoints` on its own: a rebuild empties the read model through
//! `PostgresFlush::reset` in the transaction of its first checkpoint, and a write that fails
//! leaves neither its rows nor its checkpoint.

mod common;

use std::time::Duration;

use es_core::projection::{HandlerError, ProjectionOptions, ProjectionRunner, Rebuilt, SavedCheckpoint};
use es_core::testing::projection_suite::{Row, Ticks, counter, increment};
use es_core::{EventStore, ExpectedVersion};
use es_postgres::tokio_postgres::Transaction;
use es_postgres::tokio_postgres::types::Type;
use es_postgres::{PostgresCheckpoints, PostgresFlush, PostgresStore};

/// Rows in `table`: one per handled event; `reset` empties it; fails on a row at `fail_at`.
struct Flush {
    table: String,
    fail_at: Option<u64>,
}

impl<const V: u32> PostgresFlush<Ticks<V>> for Flush {
    type Batch = Vec<Row>;

    fn take(&self, ticks: &mut Ticks<V>) -> Vec<Row> {
        ticks.take_rows()
    }

    async fn write(&self, tx: &Transaction<'_>, rows: Vec<Row>, _: &SavedCheckpoint) -> Result<(), HandlerError> {
        for row in rows {
            let position = i64::try_from(row.position)?;
            tx.execute_typed(&format!("INSERT INTO {} (position) VALUES ($1)", self.table), &[(&position, Type::INT8)])
                .await?;
            if self.fail_at == Some(row.position) {
                return Err(format!("row {} refused", row.position).into());
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        tx.batch_execute(&format!("DELETE FROM {}", self.table)).await?;
        Ok(())
    }
}

async fn positions(table: &str) -> Vec<i64> {
    let client = common::raw_client().await;
    let rows = client.query(&format!("SELECT position FROM {table} ORDER BY position"), &[]).await.expect("select");
    rows.iter().map(|row| row.get(0)).collect()
}

async fn run<const V: u32>(store: &PostgresStore, flush: Flush) -> Result<Option<Rebuilt>, String> {
    let checkpoints = PostgresCheckpoints::new(store.clone(), flush).await.expect("checkpoints");
    let options = ProjectionOptions { batch_size: 4, ..ProjectionOptions::default() };
    let runner = ProjectionRunner::new(Ticks::<V>::default(), store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    let reached = handle.wait_for_head(Duration::from_secs(20)).await;
    handle.stop();
    let outcome = task.await.expect("the runner panicked");
    reached.map_err(|error| error.to_string())?;
    outcome.map_err(|error| error.to_string())?;
    Ok(handle.rebuilt())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_empties_the_read_model_and_a_failed_write_leaves_nothing() {
    let store = common::store("pg_checkpoints").await;
    let table = format!("\"{}\".positions", store.schema());
    common::raw_client()
        .await
        .batch_execute(&format!("CREATE TABLE {table} (position bigint NOT NULL)"))
        .await
        .unwrap();
    let batch = (1..=10).map(increment).collect();
    store.append(&counter("a"), ExpectedVersion::NoStream, batch).await.expect("append");
    let all: Vec<i64> = (1..=10).collect();

    // Batches of 4: the write fails on position 6, in the second batch: only the first stays.
    let failing = Flush { table: table.clone(), fail_at: Some(6) };
    let error = run::<1>(&store, failing).await.expect_err("the failed write stops the runner");
    assert!(error.contains("suite_ticks"), "{error}");
    assert_eq!(positions(&table).await, [1, 2, 3, 4]);

    // Resumed after the first batch: nothing twice.
    assert_eq!(run::<1>(&store, Flush { table: table.clone(), fail_at: None }).await, Ok(None));
    assert_eq!(positions(&table).await, all);

    // A bumped version rebuilds: emptied in the reset, then every event once again.
    let rebuilt = run::<2>(&store, Flush { table: table.clone(), fail_at: None }).await.expect("rebuild");
    assert!(matches!(rebuilt, Some(Rebuilt::IdentityChanged { .. })), "{rebuilt:?}");
    assert_eq!(positions(&table).await, all);
    common::drop_schema(&store).await;
}

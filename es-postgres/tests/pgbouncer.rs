//! The whole store conformance suite through PgBouncer in transaction mode
//! (`ES_PGBOUNCER_URL`, which `.ci/run` sets after starting one in front of `DATABASE_URL`'s
//! database), each test in a schema of its own.
//!
//! In transaction mode every transaction may run on another server connection, so a store
//! that kept named prepared statements or any session state would fail here. A set URL that
//! cannot be reached fails every test. Without `ES_PGBOUNCER_URL` (a machine with PostgreSQL
//! but no PgBouncer) the suite runs against `DATABASE_URL` directly, as `conformance.rs` does,
//! and [`the_url_is_pgbouncer_in_transaction_mode`] says so.

mod common;

use es_postgres::PostgresOptions;

/// PgBouncer's URL, when one is set up.
fn pgbouncer_url() -> Option<String> {
    std::env::var("ES_PGBOUNCER_URL").ok().filter(|url| !url.is_empty())
}

es_core::conformance_suite!(|test: &str| {
    let test = test.to_owned();
    async move {
        match pgbouncer_url() {
            Some(url) => common::store_at(&url, &test, PostgresOptions::new()).await,
            None => common::store(&test).await,
        }
    }
});

/// The URL leads to PgBouncer (its admin console answers on the same address) and its pool
/// mode is `transaction`, so that the suite above tests what it says it tests.
#[tokio::test]
async fn the_url_is_pgbouncer_in_transaction_mode() {
    let Some(url) = pgbouncer_url() else {
        eprintln!("ES_PGBOUNCER_URL is not set: the suite ran against DATABASE_URL directly (.ci/run sets it)");
        return;
    };
    let mut config: tokio_postgres::Config = url.parse().expect("ES_PGBOUNCER_URL is not a PostgreSQL URL");
    config.dbname("pgbouncer");
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PgBouncer's admin console at ES_PGBOUNCER_URL: {error}"));
    tokio::spawn(connection);
    let messages = client.simple_query("SHOW CONFIG").await.expect("SHOW CONFIG on PgBouncer's admin console");
    let pool_mode = messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("pool_mode") => {
            row.get(1).map(str::to_owned)
        }
        _ => None,
    });
    assert_eq!(pool_mode.as_deref(), Some("transaction"), "PgBouncer's pool_mode");
}

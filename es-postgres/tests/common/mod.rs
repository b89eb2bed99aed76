//! What every PostgreSQL test shares: the server (`DATABASE_URL`, the local one by default),
//! a schema of its own per test, and dropping it afterwards.
//!
//! A test never skips when the server is down: connecting fails, and so does the test.

#![allow(dead_code)]

use es_postgres::{PostgresOptions, PostgresStore};

/// The server the tests run against.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    }
}

/// A schema name no other test or run uses: `es_test_<test>_<time>_<random>`, at most 63
/// bytes. The time (seconds since the Unix epoch, in hex) lets [`sweep_stale_schemas`] find
/// schemas that runs which stopped early (or suites that cannot drop theirs) left behind.
pub fn unique_schema(test: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let test: String = test.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(30).collect();
    format!("es_test_{}_{:x}_{}", test.to_ascii_lowercase(), now_secs(), &random[..8])
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Drops test schemas (`es_test_…`, `es_facade_…`) made more than an hour ago. Best effort:
/// another run may be dropping the same ones.
pub async fn sweep_stale_schemas(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'es\\_test\\_%' OR nspname LIKE 'es\\_facade\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let made = name.rsplit('_').nth(1).and_then(|hex| u64::from_str_radix(hex, 16).ok());
        if made.is_some_and(|made| made + 3600 < now_secs()) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")).await;
        }
    }
}

/// A store in a fresh schema of its own.
pub async fn store(test: &str) -> PostgresStore {
    store_with(test, PostgresOptions::new()).await
}

/// A store in a fresh schema of its own, with these options.
pub async fn store_with(test: &str, options: PostgresOptions) -> PostgresStore {
    store_at(&database_url(), test, options).await
}

/// A store in a fresh schema of its own in the database at `url` (the server of
/// `DATABASE_URL`, or a pooler in front of it), with these options.
pub async fn store_at(url: &str, test: &str, options: PostgresOptions) -> PostgresStore {
    sweep_stale_schemas(&raw_client().await).await;
    let schema = unique_schema(test);
    match PostgresStore::connect_with(url, options.schema(schema)).await {
        Ok(store) => store,
        Err(error) => {
            panic!("cannot open a PostgreSQL store (is the server at DATABASE_URL or ES_PGBOUNCER_URL up?): {error}")
        }
    }
}

/// A plain client, for tests that change rows by hand.
pub async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to DATABASE_URL (is the server up?): {error}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops the store's schema and everything in it.
pub async fn drop_schema(store: &PostgresStore) {
    let client = raw_client().await;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", store.schema()))
        .await
        .unwrap_or_else(|error| panic!("cannot drop schema {}: {error}", store.schema()));
}

//! What the facade's PostgreSQL tests share: the server (`DATABASE_URL`, the local one by
//! default) and a schema of their own per test.
//!
//! A test never skips when the server is down: connecting fails, and so does the test.

#![allow(dead_code)]

/// The server the tests run against.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    }
}

/// `es_facade_<test>_<seconds since the epoch, hex>_<random>`: the es-postgres tests drop
/// such schemas once they are an hour old (tests that hand their store to a suite cannot drop
/// their own).
pub fn facade_schema(test: &str) -> String {
    let random = es::Uuid::new_v4().simple().to_string();
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("es_facade_{}_{secs:x}_{}", &test[..test.len().min(30)], &random[..8])
}

/// A PostgreSQL store at [`database_url`] with these options.
pub async fn postgres_store(options: es::PostgresOptions) -> es::PostgresStore {
    match es::PostgresStore::connect_with(&database_url(), options).await {
        Ok(store) => store,
        Err(error) => panic!("cannot open a PostgreSQL store at DATABASE_URL (is the server up?): {error}"),
    }
}

//! Every store against the one conformance suite: the in-memory store, SQLite (as a file and
//! in memory) and, with the `postgres` feature, PostgreSQL.

mod memory {
    es::conformance_suite!(|_test: &str| async { es::InMemoryStore::new() });
}

mod sqlite_file {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    /// One directory for the whole run; each test gets its own database file in it.
    fn dir() -> &'static PathBuf {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| tempfile::tempdir().expect("cannot create a temporary directory").keep())
    }

    es::conformance_suite!(|test: &str| {
        let path = dir().join(format!("{test}.db"));
        async move { es::SqliteStore::open(path).expect("cannot open the SQLite store") }
    });
}

mod sqlite_in_memory {
    es::conformance_suite!(|_test: &str| async { es::SqliteStore::open_in_memory().expect("cannot open :memory:") });
}

/// PostgreSQL at `DATABASE_URL` (the local server by default), each test in a schema of its
/// own. A server that is down fails these tests; it never skips them.
#[cfg(feature = "postgres")]
mod postgres {
    fn database_url() -> String {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => "postgres://postgres@127.0.0.1:5432/test".to_owned(),
        }
    }

    /// `es_facade_<test>_<seconds since the epoch, hex>_<random>`: the es-postgres tests drop
    /// such schemas once they are an hour old (these tests cannot drop their own: the suite
    /// takes the store).
    fn schema_for(test: &str) -> String {
        let random = es::Uuid::new_v4().simple().to_string();
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("es_facade_{}_{secs:x}_{}", &test[..test.len().min(30)], &random[..8])
    }

    es::conformance_suite!(|test: &str| {
        let schema = schema_for(test);
        async move {
            let options = es::PostgresOptions::new().schema(schema);
            match es::PostgresStore::connect_with(&database_url(), options).await {
                Ok(store) => store,
                Err(error) => panic!("cannot open a PostgreSQL store at DATABASE_URL (is the server up?): {error}"),
            }
        }
    });

    /// `AnyStore::connect` opens a PostgreSQL URL as the PostgreSQL store (schema `es`).
    #[tokio::test]
    async fn any_store_connects_to_postgres_urls() {
        use es::EventStore;
        let store = es::AnyStore::connect(&database_url()).await.expect("cannot connect through AnyStore");
        assert!(matches!(store, es::AnyStore::Postgres(_)), "{store:?}");
        store.head().await.expect("head failed");
    }
}

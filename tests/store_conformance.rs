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

#[cfg(feature = "postgres")]
mod common;

/// PostgreSQL at `DATABASE_URL` (the local server by default), each test in a schema of its
/// own. A server that is down fails these tests; it never skips them.
#[cfg(feature = "postgres")]
mod postgres {
    use super::common::{database_url, facade_schema, postgres_store};

    es::conformance_suite!(|test: &str| {
        let schema = facade_schema(test);
        async move { postgres_store(es::PostgresOptions::new().schema(schema)).await }
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

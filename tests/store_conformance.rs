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

    es::conformance_suite!(|test: &str| {
        let random = es::Uuid::new_v4().simple().to_string();
        let schema = format!("es_facade_{}_{}", &test[..test.len().min(40)], &random[..12]);
        async move {
            let options = es::PostgresOptions::new().schema(schema);
            match es::PostgresStore::connect_with(&database_url(), options).await {
                Ok(store) => store,
                Err(error) => panic!("cannot open a PostgreSQL store at DATABASE_URL (is the server up?): {error}"),
            }
        }
    });
}

//! Every store against the one conformance suite: the in-memory store and SQLite, both as a
//! file and in memory.

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

//! Choosing the store at run time: one type over every store this build of es has.

use std::time::Duration;

use uuid::Uuid;

use crate::store::{AllEventsPage, LeaseAttempt, LeaseGrant, Leases};
use crate::{
    Appended, Checkpoint, EventStore, ExpectedVersion, InMemoryStore, NewEvent, ReadAllFilter, Snapshot, StoreError,
    StoredEvent, StreamId, Version,
};

/// Any store this build of es has, chosen at run time: `Repository<A, AnyStore>` works the
/// same whichever it holds.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The store a URL names: `memory:`, `sqlite::memory:`, `sqlite:path/to/file.db` or a path,
/// // and with the `postgres` feature `postgres://…` (connecting needs `.await`).
/// let store = es::AnyStore::connect("memory:").await?;
/// let store = es::AnyStore::connect("sqlite::memory:").await?;
/// // In an application, the store `DATABASE_URL` names, and this file when it is not set:
/// // `es::AnyStore::connect_from_env_or("bank.db").await?` (not run here: it would open
/// // whatever database `DATABASE_URL` points at).
/// // Stores that open without a server open without a runtime, too:
/// let store = es::AnyStore::open("memory:")?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// [`InMemoryStore`].
    Memory(InMemoryStore),
    /// [`SqliteStore`](crate::SqliteStore) (feature `sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite(crate::SqliteStore),
    /// [`PostgresStore`](crate::PostgresStore) (feature `postgres`), in schema `es`.
    #[cfg(feature = "postgres")]
    Postgres(crate::PostgresStore),
}

/// Why [`AnyStore::open`] could not open a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnyStoreError {
    /// The URL names no store this build has.
    #[error(
        "`{url}` names no store this build of es has; expected `memory:`{}{}",
        if cfg!(feature = "sqlite") { ", `sqlite:<path>`, `sqlite::memory:` or a file path" } else { " (enable the `sqlite` feature for SQLite)" },
        if cfg!(feature = "postgres") {
            ", or `postgres://…` through `AnyStore::connect(url).await`"
        } else {
            " (enable the `postgres` feature for PostgreSQL)"
        }
    )]
    UnknownStore {
        /// The URL, without any password.
        url: String,
    },
    /// The store refused to open.
    #[error("cannot open the store `{url}`")]
    Open {
        /// The URL, without any password.
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

impl AnyStore {
    /// The store `url` names, connecting to a server where it names one: `postgres://…` and
    /// `postgresql://…` with the `postgres` feature (the store's tables in schema `es`), and
    /// whatever [`AnyStore::open`] opens.
    ///
    /// # Errors
    /// [`AnyStoreError`] for a URL no store of this build reads, or a store that does not open
    /// (an unreachable server, refused credentials, …).
    pub async fn connect(url: &str) -> Result<Self, AnyStoreError> {
        if is_postgres_url(url) {
            #[cfg(feature = "postgres")]
            return crate::PostgresStore::connect(url)
                .await
                .map(AnyStore::Postgres)
                .map_err(|source| AnyStoreError::Open { url: without_password(url), source });
            #[cfg(not(feature = "postgres"))]
            return Err(AnyStoreError::UnknownStore { url: without_password(url) });
        }
        Self::open(url)
    }

    /// The store named by the environment variable `DATABASE_URL`, or by `default` when it is
    /// not set, as [`AnyStore::connect`] opens it.
    ///
    /// # Errors
    /// As [`AnyStore::connect`].
    pub async fn connect_from_env_or(default: &str) -> Result<Self, AnyStoreError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Self::connect(&url).await,
            _ => Self::connect(default).await,
        }
    }

    /// The store `url` names, for stores that open without a server: `memory:`, or with the
    /// `sqlite` feature `sqlite:<path>`, `sqlite::memory:` and a plain file path. A server's
    /// URL needs [`AnyStore::connect`].
    ///
    /// # Errors
    /// [`AnyStoreError`] for a URL no store of this build reads, or a store that does not open.
    pub fn open(url: &str) -> Result<Self, AnyStoreError> {
        if url == "memory:" {
            return Ok(AnyStore::Memory(InMemoryStore::new()));
        }
        #[cfg(feature = "sqlite")]
        if !url.contains("://") {
            let path = url.strip_prefix("sqlite:").unwrap_or(url);
            return crate::SqliteStore::open(path)
                .map(AnyStore::Sqlite)
                .map_err(|source| AnyStoreError::Open { url: url.to_owned(), source });
        }
        Err(AnyStoreError::UnknownStore { url: without_password(url) })
    }

    /// The store named by the environment variable `DATABASE_URL`, or by `default` when it is
    /// not set, as [`AnyStore::open`] opens it (so not a server's: see
    /// [`AnyStore::connect_from_env_or`]).
    ///
    /// # Errors
    /// As [`AnyStore::open`].
    pub fn from_env_or(default: &str) -> Result<Self, AnyStoreError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Self::open(&url),
            _ => Self::open(default),
        }
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `scheme://user:password@host/…` without the password, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return crate::store::bounded(url) };
    let Some((credentials, host)) = rest.split_once('@') else { return crate::store::bounded(url) };
    let user = credentials.split(':').next().unwrap_or("");
    crate::store::bounded(&format!("{scheme}://{user}@{host}"))
}

/// Each call goes to the store inside.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call.await,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($store) => $call.await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl EventStore for AnyStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        delegate!(self, store => store.append(stream, expected, events))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        delegate!(self, store => store.read_stream(stream, from, limit))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        delegate!(self, store => store.stream_version(stream))
    }

    async fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        delegate!(self, store => store.read_all(from, filter, limit))
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        delegate!(self, store => store.head())
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        delegate!(self, store => store.find_event(event_id))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        delegate!(self, store => store.save_snapshot(snapshot))
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        delegate!(self, store => store.load_snapshot(stream))
    }

    fn commit_signal(&self) -> Option<crate::store::CommitSignal> {
        match self {
            AnyStore::Memory(store) => store.commit_signal(),
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(store) => store.commit_signal(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store.commit_signal(),
        }
    }
}

/// The leases of the store inside ([`Leases`]).
impl Leases for AnyStore {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseAttempt, StoreError> {
        delegate!(self, store => store.acquire_lease(name, holder, ttl))
    }

    async fn release_lease(&self, grant: &LeaseGrant) -> Result<(), StoreError> {
        delegate!(self, store => store.release_lease(grant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_stores_and_messages_hide_passwords() {
        assert!(matches!(AnyStore::open("memory:"), Ok(AnyStore::Memory(_))));
        let error = AnyStore::open("mysql://ann:secret@db/bank").expect_err("no mysql store");
        let message = error.to_string();
        assert!(message.contains("mysql://ann@db/bank") && !message.contains("secret"), "{message}");
        let error = AnyStore::open("postgres://ann:secret@db/bank").expect_err("a server needs connect");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[tokio::test]
    async fn connect_opens_what_open_opens() {
        assert!(matches!(AnyStore::connect("memory:").await, Ok(AnyStore::Memory(_))));
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn an_unreachable_server_is_a_typed_error_without_the_password() {
        let error =
            AnyStore::connect("postgres://ann:secret@127.0.0.1:9/bank").await.expect_err("nothing listens there");
        let AnyStoreError::Open { url, source } = &error else { panic!("{error:?}") };
        assert!(source.is_transient(), "{source:?}");
        assert!(!url.contains("secret") && !source.to_string().contains("secret"), "{error}");
    }
}

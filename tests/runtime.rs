//! The runtime as a user meets it: retries on any executor, impossible payloads refused before
//! anything is written, the store chosen at run time, ids passed as they are.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Wake};

use es::prelude::*;
use es::testing::Hooked;
use es::{AnyStore, EventStore, ExpectedVersion, InMemoryStore, RepositoryError, StoreError, StreamId};

/// Something was noted; `detail` may nest as deep as the caller likes.
#[event(version = 1)]
pub struct Noted {
    /// Free-form JSON.
    pub detail: serde_json::Value,
}

/// A notebook that counts its notes.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(id = String, events(Noted))]
pub struct Notebook {
    notes: u64,
}

impl Apply<Noted> for Notebook {
    fn apply(&mut self, _: &Noted) {
        self.notes += 1;
    }
}

/// The smallest executor there is: poll, park until woken, poll again. No Tokio anywhere.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// `inner`, whose first `conflicts` appends meet a version conflict, as if another writer got
/// there first.
fn contended<S: EventStore>(inner: S, conflicts: u32) -> Repository<Notebook, Hooked<S>> {
    let conflicts_left = Arc::new(AtomicU32::new(conflicts));
    let store = Hooked::new(inner).before_append(move || {
        let conflict = conflicts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        Box::pin(async move {
            conflict.then(|| StoreError::Conflict {
                stream: StreamId::of::<Notebook>("mine"),
                expected: ExpectedVersion::NoStream,
                actual: Version(99),
            })
        })
    });
    Repository::new(store).with_retry(RetryPolicy::attempts(10))
}

fn note() -> Result<Noted, std::convert::Infallible> {
    Ok(Noted { detail: serde_json::json!({ "text": "hello" }) })
}

async fn retried_commands_get_through<S: EventStore>(store: S) {
    let notebooks = contended(store, 3);
    let done = notebooks.execute("mine", |_| note()).await.expect("the command must get through after retries");
    assert_eq!(done.version(), Some(Version(1)));
    assert_eq!(notebooks.stats().conflicts_retried, 3);
    assert_eq!(notebooks.load("mine").await.expect("load failed").notes, 1);
}

/// Backoff sleeps used to be `tokio::time::sleep`: the first retry panicked here.
#[test]
fn retries_work_without_any_async_runtime() {
    block_on(retried_commands_get_through(InMemoryStore::new()));
    block_on(retried_commands_get_through(es::SqliteStore::open_in_memory().expect("open failed")));
}

/// ... and here: the current-thread runtime without `enable_time`, as es-sqlite's docs build.
#[test]
fn retries_work_on_a_tokio_runtime_without_timers() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(retried_commands_get_through(InMemoryStore::new()));
    runtime.block_on(retried_commands_get_through(es::SqliteStore::open_in_memory().expect("open failed")));
}

fn nested(depth: usize) -> serde_json::Value {
    let mut value = serde_json::json!(1);
    for _ in 0..depth {
        value = serde_json::Value::Array(vec![value]);
    }
    value
}

/// An event that serde_json would write but never read back is refused before anything is
/// written: it used to commit, and every later load of the stream failed.
#[tokio::test]
async fn an_event_nested_too_deep_to_read_back_is_refused_before_writing() {
    for store in [AnyStore::open("memory:").expect("memory"), AnyStore::open("sqlite::memory:").expect("sqlite")] {
        let notebooks = Repository::<Notebook, _>::new(store.clone());
        let refused = notebooks.execute("deep", |_| Ok(Noted { detail: nested(200) })).await;
        match refused {
            Err(RepositoryError::Store(StoreError::InvalidEvent { event_type, .. })) => assert_eq!(event_type, "Noted"),
            other => panic!("expected InvalidEvent, got {other:?}"),
        }
        assert_eq!(store.stream_version(&StreamId::of::<Notebook>("deep")).await.expect("version"), Version::NONE);
        // What does read back is stored and loads.
        notebooks.execute("deep", |_| Ok(Noted { detail: nested(100) })).await.expect("a readable event is stored");
        assert_eq!(notebooks.load("deep").await.expect("load failed").notes, 1);
    }
}

/// A `String` id is passed as `&str`, `&String` or `String`'s own reference alike.
#[tokio::test]
async fn string_ids_pass_as_str() {
    let notebooks = Repository::<Notebook, _>::new(InMemoryStore::new());
    let owned = "n-1".to_owned();
    notebooks.execute("n-1", |_| note()).await.expect("execute failed");
    notebooks.execute(&owned, |_| note()).await.expect("execute failed");
    notebooks.execute(owned.as_str(), |_| note()).await.expect("execute failed");
    assert_eq!(notebooks.load(&owned).await.expect("load failed").notes, 3);
    assert_eq!(StreamId::of::<Notebook>("n-1"), StreamId::new("Notebook", "n-1"));
}

/// One line picks the store; an unknown URL is a typed error that shows no password.
#[tokio::test]
async fn the_store_is_chosen_at_run_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chosen.db");
    let sqlite = AnyStore::open(path.to_str().expect("utf-8 path")).expect("open failed");
    assert!(matches!(sqlite, AnyStore::Sqlite(_)));
    Repository::<Notebook, _>::new(sqlite).execute("a", |_| note()).await.expect("execute failed");
    let again = AnyStore::open(&format!("sqlite:{}", path.display())).expect("open failed");
    assert_eq!(Repository::<Notebook, _>::new(again).load("a").await.expect("load failed").notes, 1);
    let error = AnyStore::open("nats://user:hunter2@localhost/x").expect_err("not a store");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

/// What a repository did is counted, and readable without a tracing subscriber.
#[tokio::test]
async fn counters_need_no_subscriber() {
    /// Work was done.
    #[event(version = 1)]
    pub struct Worked {}

    /// Snapshotted every 2 events.
    #[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(crate = "es::serde")]
    #[aggregate(id = String, events(Worked), snapshot(every = 2, version = 1))]
    pub struct Worker {
        done: u64,
    }

    impl Apply<Worked> for Worker {
        fn apply(&mut self, _: &Worked) {
            self.done += 1;
        }
    }

    let workers = Repository::<Worker, _>::new(InMemoryStore::new());
    for _ in 0..4 {
        workers.execute("w", |_| Ok(Worked {})).await.expect("execute failed");
    }
    let stats = workers.stats();
    assert_eq!((stats.snapshots_written, stats.cache_misses, stats.cache_hits), (2, 1, 3));
}

//! Commit notifications across processes: a store's commit signal fires for appends made
//! through another store (another pool, as another process would have), its listener comes
//! back after its connection is killed, and listening can be turned off.

mod common;

use std::time::{Duration, Instant};

use es_core::store::CommitSignal;
use es_core::{EventStore, ExpectedVersion, NewEvent, RawEvent, StreamId};
use es_postgres::{PostgresOptions, PostgresStore};

const WAIT: Duration = Duration::from_secs(20);

fn event() -> NewEvent {
    NewEvent::new(RawEvent::new("Ticked", 1, "{}"))
}

/// A second store on `store`'s schema: its own pool and listener, as in another process.
async fn twin(store: &PostgresStore, options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect_with(&common::database_url(), options.schema(store.schema()))
        .await
        .expect("cannot open a second store on the schema")
}

/// Waits for `signal` to move past `seen`; panics after `WAIT`.
async fn fired(signal: &CommitSignal, seen: u64, what: &str) {
    if tokio::time::timeout(WAIT, signal.changed(seen)).await.is_err() {
        panic!("the commit signal did not fire within {WAIT:?}: {what}");
    }
}

/// The server processes listening for `store`'s schema.
async fn listeners(client: &tokio_postgres::Client, store: &PostgresStore) -> Vec<i32> {
    let name = format!("es listener {}", store.schema());
    let name = &name[..name.len().min(63)];
    let rows = client
        .query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", &[&name])
        .await
        .expect("cannot read pg_stat_activity");
    rows.iter().map(|row| row.get(0)).collect()
}

/// Waits until `store`'s listener is connected (it fires the signal once it listens).
async fn listening(client: &tokio_postgres::Client, store: &PostgresStore) -> Vec<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        let pids = listeners(client, store).await;
        if !pids.is_empty() {
            return pids;
        }
        assert!(Instant::now() < deadline, "no listener connected within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_by_another_store_fires_the_signal() {
    let reader = common::store("notify_other").await;
    let writer = twin(&reader, PostgresOptions::new().listen_for_commits(false)).await;
    let signal = reader.commit_signal().expect("a PostgreSQL store has a commit signal");
    let client = common::raw_client().await;
    listening(&client, &reader).await;
    // LISTEN is done once the signal fired for it.
    fired(&signal, 0, "when the listener started listening").await;
    for n in 0..3 {
        let seen = signal.generation();
        let stream = StreamId::new("Clock", n.to_string());
        writer.append(&stream, ExpectedVersion::NoStream, vec![event()]).await.expect("append");
        fired(&signal, seen, "after another store's append").await;
    }
    common::drop_schema(&reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_comes_back_after_its_connection_is_killed() {
    let reader = common::store("notify_reconnect").await;
    let writer = twin(&reader, PostgresOptions::new().listen_for_commits(false)).await;
    let signal = reader.commit_signal().expect("a PostgreSQL store has a commit signal");
    let client = common::raw_client().await;
    let before = listening(&client, &reader).await;
    fired(&signal, 0, "when the listener started listening").await;

    let seen = signal.generation();
    for pid in &before {
        client.execute("SELECT pg_terminate_backend($1)", &[pid]).await.expect("cannot terminate the listener");
    }
    // It reconnects, and fires once on listening again: nothing waits for a notification sent
    // while it was away.
    fired(&signal, seen, "when the listener listened again").await;
    let after = listening(&client, &reader).await;
    assert!(after.iter().all(|pid| !before.contains(pid)), "a new connection: {before:?} then {after:?}");

    let seen = signal.generation();
    writer.append(&StreamId::new("Clock", "after"), ExpectedVersion::NoStream, vec![event()]).await.expect("append");
    fired(&signal, seen, "after another store's append, once reconnected").await;
    common::drop_schema(&reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_listening_no_connection_listens_and_own_appends_still_fire() {
    let store = common::store_with("notify_off", PostgresOptions::new().listen_for_commits(false)).await;
    let signal = store.commit_signal().expect("a PostgreSQL store has a commit signal");
    let seen = signal.generation();
    store.append(&StreamId::new("Clock", "own"), ExpectedVersion::NoStream, vec![event()]).await.expect("append");
    assert_ne!(signal.generation(), seen, "the store's own append fires the signal");
    let client = common::raw_client().await;
    assert!(listeners(&client, &store).await.is_empty(), "no listener connection");
    common::drop_schema(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_stops_with_the_store() {
    let store = common::store("notify_drop").await;
    let client = common::raw_client().await;
    listening(&client, &store).await;
    let probe = twin(&store, PostgresOptions::new().listen_for_commits(false)).await;
    drop(store);
    let deadline = Instant::now() + WAIT;
    while !listeners(&client, &probe).await.is_empty() {
        assert!(Instant::now() < deadline, "the listener outlived its store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::drop_schema(&probe).await;
}

/// A caught-up projection whose poll interval is an hour follows appends made through
/// another store (as by another process): only the notifications can wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_follows_another_process_without_polling() {
    use es_core::projection::{ProjectionOptions, ProjectionRunner};
    use es_core::testing::projection_suite::{MemoryReadModel, Ticks, counter, increment};

    let reader = common::store("notify_runner").await;
    let writer = twin(&reader, PostgresOptions::new().listen_for_commits(false)).await;
    let client = common::raw_client().await;
    listening(&client, &reader).await;
    let model = MemoryReadModel::new();
    let options = ProjectionOptions { poll_interval: Duration::from_secs(3600), ..ProjectionOptions::default() };
    let runner = ProjectionRunner::new(Ticks::<1>::default(), reader.clone(), model.clone()).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.expect("caught up on the empty store");
    for n in 0..5 {
        writer.append(&counter(&n.to_string()), ExpectedVersion::NoStream, vec![increment(1)]).await.expect("append");
        let head = writer.head().await.expect("head");
        handle.wait_for(&head, WAIT).await.expect("woken by the other store's notification");
    }
    handle.stop();
    task.await.expect("the runner panicked").expect("the runner failed");
    assert_eq!(model.rows(1).len(), 5);
    common::drop_schema(&reader).await;
}

/// Listens on `channel` with a connection of its own; every notification's payload goes to
/// the returned receiver.
async fn raw_listener(channel: &str) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) =
        tokio_postgres::connect(&common::database_url(), tokio_postgres::NoTls).await.expect("connect");
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(notification) = message {
                let _ = sender.send(notification.payload().to_owned());
            }
        }
    });
    client.batch_execute(&format!("LISTEN \"{channel}\"")).await.expect("listen");
    (client, receiver)
}

/// The payloads received before `end` (sent after everything else, so received last).
async fn until_end(
    client: &tokio_postgres::Client,
    channel: &str,
    receiver: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Vec<String> {
    client.execute("SELECT pg_notify($1, 'end')", &[&channel]).await.expect("notify end");
    let mut payloads = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, receiver.recv()).await {
            Ok(Some(payload)) if payload == "end" => return payloads,
            Ok(Some(payload)) => payloads.push(payload),
            other => panic!("the end notification did not come: {other:?}"),
        }
    }
}

/// One notification per committed append, however many events it holds; none for an append
/// that wrote nothing; none at all with `notify_commits(false)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_commit_notifies_once_and_only_when_asked_to() {
    let store = common::store_with("notify_once", PostgresOptions::new().listen_for_commits(false)).await;
    let channel = format!("es_commits_{}", store.schema());
    let (client, mut receiver) = raw_listener(&channel).await;
    let batch = (0..10).map(|_| event()).collect::<Vec<_>>();
    store.append(&StreamId::new("Clock", "a"), ExpectedVersion::NoStream, batch.clone()).await.expect("append");
    store.append(&StreamId::new("Clock", "b"), ExpectedVersion::NoStream, vec![event()]).await.expect("append");
    // A retry of the first batch writes nothing, and a conflict neither.
    store.append(&StreamId::new("Clock", "a"), ExpectedVersion::NoStream, batch).await.expect("retry");
    let conflict = store.append(&StreamId::new("Clock", "b"), ExpectedVersion::NoStream, vec![event()]).await;
    assert!(conflict.is_err_and(|error| error.is_conflict()));
    assert_eq!(until_end(&client, &channel, &mut receiver).await, ["", ""], "one notification per commit");

    let quiet = twin(&store, PostgresOptions::new().listen_for_commits(false).notify_commits(false)).await;
    quiet.append(&StreamId::new("Clock", "c"), ExpectedVersion::NoStream, vec![event()]).await.expect("append");
    assert!(until_end(&client, &channel, &mut receiver).await.is_empty(), "no notification when turned off");
    common::drop_schema(&store).await;
}

//! What PostgreSQL adds to the contract: the read-all order under many writers and readers,
//! typed connection and pool errors, JSON kept byte for byte, migrations, and bad rows.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use es_core::store::BackendErrorKind;
use es_core::testing::counter::Counter;
use es_core::{
    Checkpoint, DecodeErrorKind, EventStore, ExpectedVersion, Metadata, NewEvent, RawEvent, ReadAllFilter, Snapshot,
    StoreError, StoredEvent, StreamId, Version, decode_record,
};
use es_postgres::bb8_postgres::PostgresConnectionManager;
use es_postgres::{PostgresOptions, PostgresStore, bb8};
use tokio_postgres::NoTls;

fn stream(id: &str) -> StreamId {
    StreamId::new("Test", id)
}

fn events(count: u64) -> Vec<NewEvent> {
    (1..=count).map(|n| NewEvent::new(RawEvent::new("Happened", 1, format!(r#"{{"n":{n}}}"#)))).collect()
}

fn backend_kind(error: &StoreError) -> Option<BackendErrorKind> {
    match error {
        StoreError::Backend(backend) => Some(backend.kind()),
        _ => None,
    }
}

async fn everything(store: &PostgresStore) -> Vec<StoredEvent> {
    store.read_all(&Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.expect("read_all failed").events
}

/// 16 writers on 16 streams and 2 followers at once: each follower sees every committed event
/// exactly once, and both see the same order, which is the order a reader from the start sees
/// afterwards, with positions 1, 2, 3 … without a hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_and_two_followers_agree_on_one_order() {
    const WRITERS: u64 = 16;
    const BATCHES: u64 = 25;
    let store = common::store_with("followers", PostgresOptions::new().max_connections(24)).await;
    let expected: u64 = WRITERS * (0..BATCHES).map(|b| b % 4 + 1).sum::<u64>();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let s = stream(&format!("writer-{w}"));
            let mut version = Version::NONE;
            for b in 0..BATCHES {
                let appended =
                    store.append(&s, ExpectedVersion::at(version), events(b % 4 + 1)).await.expect("append failed");
                version = appended.events.last().map_or(version, |e| e.stream_version);
            }
        }));
    }
    let mut followers = Vec::new();
    for (page_size, filter) in [(7, ReadAllFilter::all()), (50, ReadAllFilter::all().stream_type("Test"))] {
        let store = store.clone();
        followers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut checkpoint = Checkpoint::START;
            let mut seen: Vec<StoredEvent> = Vec::new();
            while (seen.len() as u64) < expected && Instant::now() < deadline {
                let page = store.read_all(&checkpoint, &filter, page_size).await.expect("read_all failed");
                if page.events.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                // Resume from the checkpoint as a projection would store it: as text.
                checkpoint = page.next.to_string().parse().expect("a checkpoint reads back");
                seen.extend(page.events);
            }
            seen
        }));
    }
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let mut seen_by = Vec::new();
    for follower in followers {
        seen_by.push(follower.await.expect("a follower panicked"));
    }
    let all = everything(&store).await;
    assert_eq!(all.len() as u64, expected);
    assert_eq!(all.iter().map(|e| e.position.0).collect::<Vec<_>>(), (1..=expected).collect::<Vec<_>>());
    for seen in &seen_by {
        assert_eq!(seen.len() as u64, expected, "a follower must see every event exactly once");
        let ids: HashSet<_> = seen.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len() as u64, expected, "no event may be repeated");
        assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "store order");
        assert_eq!(seen, &all, "every follower sees the order a reader from the start sees");
        let mut per_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for e in seen {
            per_stream.entry(e.stream.id()).or_default().push(e.stream_version.0);
        }
        for (stream, versions) in per_stream {
            assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "{stream}");
        }
    }
    common::drop_schema(&store).await;
}

/// An append that has taken the frontier but not committed (here: a hand-made transaction
/// that does what an append does) holds back the appends behind it, never the readers; when
/// it commits, a reader that had already read past everything before it still gets it, and
/// the append that waited comes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped() {
    let store = common::store("late_commit").await;
    store.append(&stream("early"), ExpectedVersion::NoStream, events(1)).await.expect("append failed");
    let mut raw = common::raw_client().await;
    let schema = format!("\"{}\"", store.schema());
    let in_flight = raw.transaction().await.expect("begin failed");
    in_flight
        .batch_execute(&format!(
            "UPDATE {schema}.head SET last_position = last_position + 1;
             INSERT INTO {schema}.events (position, stream_type, stream_id, stream_version, event_id, event_type,
                 schema_version, payload, metadata, recorded_at)
             VALUES (2, 'Test', 'late', 1, gen_random_uuid(), 'Happened', 1, '{{}}', '{{}}', now());"
        ))
        .await
        .expect("the in-flight append failed");

    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.append(&stream("after"), ExpectedVersion::NoStream, events(1)).await })
    };
    let reader =
        tokio::time::timeout(Duration::from_secs(5), store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 100))
            .await
            .expect("a reader must not wait for an append in flight")
            .expect("read_all failed");
    assert_eq!(reader.events.iter().map(|e| e.stream.id().to_owned()).collect::<Vec<_>>(), ["early"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the next append queues behind the one in flight");

    in_flight.commit().await.expect("commit failed");
    let appended = waiting.await.expect("the waiting append panicked").expect("the waiting append failed");
    assert_eq!(appended.events[0].position.0, 3);
    let page = store.read_all(&reader.next, &ReadAllFilter::all(), 100).await.expect("read_all failed");
    let read: Vec<(String, u64)> = page.events.iter().map(|e| (e.stream.id().to_owned(), e.position.0)).collect();
    assert_eq!(read, [("late".to_owned(), 2), ("after".to_owned(), 3)]);
    common::drop_schema(&store).await;
}

/// A connection that dies inside an append's transaction leaves nothing: no event, no
/// position taken, and the next append gets position 1.
#[tokio::test]
async fn a_connection_dropped_mid_transaction_leaves_nothing() {
    let store = common::store("dropped").await;
    let raw = common::raw_client().await;
    let schema = format!("\"{}\"", store.schema());
    let pid: i32 = raw.query_one("SELECT pg_backend_pid()", &[]).await.expect("pid").get(0);
    raw.batch_execute(&format!(
        "BEGIN;
         UPDATE {schema}.head SET last_position = last_position + 1;
         INSERT INTO {schema}.events (position, stream_type, stream_id, stream_version, event_id, event_type,
             schema_version, payload, metadata, recorded_at)
         VALUES (1, 'Test', 'lost', 1, gen_random_uuid(), 'Happened', 1, '{{}}', '{{}}', now());"
    ))
    .await
    .expect("the doomed transaction failed early");
    let killer = common::raw_client().await;
    killer.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.expect("terminate failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while killer.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.expect("poll").len() == 1 {
        assert!(Instant::now() < deadline, "the killed backend did not go away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(raw.is_closed() || raw.simple_query("SELECT 1").await.is_err(), "the connection must be gone");
    assert!(everything(&store).await.is_empty());
    assert_eq!(store.head().await.expect("head failed"), Checkpoint::START);
    let appended = store.append(&stream("lost"), ExpectedVersion::NoStream, events(1)).await.expect("append failed");
    assert_eq!((appended.events[0].position.0, appended.events[0].stream_version), (1, Version(1)));
    common::drop_schema(&store).await;
}

/// The host, port and database of `DATABASE_URL`, to build other URLs to the same server.
fn server() -> (String, u16, String) {
    let config: tokio_postgres::Config = common::database_url().parse().expect("DATABASE_URL is not a URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host, port, config.get_dbname().unwrap_or("test").to_owned())
}

/// An unreachable server, credentials the server refuses, a database that does not exist and
/// a URL that is not one: each a typed error whose message names the server without the
/// password.
#[tokio::test]
async fn connection_failures_are_typed_and_never_show_the_password() {
    let (host, port, db) = server();
    let user =
        common::database_url().parse::<tokio_postgres::Config>().ok().and_then(|c| c.get_user().map(str::to_owned));
    let user = user.unwrap_or_else(|| "postgres".to_owned());
    let options = || PostgresOptions::new().connect_timeout(Duration::from_secs(3)).schema("es_never_created");
    let cases = [
        ("postgres://ann:hunter2@127.0.0.1:9/test".to_owned(), BackendErrorKind::Unavailable, "127.0.0.1:9".to_owned()),
        (
            format!("postgres://es_no_such_role:hunter2@{host}:{port}/{db}"),
            BackendErrorKind::Authentication,
            format!("postgres://es_no_such_role@{host}:{port}/{db}"),
        ),
        (
            format!("postgres://{user}:hunter2@{host}:{port}/es_no_such_database"),
            BackendErrorKind::NotADatabase,
            format!("postgres://{user}@{host}:{port}/es_no_such_database"),
        ),
        ("postgres://ann:hunter2@db:notaport/x".to_owned(), BackendErrorKind::Other, "postgres://ann@db".to_owned()),
    ];
    for (url, kind, shown) in cases {
        let error = PostgresStore::connect_with(&url, options()).await.expect_err("must not connect");
        let message = error.to_string();
        assert_eq!(backend_kind(&error), Some(kind), "{url}: {message}");
        assert_eq!(error.is_transient(), kind == BackendErrorKind::Unavailable, "{url}");
        assert!(message.contains(&shown), "{url}: the message must name the server: {message}");
        let mut chain = format!("{error:?}");
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            chain.push_str(&inner.to_string());
            source = inner.source();
        }
        assert!(!chain.contains("hunter2"), "{url}: the password leaked: {chain}");
    }
    let error = PostgresStore::connect_with(&common::database_url(), PostgresOptions::new().schema("Bad-Name; DROP"))
        .await
        .expect_err("not an identifier");
    assert!(error.to_string().contains("cannot name the store's schema"), "{error}");
}

/// A pool with every connection taken waits its wait timeout, then fails with a transient
/// `PoolTimeout` that says so; once a connection is back, calls go through.
#[tokio::test]
async fn an_exhausted_pool_times_out_and_says_so() {
    let config: tokio_postgres::Config = common::database_url().parse().expect("DATABASE_URL is not a URL");
    let pool = bb8::Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .build(PostgresConnectionManager::new(config, NoTls))
        .await
        .expect("pool");
    let store = PostgresStore::from_pool(pool.clone(), &common::unique_schema("pool")).await.expect("open failed");
    let held = pool.get().await.expect("a connection");
    let started = Instant::now();
    let error = store.stream_version(&stream("a")).await.expect_err("no connection is free");
    assert!(started.elapsed() < Duration::from_secs(5), "the wait is bounded");
    assert_eq!(backend_kind(&error), Some(BackendErrorKind::PoolTimeout), "{error}");
    assert!(error.is_transient());
    assert!(error.to_string().contains("wait timeout"), "{error}");
    drop(held);
    assert_eq!(store.stream_version(&stream("a")).await.expect("a connection is free again"), Version::NONE);
    common::drop_schema(&store).await;
}

/// Payloads, metadata and snapshots come back byte for byte: key order, spacing, duplicate
/// keys and `\u0000` kept. The same values through `jsonb` would not: it reorders keys and
/// refuses `\u0000`, which is why the columns are `text`.
#[tokio::test]
async fn json_comes_back_byte_for_byte_where_jsonb_would_not() {
    let store = common::store("json_bytes").await;
    let payloads = [
        r#"{"b":1,"a":2}"#,
        r#"{ "z" : [1, 2.50, 1e3] , "a":"nul:\u0000:"}"#,
        r#"{"dup":1,"dup":2}"#,
        "\"just a string\"",
    ];
    let batch: Vec<NewEvent> = payloads
        .iter()
        .map(|p| {
            NewEvent::new(RawEvent::new("Happened", 1, *p))
                .with_metadata(Metadata::new().with_header("nul", "a\u{0}b").with_header("ü", "✓"))
        })
        .collect();
    let committed = store.append(&stream("json"), ExpectedVersion::NoStream, batch.clone()).await.expect("append");
    let read = store.read_stream(&stream("json"), Version(1), 100).await.expect("read_stream");
    let all = everything(&store).await;
    for (i, payload) in payloads.iter().enumerate() {
        for events in [&committed.events, &read, &all] {
            assert_eq!(events[i].event.payload, *payload);
            assert_eq!(events[i].metadata, batch[i].metadata);
        }
        let found = store.find_event(batch[i].event_id).await.expect("find").expect("stored");
        assert_eq!(found.event.payload, *payload);
    }
    // A retry of the same batch is recognised (same text, of course).
    assert!(!store.append(&stream("json"), ExpectedVersion::NoStream, batch).await.expect("retry").was_written());
    let state = r#"{"z":0,"a":"\u0000"}"#.to_owned();
    let snapshot = Snapshot { stream: stream("json"), version: Version(4), snapshot_version: 1, state: state.clone() };
    store.save_snapshot(snapshot).await.expect("save");
    assert_eq!(store.load_snapshot(&stream("json")).await.expect("load").map(|s| s.state), Some(state));

    let raw = common::raw_client().await;
    let through_jsonb: String =
        raw.query_one("SELECT $1::text::jsonb::text", &[&payloads[0]]).await.expect("jsonb").get(0);
    assert_ne!(through_jsonb, payloads[0], "jsonb hands back other text");
    let error = raw.query_one("SELECT $1::text::jsonb", &[&payloads[1]]).await.expect_err("jsonb refuses \\u0000");
    assert!(error.code().is_some(), "{error}");
    common::drop_schema(&store).await;
}

/// A NUL character in a stream id cannot be stored as PostgreSQL text: a typed error, and
/// nothing written.
#[tokio::test]
async fn text_postgres_cannot_hold_is_refused_whole() {
    let store = common::store("nul_text").await;
    let error = store
        .append(&StreamId::new("Test", "a\u{0}b"), ExpectedVersion::NoStream, events(2))
        .await
        .expect_err("NUL in text");
    assert_eq!(backend_kind(&error), Some(BackendErrorKind::OutOfRange), "{error}");
    assert!(everything(&store).await.is_empty());
    assert_eq!(store.head().await.expect("head"), Checkpoint::START);
    common::drop_schema(&store).await;
}

/// Connecting migrates once, under a lock, however many processes connect at once; all of
/// them get the same store (checkpoints of one resume readers of the other). A schema written
/// by a newer es is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_and_refuse_a_newer_schema() {
    let schema = common::unique_schema("migrate");
    let mut connecting = Vec::new();
    for _ in 0..8 {
        let schema = schema.clone();
        connecting.push(tokio::spawn(async move {
            PostgresStore::connect_with(
                &common::database_url(),
                PostgresOptions::new().schema(schema).max_connections(2),
            )
            .await
        }));
    }
    let mut stores = Vec::new();
    for task in connecting {
        stores.push(task.await.expect("a connect panicked").expect("a concurrent connect failed"));
    }
    let first = &stores[0];
    first.append(&stream("a"), ExpectedVersion::NoStream, events(2)).await.expect("append");
    let head = first.head().await.expect("head");
    for other in &stores[1..] {
        assert_eq!(other.head().await.expect("head"), head, "the same store");
        let page = other.read_all(&head, &ReadAllFilter::all(), 10).await.expect("a checkpoint of the same store");
        assert!(page.events.is_empty());
    }
    let raw = common::raw_client().await;
    raw.execute(&format!("UPDATE \"{schema}\".meta SET value = '99' WHERE key = 'schema_version'"), &[])
        .await
        .expect("update");
    match PostgresStore::connect_with(&common::database_url(), PostgresOptions::new().schema(schema.clone())).await {
        Err(StoreError::SchemaTooNew { found: 99, supported }) => assert_eq!(supported, PostgresStore::SCHEMA_VERSION),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    common::drop_schema(first).await;
}

/// Rows es never writes are typed `Corrupt` errors on every read path (naming the stream),
/// and a payload that does not fit its event a typed `DecodeError`: never a panic.
#[tokio::test]
async fn bad_rows_are_typed_errors() {
    let raw = common::raw_client().await;
    let sql = |text: String| {
        let raw = &raw;
        async move { raw.batch_execute(&text).await.unwrap_or_else(|error| panic!("{text}: {error}")) }
    };
    let expect_corrupt = |result: Result<Vec<StoredEvent>, StoreError>, what: &str| match result {
        Err(StoreError::Corrupt(corruption)) => {
            assert_eq!(corruption.stream, Some(stream("a")), "{what}: {corruption}");
        }
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    let damage = [
        ("a version gap", "UPDATE {s}.events SET stream_version = 5 WHERE stream_version = 3"),
        ("metadata that is not JSON", "UPDATE {s}.events SET metadata = 'not json' WHERE stream_version = 2"),
        ("a version of 0", "UPDATE {s}.events SET stream_version = 0 WHERE stream_version = 1"),
        ("a schema version beyond u32", "UPDATE {s}.events SET schema_version = 5000000000 WHERE stream_version = 2"),
        (
            "a NULL payload",
            "ALTER TABLE {s}.events ALTER COLUMN payload DROP NOT NULL; \
             UPDATE {s}.events SET payload = NULL WHERE stream_version = 2",
        ),
        ("an infinite time", "UPDATE {s}.events SET recorded_at = '-infinity' WHERE stream_version = 2"),
    ];
    for (what, change) in damage {
        let store = common::store("bad_rows").await;
        let s = format!("\"{}\"", store.schema());
        store.append(&stream("a"), ExpectedVersion::NoStream, events(3)).await.expect("append");
        let id = everything(&store).await[1].event_id;
        sql(change.replace("{s}", &s)).await;
        expect_corrupt(store.read_stream(&stream("a"), Version(1), 100).await, what);
        let page = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 100).await;
        expect_corrupt(page.map(|p| p.events), what);
        if what == "a version gap" {
            // Also where the page starts after the gap.
            let mut from = Checkpoint::START;
            let paged = loop {
                match store.read_all(&from, &ReadAllFilter::all(), 1).await {
                    Ok(page) if page.events.is_empty() => break Ok(Vec::new()),
                    Ok(page) => from = page.next,
                    Err(error) => break Err(error),
                }
            };
            expect_corrupt(paged, "a version gap, pages of 1");
        }
        if what != "a version gap" && what != "a version of 0" {
            expect_corrupt(store.find_event(id).await.map(|e| e.into_iter().collect()), what);
        }
        common::drop_schema(&store).await;
    }

    let store = common::store("bad_rows").await;
    let s = format!("\"{}\"", store.schema());
    // A snapshot row that does not read.
    let snapshot = Snapshot { stream: stream("a"), version: Version(3), snapshot_version: 1, state: "{}".to_owned() };
    store.save_snapshot(snapshot).await.expect("save");
    sql(format!("UPDATE {s}.snapshots SET version = -1")).await;
    assert!(matches!(store.load_snapshot(&stream("a")).await, Err(StoreError::Corrupt(_))));
    // A payload that reads but does not fit: a typed DecodeError naming the stream.
    let counter = StreamId::of::<Counter>(&"c");
    let bad = NewEvent::new(RawEvent::new("Incremented", 1, r#"{"by":"not a number"}"#));
    store.append(&counter, ExpectedVersion::NoStream, vec![bad]).await.expect("append");
    let record = store.read_stream(&counter, Version(1), 1).await.expect("read").remove(0);
    let error = decode_record::<Counter>(record).expect_err("does not fit");
    assert_eq!((error.stream, error.stream_version), (counter, Version(1)));
    assert!(matches!(error.kind, DecodeErrorKind::Payload { .. }), "{:?}", error.kind);
    // A frontier moved back by hand: appends refuse to overwrite positions.
    sql(format!("UPDATE {s}.head SET last_position = 0")).await;
    let error = store.append(&stream("b"), ExpectedVersion::NoStream, events(1)).await.expect_err("frontier behind");
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    common::drop_schema(&store).await;
}

/// A store opens read-only on an existing schema, as on a hot standby (here: a session with
/// `default_transaction_read_only`): reads work, and an append is a typed `ReadOnly` error.
#[tokio::test]
async fn a_read_only_server_serves_reads() {
    let store = common::store("read_only").await;
    let committed = store.append(&stream("a"), ExpectedVersion::NoStream, events(2)).await.expect("append");
    let url = common::database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let read_only_url = format!("{url}{separator}options=-c%20default_transaction_read_only%3Don");
    let replica = PostgresStore::connect_with(&read_only_url, PostgresOptions::new().schema(store.schema()))
        .await
        .expect("an existing schema opens on a read-only server");
    assert_eq!(everything(&replica).await, committed.events);
    assert_eq!(replica.head().await.expect("head"), store.head().await.expect("head"), "the same store");
    let error = replica.append(&stream("a"), ExpectedVersion::Any, events(1)).await.expect_err("read-only");
    assert_eq!(backend_kind(&error), Some(BackendErrorKind::ReadOnly), "{error}");
    let fresh = PostgresOptions::new().schema(common::unique_schema("read_only_new"));
    assert!(PostgresStore::connect_with(&read_only_url, fresh).await.is_err(), "a new schema cannot be made there");
    common::drop_schema(&store).await;
}

/// Appends that arrive together share a commit, yet each keeps its own outcome: of 8 racing
/// to create one stream exactly one writes and 7 conflict, 8 on streams of their own all
/// write, two deliveries of one batch write it once, and positions stay 1, 2, 3 ….
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_committed_together_keep_their_own_outcomes() {
    let store = common::store_with("group", PostgresOptions::new().max_connections(32)).await;
    for round in 0..5 {
        let twice = events(3);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(18));
        let mut tasks = Vec::new();
        for task in 0..18usize {
            let store = store.clone();
            let start = std::sync::Arc::clone(&start);
            let twice = twice.clone();
            tasks.push(tokio::spawn(async move {
                let (s, batch) = match task {
                    0..8 => (stream(&format!("hot-{round}")), events(1)),
                    8..16 => (stream(&format!("own-{round}-{task}")), events(2)),
                    _ => (stream(&format!("twice-{round}")), twice),
                };
                start.wait().await;
                (task, store.append(&s, ExpectedVersion::NoStream, batch).await)
            }));
        }
        let (mut hot_written, mut hot_conflicts, mut twice_written, mut twice_found) = (0, 0, 0, 0);
        for task in tasks {
            let (task, result) = task.await.expect("a task panicked");
            match (task, result) {
                (0..8, Ok(appended)) if appended.was_written() => hot_written += 1,
                (0..8, Err(StoreError::Conflict { actual, .. })) => {
                    assert_eq!(actual, Version(1));
                    hot_conflicts += 1;
                }
                (8..16, Ok(appended)) => assert!(appended.was_written()),
                (_, Ok(appended)) if appended.was_written() => twice_written += 1,
                (_, Ok(_)) => twice_found += 1,
                (task, other) => panic!("task {task}: {other:?}"),
            }
        }
        assert_eq!((hot_written, hot_conflicts, twice_written, twice_found), (1, 7, 1, 1), "round {round}");
    }
    let all = everything(&store).await;
    assert_eq!(all.len(), 5 * (1 + 8 * 2 + 3));
    assert_eq!(all.iter().map(|e| e.position.0).collect::<Vec<_>>(), (1..=all.len() as u64).collect::<Vec<_>>());
    common::drop_schema(&store).await;
}

/// Outside a Tokio runtime, connecting is a typed error, not a panic.
#[test]
fn connecting_outside_tokio_is_an_error() {
    let url = common::database_url();
    let mut connecting = std::pin::pin!(PostgresStore::connect(&url));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match connecting.as_mut().poll(&mut context) {
        std::task::Poll::Ready(Err(error)) => assert!(error.to_string().contains("Tokio"), "{error}"),
        std::task::Poll::Ready(Ok(_)) => panic!("connected without a runtime"),
        std::task::Poll::Pending => panic!("the check must come before any wait"),
    }
}

/// The store's own connection killed while its append statement runs (held at the frontier
/// behind a hand-made transaction): a transient error, nothing of the batch stored, and the
/// pool replaces the connection for the next append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_connection_is_killed_leaves_nothing() {
    let store = common::store("killed_append").await;
    let mut raw = common::raw_client().await;
    let schema = format!("\"{}\"", store.schema());
    let blocker = raw.transaction().await.expect("begin");
    blocker.batch_execute(&format!("SELECT last_position FROM {schema}.head FOR UPDATE")).await.expect("lock");
    let append = {
        let store = store.clone();
        tokio::spawn(async move { store.append(&stream("doomed"), ExpectedVersion::NoStream, events(5)).await })
    };
    // Find the append's server process: it waits for the frontier's row lock.
    let admin = common::raw_client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT % FROM %.append(%' \
                 AND query LIKE $1",
                &[&format!("%{}%", store.schema())],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = rows.first() {
            break row.get(0);
        }
        assert!(Instant::now() < deadline, "the append never reached the frontier");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.expect("terminate");
    let error = append.await.expect("the append panicked").expect_err("its connection was killed");
    assert!(error.is_transient(), "{error:?}");
    blocker.commit().await.expect("commit");
    assert!(everything(&store).await.is_empty(), "nothing of the batch is stored");
    let appended = store.append(&stream("doomed"), ExpectedVersion::NoStream, events(5)).await.expect("append again");
    assert_eq!(appended.events[0].position.0, 1);
    common::drop_schema(&store).await;
}

/// An idle connection of the pool that the server ended is not handed to the next call: the
/// pool opens a new one and the call goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_server_ended_leaves_the_pool() {
    let store = common::store_with("idle_killed", PostgresOptions::new().max_connections(1)).await;
    assert_eq!(store.stream_version(&stream("a")).await.expect("first call"), Version::NONE);
    let admin = common::raw_client().await;
    let killed = admin
        .execute(
            // Not the store's listener (its own connection, outside the pool).
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1 \
             AND application_name NOT LIKE 'es listener %'",
            &[&format!("%{}%", store.schema())],
        )
        .await
        .expect("terminate");
    assert_eq!(killed, 1, "the pool's one connection");
    // Let the driver see the end of the connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.stream_version(&stream("a")).await.expect("a new connection"), Version::NONE);
    store.append(&stream("a"), ExpectedVersion::NoStream, events(1)).await.expect("append");
    assert_eq!(store.pool().state().connections, 1, "still at most one connection");
    common::drop_schema(&store).await;
}

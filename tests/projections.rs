//! Projections through the facade, as a user writes them: the derive, given/then, the runner
//! over the in-memory store (aliases and upcasting, future versions, identity changes, status,
//! partition-count changes) and inline projections on SQLite and PostgreSQL. Catch-up, live
//! following, poisoned events, partitions, rebuilds and crashes are checked on every store by
//! the projection suite (`tests/projection_suite.rs`).

#![allow(missing_docs)]

#[cfg(feature = "postgres")]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use es::prelude::*;
use es::projection::{
    CheckpointStore, DispatchError, IdentityChange, InMemoryCheckpointStore, Partition, ProjectionError,
    ProjectionIdentity, ProjectionOptions, ProjectionRunner, Rebuilt, RunState, SavedCheckpoint, WaitError,
};
use es::testing::*;
use es::{Checkpoint, DecodeErrorKind, EventStore, ExpectedVersion, InMemoryStore, NewEvent, StreamId};

/// An account was opened.
#[event(version = 1)]
pub struct AccountOpened {
    pub owner: String,
}

/// Money was paid in. Version 2 added `reference`.
#[event(version = 2, upcast_from = MoneyDepositedV1)]
pub struct MoneyDeposited {
    pub amount: u64,
    pub reference: String,
}

/// The first shape of `MoneyDeposited`.
#[event(name = "MoneyDeposited", version = 1)]
pub struct MoneyDepositedV1 {
    pub amount: u64,
}

impl From<MoneyDepositedV1> for MoneyDeposited {
    fn from(old: MoneyDepositedV1) -> Self {
        Self { amount: old.amount, reference: "(none)".into() }
    }
}

/// Money was taken out; stored as `FundsWithdrawn` before a rename.
#[event(version = 1, aliases = ["FundsWithdrawn"])]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

/// A shop was opened: stored as `Opened`, like a branch.
#[event(name = "Opened", version = 1)]
pub struct ShopOpened {
    pub city: String,
}

/// A branch was opened: stored as `Opened`, like a shop.
#[event(name = "Opened", version = 1)]
pub struct BranchOpened {
    pub manager: String,
}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(ShopOpened))]
pub struct Shop {}

impl Apply<ShopOpened> for Shop {
    fn apply(&mut self, _: &ShopOpened) {}
}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(BranchOpened))]
pub struct Branch {}

impl Apply<BranchOpened> for Branch {
    fn apply(&mut self, _: &BranchOpened) {}
}

/// Balances by account, and every position seen (to prove each event arrives once, in order).
#[derive(Projection, Default, Debug, PartialEq)]
#[projection(name = "balances", version = 1, events(AccountOpened, MoneyDeposited, MoneyWithdrawn))]
pub struct Balances {
    balances: BTreeMap<String, i64>,
    references: Vec<String>,
    positions: Vec<u64>,
}

impl Balances {
    fn seen(&mut self, position: es::Position) -> Result<(), HandlerError> {
        if self.positions.last().is_some_and(|last| *last >= position.0) {
            return Err(format!("position {position} out of order").into());
        }
        self.positions.push(position.0);
        Ok(())
    }
}

impl Handle<AccountOpened> for Balances {
    fn handle(&mut self, event: &Envelope<AccountOpened>) -> Result<(), HandlerError> {
        self.seen(event.position)?;
        self.balances.insert(event.stream.id().to_owned(), 0);
        Ok(())
    }
}

impl Handle<MoneyDeposited> for Balances {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        self.seen(event.position)?;
        *self.balances.entry(event.stream.id().to_owned()).or_default() += i64::try_from(event.event.amount)?;
        self.references.push(event.event.reference.clone());
        Ok(())
    }
}

impl Handle<MoneyWithdrawn> for Balances {
    fn handle(&mut self, event: &Envelope<MoneyWithdrawn>) -> Result<(), HandlerError> {
        self.seen(event.position)?;
        *self.balances.entry(event.stream.id().to_owned()).or_default() -= i64::try_from(event.event.amount)?;
        Ok(())
    }
}

/// Two events stored under one name, told apart by the aggregate they come from.
#[derive(Projection, Default, Debug, PartialEq)]
#[projection(name = "openings", events(ShopOpened in Shop, BranchOpened in Branch))]
pub struct Openings {
    shops: Vec<String>,
    branches: Vec<String>,
}

impl Handle<ShopOpened> for Openings {
    fn handle(&mut self, event: &Envelope<ShopOpened>) -> Result<(), HandlerError> {
        self.shops.push(event.event.city.clone());
        Ok(())
    }
}

impl Handle<BranchOpened> for Openings {
    fn handle(&mut self, event: &Envelope<BranchOpened>) -> Result<(), HandlerError> {
        self.branches.push(event.event.manager.clone());
        Ok(())
    }
}

const WAIT: Duration = Duration::from_secs(10);

fn new_event<E: Event>(event: &E) -> NewEvent {
    NewEvent::new(RawEvent::new(E::NAME, E::VERSION, serde_json::to_string(event).unwrap()))
}

async fn append(store: &InMemoryStore, stream: &StreamId, events: Vec<NewEvent>) {
    store.append(stream, ExpectedVersion::Any, events).await.unwrap();
}

fn account(id: &str) -> StreamId {
    StreamId::new("BankAccount", id)
}

fn deposit(amount: u64) -> NewEvent {
    new_event(&MoneyDeposited { amount, reference: "r".into() })
}

fn fast() -> ProjectionOptions {
    ProjectionOptions {
        batch_size: 7,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
        ..ProjectionOptions::default()
    }
}

#[test]
fn given_typed_and_stored_records_of_old_versions_and_names() {
    Balances::given((
        AccountOpened { owner: "ann".into() },
        MoneyDeposited { amount: 50, reference: "salary".into() },
        RawEvent::new("MoneyDeposited", 1, r#"{"amount":7}"#),
        RawEvent::new("FundsWithdrawn", 1, r#"{"amount":20}"#),
    ))
    .then_state(|balances| {
        assert_eq!(balances.balances["given"], 37);
        assert_eq!(balances.references, ["salary", "(none)"]);
    });
}

#[test]
fn given_a_future_version_is_a_typed_error() {
    Balances::given(RawEvent::new("MoneyDeposited", 3, r#"{"amount":7}"#)).then_error(|error| {
        assert!(matches!(
            error,
            DispatchError::Decode(decode) if matches!(decode.kind, DecodeErrorKind::FutureVersion { found: 3, newest: 2 })
        ));
    });
}

#[test]
#[should_panic(expected = "record 1 was not handled")]
fn a_failed_record_fails_then_state_with_the_history() {
    Balances::given(RawEvent::new("MoneyDeposited", 1, "not json")).then_state(|_| {});
}

#[test]
fn same_named_events_of_two_aggregates_reach_their_own_handlers() {
    let shop = es::StoredEvent {
        position: es::Position(1),
        stream: StreamId::new("Shop", "s"),
        stream_version: Version(1),
        event_id: Uuid::from_u128(1),
        metadata: es::Metadata::new(),
        recorded_at: std::time::SystemTime::now(),
        event: RawEvent::new("Opened", 1, r#"{"city":"Oslo"}"#),
    };
    let branch = es::StoredEvent {
        position: es::Position(2),
        stream: StreamId::new("Branch", "b"),
        event_id: Uuid::from_u128(2),
        event: RawEvent::new("Opened", 1, r#"{"manager":"Bo"}"#),
        ..shop.clone()
    };
    Openings::given(vec![shop, branch])
        .then_state_is(Openings { shops: vec!["Oslo".into()], branches: vec!["Bo".into()] });
    let filter = <Openings as Projection>::filter();
    assert_eq!(filter.stream_types, ["Shop", "Branch"]);
}

#[tokio::test]
async fn records_under_an_alias_and_of_old_versions_reach_the_new_handler() {
    let store = InMemoryStore::new();
    let stream = account("ann");
    append(
        &store,
        &stream,
        vec![
            NewEvent::new(RawEvent::new("MoneyDeposited", 1, r#"{"amount":30}"#)),
            NewEvent::new(RawEvent::new("FundsWithdrawn", 1, r#"{"amount":10}"#)),
        ],
    )
    .await;
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.read(|b| {
        assert_eq!(b.balances["ann"], 20);
        assert_eq!(b.references, ["(none)"]);
    });
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_future_version_stops_the_projection_with_a_typed_error() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1)]).await;
    append(&store, &account("a"), vec![NewEvent::new(RawEvent::new("MoneyDeposited", 9, r#"{"amount":1}"#))]).await;
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let error = runner.run().await.unwrap_err();
    assert!(error.is_future_version(), "{error}");
    assert!(error.to_string().contains("position 2"), "{error}");
    assert!(matches!(handle.state(), RunState::Failed(_)));
    assert!(matches!(handle.wait_for_head(WAIT).await, Err(WaitError::Failed { .. })));
    assert!(!handle.status().await.unwrap().is_healthy(u64::MAX));
}

#[tokio::test]
async fn a_changed_identity_rebuilds_or_is_refused() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1), deposit(2)]).await;
    let checkpoints = InMemoryCheckpointStore::new();
    // A checkpoint at the head, stored by an older definition (another selection).
    let old = ProjectionIdentity::new("balances", 1, "0000000000000000");
    let head = store.head().await.unwrap();
    checkpoints.save(&SavedCheckpoint::new(old.clone(), head)).await.unwrap();

    let refusing = ProjectionOptions { on_identity_change: IdentityChange::Refuse, ..fast() };
    let runner = ProjectionRunner::new(Balances::default(), store.clone(), checkpoints.clone()).with_options(refusing);
    let error = runner.run().await.unwrap_err();
    assert!(matches!(error.as_ref(), ProjectionError::IdentityChanged { stored, .. } if *stored == old), "{error}");

    // Rebuild (the default): from the first event, never a silent resume at the old checkpoint.
    let runner = ProjectionRunner::new(Balances::default(), store.clone(), checkpoints.clone()).with_options(fast());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.read(|b| b.balances["a"]), 3);
    handle.stop();
    task.await.unwrap().unwrap();
    let saved = checkpoints.load("balances").await.unwrap().unwrap();
    assert_eq!(saved.identity, <Balances as Projection>::identity());
}

#[tokio::test]
async fn a_runner_whose_task_died_is_never_healthy() {
    let store = InMemoryStore::new();
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    task.abort();
    let _ = task.await;
    assert!(matches!(handle.state(), RunState::Abandoned));
    assert!(!handle.status().await.unwrap().is_healthy(u64::MAX));
    assert!(matches!(handle.wait_for(&Checkpoint::START, WAIT).await, Ok(())));
}

#[tokio::test]
async fn wait_for_times_out_when_nothing_runs() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1)]).await;
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let result = handle.wait_for_head(Duration::from_millis(20)).await;
    assert!(matches!(result, Err(WaitError::Timeout { .. })), "{result:?}");
    assert!(matches!(handle.state(), RunState::NotStarted));
    assert!(!handle.status().await.unwrap().is_healthy(u64::MAX));
    drop(runner);
}

/// Every deposit it handled: stream, version, position.
#[derive(Projection, Default, Debug)]
#[projection(name = "per_stream", events(MoneyDeposited))]
pub struct PerStream {
    seen: Vec<(StreamId, u64, u64)>,
}

impl Handle<MoneyDeposited> for PerStream {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        self.seen.push((event.stream.clone(), event.stream_version.0, event.position.0));
        Ok(())
    }
}

type PartitionHandle = es::projection::ProjectionHandle<PerStream, InMemoryStore>;
type RunTask = tokio::task::JoinHandle<Result<(), Arc<ProjectionError>>>;

fn start_partitions(
    store: &InMemoryStore,
    checkpoints: &InMemoryCheckpointStore,
    count: u32,
    options: &ProjectionOptions,
) -> Vec<(PartitionHandle, RunTask)> {
    Partition::all(count)
        .map(|partition| {
            let runner = ProjectionRunner::new(PerStream::default(), store.clone(), checkpoints.clone())
                .with_options(options.clone())
                .with_partition(partition);
            (runner.handle(), tokio::spawn(runner.run()))
        })
        .collect()
}

/// Each event handled once by the partition owning its stream, each stream's in order.
fn assert_each_event_once_in_stream_order(handles: &[PartitionHandle], events: usize) {
    let mut all = Vec::new();
    let mut owner: BTreeMap<String, u32> = BTreeMap::new();
    for handle in handles {
        let partition = handle.partition();
        let seen = handle.read(|p| p.seen.clone());
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for (stream, version, position) in seen {
            assert!(partition.owns(&stream), "{partition} handled {stream}");
            let previous = owner.insert(stream.to_string(), partition.index());
            assert!(previous.is_none_or(|p| p == partition.index()), "{stream} in two partitions");
            let before = last.insert(stream.to_string(), version).unwrap_or(0);
            assert_eq!(version, before + 1, "{stream} out of order in {partition}");
            all.push(position);
        }
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), events, "every event exactly once");
}

#[tokio::test]
async fn changing_the_partition_count_is_a_rebuild_and_the_runner_says_so() {
    let store = InMemoryStore::new();
    for n in 0..30 {
        append(&store, &account(&(n % 9).to_string()), vec![deposit(1)]).await;
    }
    let checkpoints = InMemoryCheckpointStore::new();
    let partitions = start_partitions(&store, &checkpoints, 4, &fast());
    for (handle, task) in partitions {
        handle.wait_for_head(WAIT).await.unwrap();
        handle.stop();
        task.await.unwrap().unwrap();
    }

    // Refused: every partition of the new count, not only partition 0, says why.
    let refusing = ProjectionOptions { on_identity_change: IdentityChange::Refuse, ..fast() };
    for (_, task) in start_partitions(&store, &checkpoints, 2, &refusing) {
        let error = task.await.unwrap().unwrap_err();
        assert!(matches!(error.as_ref(), ProjectionError::PartitionsChanged { stored: 4, current: 2, .. }), "{error}");
        assert!(error.to_string().contains("rebuild"), "{error}");
    }

    // Rebuilt: from the first event, each event once across the two.
    let partitions = start_partitions(&store, &checkpoints, 2, &fast());
    let handles: Vec<_> = partitions.iter().map(|(handle, _)| handle.clone()).collect();
    for handle in &handles {
        handle.wait_for_head(WAIT).await.unwrap();
        assert_eq!(handle.rebuilt(), Some(Rebuilt::PartitionsChanged { stored: 4, current: 2 }));
    }
    assert_each_event_once_in_stream_order(&handles, 30);
    for (handle, task) in partitions {
        handle.stop();
        task.await.unwrap().unwrap();
    }

    // Back to one runner: a rebuild too.
    let runner = ProjectionRunner::new(PerStream::default(), store.clone(), checkpoints.clone()).with_options(fast());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.rebuilt(), Some(Rebuilt::PartitionsChanged { stored: 2, current: 1 }));
    assert_eq!(handle.read(|p| p.seen.len()), 30);
    handle.stop();
    task.await.unwrap().unwrap();
    let saved = checkpoints.load("per_stream").await.unwrap().unwrap();
    assert_eq!(saved.identity, <PerStream as Projection>::identity());
}

/// A read model in the store's SQLite file: handlers keep their changes, and
/// `SqliteCheckpoints` writes them with the checkpoint in one transaction.
#[cfg(feature = "sqlite")]
#[derive(Projection, Default, Debug)]
#[projection(name = "sql_balances", events(MoneyDeposited))]
pub struct SqlBalances {
    pending: Vec<(String, u64)>,
    /// Fails on a deposit of this amount.
    fail_on: Option<u64>,
    /// Called with each deposit's amount before it is handled.
    on_deposit: Option<OnDeposit>,
}

/// What a test does while a deposit is handled.
#[cfg(feature = "sqlite")]
#[derive(Clone)]
pub struct OnDeposit(Arc<dyn Fn(u64) + Send + Sync>);

#[cfg(feature = "sqlite")]
impl std::fmt::Debug for OnDeposit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDeposit")
    }
}

#[cfg(feature = "sqlite")]
impl Handle<MoneyDeposited> for SqlBalances {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        if let Some(OnDeposit(hook)) = &self.on_deposit {
            hook(event.event.amount);
        }
        if self.fail_on == Some(event.event.amount) {
            return Err("refused".into());
        }
        self.pending.push((event.stream.id().to_owned(), event.event.amount));
        Ok(())
    }
}

#[cfg(feature = "sqlite")]
fn flush_balances(tx: &es_sqlite::rusqlite::Transaction<'_>, projection: &mut SqlBalances) -> Result<(), HandlerError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, total INTEGER NOT NULL, deposits INTEGER NOT NULL)",
    )?;
    for (account, amount) in projection.pending.drain(..) {
        tx.execute(
            "INSERT INTO balances (account, total, deposits) VALUES (?1, ?2, 1)
             ON CONFLICT (account) DO UPDATE SET total = total + excluded.total, deposits = deposits + 1",
            (account, i64::try_from(amount)?),
        )?;
    }
    Ok(())
}

#[cfg(feature = "sqlite")]
async fn balances_table(store: &es::SqliteStore) -> Vec<(String, i64, i64)> {
    type Error = Box<dyn std::error::Error + Send + Sync>;
    store
        .read(|tx| {
            let mut statement = tx.prepare("SELECT account, total, deposits FROM balances ORDER BY account")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok::<_, Error>(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

/// Runs a clean `SqlBalances` from its stored checkpoint until it has handled the head, then
/// stops it.
#[cfg(feature = "sqlite")]
async fn run_sql_balances_to_head(store: &es::SqliteStore, options: ProjectionOptions) {
    let checkpoints = es::SqliteCheckpoints::new(store.clone(), flush_balances).await.unwrap();
    let runner = ProjectionRunner::new(SqlBalances::default(), store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_stop_while_the_next_page_is_read_ahead_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = es::SqliteStore::open(dir.path().join("bank.db")).unwrap();
    // 40 deposits of 1..=40 on two accounts; full batches of 4, so the runner reads each next
    // page while it handles and commits the one before.
    for amount in 1..=40 {
        let stream = account(if amount % 2 == 0 { "even" } else { "odd" });
        store.append(&stream, ExpectedVersion::Any, vec![deposit(amount)]).await.unwrap();
    }
    let options = ProjectionOptions { batch_size: 4, ..fast() };

    // A stop while the deposit of 6 is handled: the batch [5 6 7 8] is committed, the page
    // [9 10 11 12] read ahead beside it is dropped unhandled.
    type Handle = es::projection::ProjectionHandle<SqlBalances, es::SqliteStore>;
    let slot: Arc<std::sync::OnceLock<Handle>> = Arc::default();
    let stopper = Arc::clone(&slot);
    let on_deposit = OnDeposit(Arc::new(move |amount| {
        if amount == 6 {
            stopper.get().expect("the handle is set before the run").stop();
        }
    }));
    let stopping = SqlBalances { on_deposit: Some(on_deposit), ..SqlBalances::default() };
    let checkpoints = es::SqliteCheckpoints::new(store.clone(), flush_balances).await.unwrap();
    let runner = ProjectionRunner::new(stopping, store.clone(), checkpoints).with_options(options.clone());
    let handle = runner.handle();
    assert!(slot.set(runner.handle()).is_ok());
    runner.run().await.unwrap();
    assert!(matches!(handle.state(), RunState::Stopped));
    assert_eq!(balances_table(&store).await, [("even".to_owned(), 20, 4), ("odd".to_owned(), 16, 4)]);

    // The next run starts after the committed batch: every deposit counted once.
    run_sql_balances_to_head(&store, options).await;
    assert_eq!(balances_table(&store).await, [("even".to_owned(), 420, 20), ("odd".to_owned(), 400, 20)]);
}

/// A vault's deposits; its read model is kept inline.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(MoneyDeposited))]
pub struct Vault {
    total: u64,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Apply<MoneyDeposited> for Vault {
    fn apply(&mut self, event: &MoneyDeposited) {
        self.total += event.amount;
    }
}

/// Vault totals, updated in the append's transaction; refuses deposits over 1000.
#[cfg(feature = "sqlite")]
struct VaultTotals;

#[cfg(feature = "sqlite")]
impl es::InlineProjection for VaultTotals {
    fn name(&self) -> &str {
        "vault_totals"
    }

    fn apply(&self, tx: &es_sqlite::rusqlite::Transaction<'_>, events: &[es::StoredEvent]) -> Result<(), HandlerError> {
        for record in events {
            let deposit = es::projection::decode_event::<MoneyDeposited>(record)?;
            tx.execute(
                "INSERT INTO vault_totals (vault, total, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (vault) DO UPDATE SET total = total + excluded.total, version = excluded.version",
                (record.stream.id(), i64::try_from(deposit.event.amount)?, i64::try_from(record.stream_version.0)?),
            )?;
            if deposit.event.amount > 1000 {
                return Err(format!("deposit of {} refused by the read model", deposit.event.amount).into());
            }
        }
        Ok(())
    }
}

/// Deposits 40, then 2, into vault `v`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn deposit_40_and_2<S: EventStore>(vaults: &Repository<Vault, S>) {
    for (amount, reference) in [(40, "a"), (2, "b")] {
        vaults
            .execute("v", |_| Ok::<_, std::convert::Infallible>(MoneyDeposited { amount, reference: reference.into() }))
            .await
            .unwrap();
    }
}

/// A deposit of 5000 fails the command with the inline projection's typed error.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn assert_a_big_deposit_is_refused<S: EventStore>(vaults: &Repository<Vault, S>) {
    let error = vaults
        .execute("v", |_| Ok::<_, std::convert::Infallible>(MoneyDeposited { amount: 5000, reference: "c".into() }))
        .await
        .unwrap_err();
    let store_error = match &error {
        es::repository::RepositoryError::Store(store_error) => store_error,
        other => panic!("unexpected {other}"),
    };
    assert!(
        matches!(store_error, es::StoreError::InlineProjection { projection, source }
            if projection == "vault_totals" && source.to_string().contains("5000")),
        "{store_error}"
    );
    assert!(store_error.to_string().contains("nothing was appended"), "{store_error}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn an_inline_projection_commits_with_the_command_or_fails_it_leaving_nothing() {
    type Error = Box<dyn std::error::Error + Send + Sync>;
    let store = es::SqliteStore::open_in_memory().unwrap();
    store
        .transaction(|tx| {
            tx.execute_batch(
                "CREATE TABLE vault_totals (vault TEXT PRIMARY KEY, total INTEGER NOT NULL, version INTEGER NOT NULL)",
            )?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    let inline = es::InlineStore::new(store.clone(), VaultTotals);
    let vaults = Repository::<Vault, _>::new(inline);
    let totals = |store: es::SqliteStore| async move {
        store
            .read(|tx| {
                let mut statement = tx.prepare("SELECT vault, total, version FROM vault_totals ORDER BY vault")?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
                Ok::<Vec<(String, i64, i64)>, Error>(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap()
    };

    // Committed together: the read model is up to date the moment the command returns.
    deposit_40_and_2(&vaults).await;
    assert_eq!(totals(store.clone()).await, [("v".to_owned(), 42, 2)]);

    // Failed together: a typed error, no event, no change (the row it wrote was rolled back).
    assert_a_big_deposit_is_refused(&vaults).await;
    assert_eq!(totals(store.clone()).await, [("v".to_owned(), 42, 2)]);
    assert_eq!(store.stream_version(&StreamId::new("Vault", "v")).await.unwrap(), Version(2));
    assert_eq!(vaults.load("v").await.unwrap().state.total, 42);
}

/// Vault totals in PostgreSQL, updated in the append's transaction; refuses deposits over 1000.
#[cfg(feature = "postgres")]
struct PgVaultTotals {
    table: String,
}

#[cfg(feature = "postgres")]
impl es::PostgresInline for PgVaultTotals {
    fn name(&self) -> &str {
        "vault_totals"
    }

    async fn apply(
        &self,
        tx: &es_postgres::tokio_postgres::Transaction<'_>,
        events: &[es::StoredEvent],
    ) -> Result<(), HandlerError> {
        use es_postgres::tokio_postgres::types::Type;
        let upsert = format!(
            "INSERT INTO {} (vault, total, version) VALUES ($1, $2, $3)
             ON CONFLICT (vault) DO UPDATE SET total = {0}.total + excluded.total, version = excluded.version",
            self.table
        );
        for record in events {
            let deposit = es::projection::decode_event::<MoneyDeposited>(record)?;
            let (amount, version) = (i64::try_from(deposit.event.amount)?, i64::try_from(record.stream_version.0)?);
            tx.execute_typed(
                &upsert,
                &[(&record.stream.id(), Type::TEXT), (&amount, Type::INT8), (&version, Type::INT8)],
            )
            .await?;
            if deposit.event.amount > 1000 {
                return Err(format!("deposit of {} refused by the read model", deposit.event.amount).into());
            }
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_inline_projection_commits_with_the_command_or_fails_it_leaving_nothing() {
    let schema = common::facade_schema("inline");
    let store = common::postgres_store(es::PostgresOptions::new().schema(schema.as_str())).await;
    let table = format!("\"{schema}\".vault_totals");
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (vault text PRIMARY KEY, total bigint NOT NULL, version bigint NOT NULL)"
        ))
        .await
        .unwrap();
    let totals = || async {
        let rows =
            client.query(&format!("SELECT vault, total, version FROM {table} ORDER BY vault"), &[]).await.unwrap();
        rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1), row.get::<_, i64>(2))).collect::<Vec<_>>()
    };
    let inline = es::PostgresInlineStore::new(store.clone(), PgVaultTotals { table: table.clone() });
    let vaults = Repository::<Vault, _>::new(inline);

    // Committed together: the read model is up to date the moment the command returns.
    deposit_40_and_2(&vaults).await;
    assert_eq!(totals().await, [("v".to_owned(), 42, 2)]);

    // Failed together: a typed error, no event, no change (the row it wrote was rolled back).
    assert_a_big_deposit_is_refused(&vaults).await;
    assert_eq!(totals().await, [("v".to_owned(), 42, 2)]);
    assert_eq!(store.stream_version(&StreamId::new("Vault", "v")).await.unwrap(), Version(2));
    assert_eq!(store.head().await.unwrap(), vaults.store().head().await.unwrap());
    assert_eq!(vaults.load("v").await.unwrap().state.total, 42);

    // A version conflict through the inline store is a conflict, and writes nothing either.
    let stale = es::PostgresInlineStore::new(store.clone(), PgVaultTotals { table: table.clone() })
        .append(&StreamId::new("Vault", "v"), ExpectedVersion::Exact(Version(1)), vec![deposit(1)])
        .await;
    assert!(stale.is_err_and(|error| error.is_conflict()));
    assert_eq!(totals().await, [("v".to_owned(), 42, 2)]);
    client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}

/// How [`LostAcks`] fails the second batch's commit.
#[derive(Clone, Copy, PartialEq)]
enum CommitFault {
    /// The commit lands, then reports an error (its acknowledgement was lost).
    LandsThenFails,
    /// The commit fails without landing.
    FailsWithoutLanding,
    /// The commit fails without landing, and the checkpoint store cannot be asked afterwards.
    FailsAndCannotBeAsked,
}

/// In-memory checkpoints whose second commit goes wrong as `fault` says.
#[derive(Clone)]
struct LostAcks {
    inner: InMemoryCheckpointStore,
    fault: CommitFault,
    commits: Arc<std::sync::atomic::AtomicU32>,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl<P: Send + 'static> es::projection::CommitBatch<P> for LostAcks {
    async fn load(&self, name: &str) -> Result<Option<SavedCheckpoint>, es::projection::CheckpointStoreError> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(es::projection::CheckpointStoreError::new("the connection is gone"));
        }
        CheckpointStore::load(&self.inner, name).await
    }

    async fn commit(
        &self,
        _: &Arc<std::sync::Mutex<P>>,
        saved: &SavedCheckpoint,
    ) -> Result<(), es::projection::CheckpointStoreError> {
        if self.commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) != 1 {
            return self.inner.save(saved).await;
        }
        let lost = es::projection::CheckpointStoreError::new("connection lost during COMMIT");
        match self.fault {
            CommitFault::LandsThenFails => self.inner.save(saved).await.and(Err(lost)),
            CommitFault::FailsWithoutLanding => Err(lost),
            CommitFault::FailsAndCannotBeAsked => {
                self.broken.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(lost)
            }
        }
    }
}

/// A batch whose commit reported an error is never committed again blindly: the stored
/// checkpoint tells whether it landed; if it did, the runner goes on and nothing repeats;
/// if it did not, or nobody can tell, the runner stops and says which.
#[tokio::test]
async fn a_commit_whose_acknowledgement_was_lost_is_reported_as_such_not_retried() {
    use es::projection::CommitOutcome;
    for fault in [CommitFault::LandsThenFails, CommitFault::FailsWithoutLanding, CommitFault::FailsAndCannotBeAsked] {
        let store = InMemoryStore::new();
        append(&store, &account("a"), (1..=30).map(deposit).collect()).await;
        let checkpoints =
            LostAcks { inner: InMemoryCheckpointStore::new(), fault, commits: Arc::default(), broken: Arc::default() };
        let stored = checkpoints.inner.clone();
        let runner = ProjectionRunner::new(Balances::default(), store.clone(), checkpoints).with_options(fast());
        let handle = runner.handle();
        let task = tokio::spawn(runner.run());
        let head = store.head().await.unwrap();
        let second_batch = store.read_all(&Checkpoint::START, &Balances::filter(), 14).await.unwrap().next;
        match fault {
            CommitFault::LandsThenFails => {
                handle.wait_for(&head, Duration::from_secs(10)).await.expect("it goes on after a landed commit");
                handle.read(|b| assert_eq!(b.positions, (1..=30).collect::<Vec<u64>>(), "each event once"));
                handle.stop();
                task.await.unwrap().expect("stopped");
            }
            CommitFault::FailsWithoutLanding | CommitFault::FailsAndCannotBeAsked => {
                let error = task.await.unwrap().expect_err("a failed commit stops the runner");
                let ProjectionError::CommitFailed { outcome, checkpoint, .. } = &*error else {
                    panic!("not a CommitFailed: {error}")
                };
                let expected = if fault == CommitFault::FailsWithoutLanding {
                    CommitOutcome::NotCommitted
                } else {
                    CommitOutcome::Unknown
                };
                assert_eq!(*outcome, expected, "{error}");
                assert_eq!(*checkpoint, second_batch, "{error}");
                let kept = CheckpointStore::load(&stored, Balances::NAME).await.unwrap().expect("first batch");
                assert!(kept.checkpoint < second_batch, "the failed batch was not committed again");
                assert!(error.to_string().contains("committing the batch"), "{error}");
            }
        }
    }
}

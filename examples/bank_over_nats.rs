//! The bank account in one process, a balances read model fed over NATS JetStream in another.
//!
//! ```sh
//! cargo run --features nats --example bank_over_nats -- bank bank.db          # commands, and the relay publishing them
//! cargo run --features nats --example bank_over_nats -- balances balances.db  # the read model, fed over JetStream
//! ```
//!
//! `bank` runs a few rounds of commands on the SQLite store `bank.db` (accounts opened, money
//! paid in and taken out, one deposit stored as old code wrote it) while a relay publishes
//! every event to the JetStream stream `BANK_EXAMPLE` (subjects `bank.>`), and exits once
//! JetStream has acknowledged them all. `balances` feeds a `#[derive(Projection)]` read model
//! in `balances.db` from that stream, prints the balances after each batch it commits, and
//! exits when nothing arrived for 3 seconds (30 before the first event); run again, it resumes without counting anything
//! twice. Run them in two terminals at once, or one after the other. `cleanup` deletes the
//! stream. The server is `NATS_URL`, or 127.0.0.1:4222.

#[path = "bank_account/domain.rs"]
mod domain;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::{AccountClosed, AccountOpened, BankAccount, MoneyDeposited, MoneyWithdrawn};
use es::nats::async_nats;
use es::nats::sqlite::{SqliteReadModel, relay_checkpoints};
use es::nats::{Consumer, Relay, StreamSettings};
use es::prelude::*;
use es::{EventStore, ExpectedVersion, NewEvent, Projection, RawEvent, SqliteStore, StreamId};
use es_sqlite::rusqlite::Transaction;

fn settings() -> StreamSettings {
    StreamSettings::new("BANK_EXAMPLE", "bank")
}

async fn jetstream() -> Result<async_nats::jetstream::Context, Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url).await.map_err(|error| format!("NATS is unreachable at {url}: {error}"))?;
    Ok(async_nats::jetstream::new(client))
}

/// Process 1: the bank account's commands, and the relay that publishes what they commit.
async fn bank(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open(path)?;
    let relay = Relay::new(store.clone(), relay_checkpoints(store.clone()).await?, jetstream().await?, settings());
    let relayed = relay.handle();
    let relay_task = tokio::spawn(relay.run());

    let accounts = Repository::<BankAccount, _>::new(store.clone()).with_retry(RetryPolicy::default());
    let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
    accounts.execute(&ann, |a| a.open("ann", 100)).await?;
    accounts.execute(&bob, |a| a.open("bob", 10)).await?;
    for round in 1..=5u64 {
        accounts.execute(&ann, |a| a.deposit(10 * round, "salary")).await?;
        accounts.execute(&bob, |a| a.withdraw(1)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A deposit as code from before `reference` stored it: the read model upcasts it.
    let version = store.stream_version(&StreamId::of::<BankAccount>(&bob)).await?;
    let old = NewEvent::new(RawEvent::new("MoneyDeposited", 1, r#"{"amount":25}"#));
    store.append(&StreamId::of::<BankAccount>(&bob), ExpectedVersion::Exact(version), vec![old]).await?;
    accounts.execute(&ann, BankAccount::close).await?;

    let head = store.head().await?;
    if !relayed.wait_for(&head, Duration::from_secs(30)).await {
        return Err(format!("the relay did not publish everything: {:?}", relayed.state()).into());
    }
    let (published, duplicates) = relayed.published();
    println!("published {published} events to stream BANK_EXAMPLE ({duplicates} duplicates dropped by JetStream)");
    relayed.stop();
    relay_task.await??;
    Ok(())
}

/// A change to one account's row, kept until the batch is committed.
enum Change {
    Opened { account: String, owner: String, cents: u64 },
    Moved { account: String, cents: i64 },
    Closed { account: String },
}

/// Balances by account, in SQLite: handlers note changes, `flush` writes them with the
/// applied versions in one transaction.
#[derive(Projection, Default)]
#[projection(name = "balances", events(AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed))]
struct Balances {
    pending: Vec<Change>,
    /// When a batch was last committed.
    committed: Arc<Mutex<Option<Instant>>>,
}

impl Handle<AccountOpened> for Balances {
    fn handle(&mut self, event: &Envelope<AccountOpened>) -> Result<(), HandlerError> {
        let (account, owner, cents) =
            (event.stream.id().to_owned(), event.event.owner.clone(), event.event.initial_deposit);
        self.pending.push(Change::Opened { account, owner, cents });
        Ok(())
    }
}

impl Handle<MoneyDeposited> for Balances {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        let cents = i64::try_from(event.event.amount)?;
        self.pending.push(Change::Moved { account: event.stream.id().to_owned(), cents });
        Ok(())
    }
}

impl Handle<MoneyWithdrawn> for Balances {
    fn handle(&mut self, event: &Envelope<MoneyWithdrawn>) -> Result<(), HandlerError> {
        let cents = -i64::try_from(event.event.amount)?;
        self.pending.push(Change::Moved { account: event.stream.id().to_owned(), cents });
        Ok(())
    }
}

impl Handle<AccountClosed> for Balances {
    fn handle(&mut self, event: &Envelope<AccountClosed>) -> Result<(), HandlerError> {
        self.pending.push(Change::Closed { account: event.stream.id().to_owned() });
        Ok(())
    }
}

fn flush(tx: &Transaction<'_>, balances: &mut Balances) -> Result<(), HandlerError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, owner TEXT NOT NULL, cents INTEGER NOT NULL, closed INTEGER NOT NULL DEFAULT 0)",
    )?;
    let changes = balances.pending.len();
    for change in balances.pending.drain(..) {
        match change {
            Change::Opened { account, owner, cents } => tx.execute(
                "INSERT INTO balances (account, owner, cents) VALUES (?1, ?2, ?3)",
                (account, owner, i64::try_from(cents)?),
            )?,
            Change::Moved { account, cents } => {
                tx.execute("UPDATE balances SET cents = cents + ?2 WHERE account = ?1", (account, cents))?
            }
            Change::Closed { account } => tx.execute("UPDATE balances SET closed = 1 WHERE account = ?1", [account])?,
        };
    }
    let mut statement = tx.prepare("SELECT owner, cents, closed FROM balances ORDER BY owner, account")?;
    let rows: Vec<String> = statement
        .query_map([], |row| {
            let (owner, cents, closed): (String, i64, bool) = (row.get(0)?, row.get(1)?, row.get(2)?);
            Ok(format!("{owner} {cents}{}", if closed { " (closed)" } else { "" }))
        })?
        .collect::<Result<_, _>>()?;
    let noun = if changes == 1 { "event" } else { "events" };
    println!("{changes:>3} {noun} applied; balances: {}", rows.join(", "));
    *balances.committed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    Ok(())
}

/// Process 2: the balances read model, fed over JetStream, until nothing arrives for a while.
async fn balances(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = SqliteReadModel::new(SqliteStore::open(path)?, flush).await?;
    let committed = Arc::new(Mutex::new(None));
    let projection = Balances { pending: Vec::new(), committed: Arc::clone(&committed) };
    let consumer = Consumer::new(projection, model, jetstream().await?, settings());
    println!("consuming stream BANK_EXAMPLE as durable consumer `{}` into {path}", consumer.durable_name());
    let handle = consumer.handle();
    let task = tokio::spawn(consumer.run());
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if task.is_finished() {
            break;
        }
        // Up to 30 s for the first event (time to start `bank` in another terminal), then 3 s
        // of quiet after the last batch.
        let idle = match *committed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(last) => last.elapsed() > Duration::from_secs(3),
            None => started.elapsed() > Duration::from_secs(30),
        };
        if idle {
            handle.stop();
            break;
        }
    }
    task.await?.map_err(|error| error.to_string())?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["bank", path] => bank(path).await,
        ["bank"] => bank("bank.db").await,
        ["balances", path] => balances(path).await,
        ["balances"] => balances("balances.db").await,
        ["cleanup"] => {
            jetstream().await?.delete_stream("BANK_EXAMPLE").await?;
            println!("stream BANK_EXAMPLE deleted");
            Ok(())
        }
        _ => Err("usage: bank_over_nats bank [bank.db] | balances [balances.db] | cleanup".into()),
    }
}

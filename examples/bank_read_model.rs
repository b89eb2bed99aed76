//! A read model in SQLite, kept up to date by a projection, in the same file as the events:
//! a balance per account and a transaction history. Commands run, the example waits for the
//! projection (read your writes) and queries the two tables, then rebuilds the read model from
//! the first event with a progress bar, and checks that the rebuild gives the same tables and
//! sends no alert a second time.
//!
//! Run with `cargo run --example bank_read_model [path/to/bank.db]`.

#[path = "bank_account/domain.rs"]
mod domain;

use std::time::Duration;

use domain::{AccountClosed, AccountOpened, BankAccount, MoneyDeposited, MoneyWithdrawn};
use es::prelude::*;
use es::projection::{ProjectionRunner, RebuildLease, is_replay};
use es::{EventStore, SqliteCheckpoints, SqliteStore};
use es_sqlite::rusqlite::Transaction;
use indicatif::{ProgressBar, ProgressStyle};

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS account_balances (
    account TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    balance INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS account_transactions (
    position INTEGER PRIMARY KEY NOT NULL,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    reference TEXT NOT NULL,
    balance_after INTEGER NOT NULL
);";

/// Withdrawals from this amount on raise an alert to the owner: a side effect, sent once.
const ALERT_FROM: u64 = 2_000;

/// One change the handlers keep until `flush` writes it with the batch's checkpoint.
#[derive(Debug)]
enum Change {
    Opened { account: String, owner: String },
    Moved { position: u64, account: String, kind: &'static str, amount: i64, reference: String },
    Closed { account: String },
}

/// The read model: the changes of the batch in hand, and the alerts this run sent.
#[derive(Projection, Default, Debug)]
#[projection(
    name = "bank_read_model",
    version = 1,
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed)
)]
pub struct BankReadModel {
    changes: Vec<Change>,
    alerts_sent: Vec<String>,
}

impl BankReadModel {
    fn moved<E>(
        &mut self,
        event: &Envelope<E>,
        kind: &'static str,
        amount: u64,
        reference: &str,
    ) -> Result<(), HandlerError> {
        self.changes.push(Change::Moved {
            position: event.position.0,
            account: event.stream.id().to_owned(),
            kind,
            amount: i64::try_from(amount)?,
            reference: reference.to_owned(),
        });
        Ok(())
    }
}

impl Handle<AccountOpened> for BankReadModel {
    fn handle(&mut self, event: &Envelope<AccountOpened>) -> Result<(), HandlerError> {
        let account = event.stream.id().to_owned();
        self.changes.push(Change::Opened { account, owner: event.event.owner.clone() });
        self.moved(event, "opening", event.event.initial_deposit, "")
    }
}

impl Handle<MoneyDeposited> for BankReadModel {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        self.moved(event, "deposit", event.event.amount, &event.event.reference)
    }
}

impl Handle<MoneyWithdrawn> for BankReadModel {
    fn handle(&mut self, event: &Envelope<MoneyWithdrawn>) -> Result<(), HandlerError> {
        // A rebuild replays every withdrawal: the owner was alerted the first time.
        if event.event.amount >= ALERT_FROM && !is_replay() {
            self.alerts_sent.push(format!("{} withdrew {}", event.stream.id(), event.event.amount));
        }
        self.moved(event, "withdrawal", event.event.amount, "")
    }
}

impl Handle<AccountClosed> for BankReadModel {
    fn handle(&mut self, event: &Envelope<AccountClosed>) -> Result<(), HandlerError> {
        self.changes.push(Change::Closed { account: event.stream.id().to_owned() });
        Ok(())
    }
}

/// Writes a batch's changes, in the transaction that stores its checkpoint.
fn flush(tx: &Transaction<'_>, model: &mut BankReadModel) -> Result<(), HandlerError> {
    for change in model.changes.drain(..) {
        match change {
            Change::Opened { account, owner } => {
                tx.execute(
                    "INSERT INTO account_balances (account, owner, balance) VALUES (?1, ?2, 0)",
                    (account, owner),
                )?;
            }
            Change::Moved { position, account, kind, amount, reference } => {
                let delta = if kind == "withdrawal" { -amount } else { amount };
                tx.execute("UPDATE account_balances SET balance = balance + ?2 WHERE account = ?1", (&account, delta))?;
                tx.execute(
                    "INSERT INTO account_transactions (position, account, kind, amount, reference, balance_after)
                     SELECT ?1, account, ?2, ?3, ?4, balance FROM account_balances WHERE account = ?5",
                    (i64::try_from(position)?, kind, amount, reference, &account),
                )?;
            }
            Change::Closed { account } => {
                tx.execute("UPDATE account_balances SET closed = 1 WHERE account = ?1", [account])?;
            }
        }
    }
    Ok(())
}

/// Empties the read model when a rebuild starts, in the transaction of its first checkpoint.
fn reset(tx: &Transaction<'_>) -> Result<(), HandlerError> {
    tx.execute_batch("DELETE FROM account_transactions; DELETE FROM account_balances;")?;
    Ok(())
}

type Flush = fn(&Transaction<'_>, &mut BankReadModel) -> Result<(), HandlerError>;

async fn read_model_runner(
    store: &SqliteStore,
) -> Result<ProjectionRunner<BankReadModel, SqliteStore, SqliteCheckpoints<Flush>>, es::StoreError> {
    let checkpoints = SqliteCheckpoints::new(store.clone(), flush as Flush).await?.with_reset(reset);
    Ok(ProjectionRunner::new(BankReadModel::default(), store.clone(), checkpoints))
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Every balance, by owner.
async fn balances(store: &SqliteStore) -> Result<Vec<(String, i64, bool)>, Error> {
    store
        .read(|tx| {
            let mut query = tx.prepare("SELECT owner, balance, closed FROM account_balances ORDER BY owner")?;
            let rows = query.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

/// The last `n` transactions of `owner`'s account, newest first.
async fn history(store: &SqliteStore, owner: &str, n: i64) -> Result<Vec<(String, i64, i64)>, Error> {
    let owner = owner.to_owned();
    store
        .read(move |tx| {
            let mut query = tx.prepare(
                "SELECT t.kind, t.amount, t.balance_after FROM account_transactions t
                 JOIN account_balances b ON b.account = t.account
                 WHERE b.owner = ?1 ORDER BY t.position DESC LIMIT ?2",
            )?;
            let rows = query.query_map((owner, n), |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

async fn transaction_count(store: &SqliteStore) -> Result<i64, Error> {
    store.read(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM account_transactions", [], |row| row.get(0))?)).await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "bank_read_model.db".to_owned());
    let store = SqliteStore::open(&path)?;
    store.transaction(|tx| Ok::<_, Error>(tx.execute_batch(TABLES)?)).await?;
    let accounts = Repository::<BankAccount, _>::new(store.clone()).with_retry(RetryPolicy::default());

    // The projection follows the store from its checkpoint (the first event on a new file).
    let runner = read_model_runner(&store).await?;
    let read_model = runner.handle();
    let running = tokio::spawn(runner.run());

    // Commands: twelve customers, a few hundred payments, one closed account.
    let owners = ["ann", "bob", "cleo", "dan", "eve", "finn", "gus", "hana", "ivo", "jun", "kai", "lea"];
    // Owners get this run's tag, so that runs on one file tell their accounts apart.
    let tag = Uuid::new_v4().simple().to_string()[..6].to_owned();
    let mut ids = Vec::new();
    for owner in owners {
        let id = Uuid::now_v7();
        accounts.execute(&id, |a| a.open(format!("{owner}-{tag}"), 1_000)).await?;
        ids.push(id);
    }
    for round in 1..=25u64 {
        for (n, id) in ids.iter().enumerate() {
            let n = n as u64;
            accounts.execute(id, |a| a.deposit(100 * (n + 1) + round, format!("salary {round}"))).await?;
            if round % 5 == 0 {
                accounts.execute(id, |a| a.withdraw(300 + n * 10)).await?;
            }
        }
    }
    accounts.execute(&ids[1], |a| a.withdraw(ALERT_FROM)).await?;
    accounts.execute(&ids[11], BankAccount::close).await?;

    // Read your writes: wait until the projection has handled every event committed so far.
    read_model.wait_for(&store.head().await?, Duration::from_secs(30)).await?;
    let ann = format!("ann-{tag}");
    let before = balances(&store).await?;
    let mine: Vec<_> = before.iter().filter(|(owner, ..)| owner.ends_with(&tag)).collect();
    println!("balances ({} accounts in {path}, {} of this run):", before.len(), mine.len());
    for (owner, balance, closed) in &mine {
        println!("  {owner:<12} {balance:>8}{}", if *closed { "  (closed)" } else { "" });
    }
    println!("{ann}'s last transactions:");
    for (kind, amount, balance_after) in history(&store, &ann, 3).await? {
        println!("  {kind:<10} {amount:>6} -> {balance_after}");
    }
    let alerts = read_model.read(|model| model.alerts_sent.clone());
    println!("alerts sent: {alerts:?}");
    read_model.stop();
    running.await??;

    // Rebuild: empty the tables and replay every event, with a progress bar.
    let transactions = transaction_count(&store).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("rebuilding {bar:40} {pos}/{len} events {msg}")?);
    let shown = bar.clone();
    // The store's lease makes it one rebuild at a time, whichever process asks.
    let runner = read_model_runner(&store)
        .await?
        .with_rebuild_lease(store.clone(), RebuildLease::default())
        .on_progress(move |progress| {
            shown.set_length(progress.total);
            shown.set_position(progress.done);
            shown.set_message(format!("({:.0} events/s)", progress.events_per_second));
        });
    let rebuilt = runner.handle();
    let rebuilding = tokio::spawn(runner.rebuild());
    rebuilt.wait_for(&store.head().await?, Duration::from_secs(60)).await?;
    bar.finish();
    let progress = rebuilt.rebuild_progress().ok_or("the rebuild reported no progress")?;
    println!("rebuilt {} events in {:.2?}", progress.done, progress.elapsed);
    let alerts_again = rebuilt.read(|model| model.alerts_sent.len());
    rebuilt.stop();
    rebuilding.await??;

    let after = balances(&store).await?;
    if after != before || transaction_count(&store).await? != transactions {
        return Err("the rebuilt read model differs from the one kept up to date".into());
    }
    if alerts_again != 0 {
        return Err(format!("the rebuild sent {alerts_again} alerts again").into());
    }
    println!("the rebuilt tables match, and no alert was sent twice");
    Ok(())
}

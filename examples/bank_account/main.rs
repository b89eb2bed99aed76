//! The bank account on the embedded SQLite store (or the store `DATABASE_URL` names): commands
//! decide, the repository appends with optimistic concurrency and snapshots, time travel loads
//! an old state, and history written by older code (a version-1 `MoneyDeposited`) loads
//! through the upcaster.
//!
//! Run with `cargo run --example bank_account [path/to/bank.db]`; with `DATABASE_URL` set to a
//! `postgres://` URL, `cargo run --features postgres --example bank_account` runs it on
//! PostgreSQL (schema `es`).

mod domain;

use domain::{AccountError, BankAccount};
use es::prelude::*;
use es::{AnyStore, EventStore, ExpectedVersion, NewEvent, RawEvent, RepositoryError, StreamId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "bank.db".to_owned());
    // One line chooses the store: `DATABASE_URL` when it is set, the SQLite file otherwise.
    let store = AnyStore::connect_from_env_or(&path).await?;
    let accounts = Repository::<BankAccount, _>::new(store.clone()).with_retry(RetryPolicy::default());

    let id = Uuid::now_v7();
    accounts.execute(&id, |a| a.open("ann", 100)).await?;
    accounts.execute(&id, |a| a.deposit(50, "salary")).await?;
    accounts.execute(&id, |a| a.withdraw(30)).await?;
    match accounts.execute(&id, |a| a.withdraw(500)).await {
        Err(RepositoryError::Command(refused @ AccountError::InsufficientFunds { .. })) => {
            println!("withdraw 500 refused: {refused}");
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    let closing = accounts.execute(&id, BankAccount::close).await?;
    println!("closing committed {} events", closing.len());

    let stream = StreamId::of::<BankAccount>(&id);
    println!("\nstream {stream} as stored in {path}:");
    for record in store.read_stream(&stream, Version(1), 100).await? {
        println!(
            "  #{} {{\"type\":\"{}\",\"version\":{},\"payload\":{}}}",
            record.stream_version, record.event.event_type, record.event.schema_version, record.event.payload
        );
    }
    let now = accounts.load(&id).await?;
    let then = accounts.load_at(&id, Version(1)).await?;
    println!("now (version {}): {:?}", now.version, now.state);
    println!("at version 1:     {:?}", then.state);

    // History written before `MoneyDeposited` had a reference: a version-1 payload, as old
    // code stored it.
    let bob = Uuid::now_v7();
    accounts.execute(&bob, |a| a.open("bob", 10)).await?;
    let old = NewEvent::new(RawEvent::new("MoneyDeposited", 1, r#"{"amount":25}"#));
    store.append(&StreamId::of::<BankAccount>(&bob), ExpectedVersion::Exact(Version(1)), vec![old]).await?;
    for envelope in accounts.history(&bob).await? {
        println!("bob #{}: {:?}", envelope.stream_version, envelope.event);
    }
    println!("bob's balance after old history: {}", accounts.load(&bob).await?.balance);
    Ok(())
}

//! The bank account on the embedded SQLite store: commands decide, the repository appends
//! with optimistic concurrency and snapshots, time travel loads an old state, and history
//! written by older code (a version-1 `MoneyDeposited`) loads through the upcaster.
//!
//! Run with `cargo run --example bank_account [path/to/bank.db]`.

mod domain;

use domain::{AccountError, BankAccount};
use es::prelude::*;
use es::{ExpectedVersion, NewEvent, RepositoryError, StreamId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "bank.db".to_owned());
    let store = SqliteStore::open(&path)?;
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

    let stream = Repository::<BankAccount, SqliteStore>::stream_of(&id);
    println!("\nstream {stream} as stored in {path}:");
    for record in store.read_stream(&stream, Version(1), 100).await? {
        println!(
            "  #{} {{\"type\":\"{}\",\"version\":{},\"payload\":{}}}",
            record.stream_version, record.event_type, record.schema_version, record.payload
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
    let old = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "MoneyDeposited".into(),
        schema_version: 1,
        payload: r#"{"amount":25}"#.into(),
        metadata: Metadata::new(),
    };
    let bob_stream = StreamId::new("BankAccount", bob.to_string());
    store.append(&bob_stream, ExpectedVersion::Exact(Version(1)), vec![old]).await?;
    for envelope in accounts.history(&bob).await? {
        println!("bob #{}: {:?}", envelope.stream_version, envelope.event);
    }
    println!("bob's balance after old history: {}", accounts.load(&bob).await?.balance);
    Ok(())
}

//! The bank account, in memory: commands decide, events change the state, and history written
//! by older code (a version-1 `MoneyDeposited`) loads through the upcaster.
//!
//! Run with `cargo run --example bank_account`.

mod domain;

use domain::{AccountError, BankAccount, BankAccountEvent};
use es::prelude::*;

/// Runs one command on the state, applies what it decided and prints each event as a store
/// would record it.
fn execute<R: IntoEvents<BankAccountEvent>>(
    account: &mut BankAccount,
    version: &mut Version,
    command: impl FnOnce(&BankAccount) -> Result<R, AccountError>,
) -> Result<(), Box<dyn std::error::Error>> {
    for event in command(account)?.into_events() {
        account.apply(&event);
        *version = version.next();
        println!(
            "stored #{version}: {{\"type\":\"{}\",\"version\":{},\"payload\":{}}}",
            event.event_type(),
            event.schema_version(),
            event.encode()?
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut account, mut version) = (BankAccount::default(), Version::NONE);
    execute(&mut account, &mut version, |a| a.open("ann", 100))?;
    execute(&mut account, &mut version, |a| a.deposit(50, "salary"))?;
    execute(&mut account, &mut version, |a| a.withdraw(30))?;
    if let Err(refused) = execute(&mut account, &mut version, |a| a.withdraw(500)) {
        println!("withdraw 500 refused: {refused}");
    }
    execute(&mut account, &mut version, BankAccount::close)?;
    println!("state at version {version}: {account:?}\n");

    // History written before `MoneyDeposited` had a reference: version 1 payloads.
    let old_history = [
        RawEvent::new("AccountOpened", 1, r#"{"owner":"bob","initial_deposit":10}"#),
        RawEvent::new("MoneyDeposited", 1, r#"{"amount":25}"#),
    ];
    let mut bob = BankAccount::default();
    for raw in &old_history {
        let event = BankAccountEvent::decode(&raw.event_type, raw.schema_version, &raw.payload)?;
        println!("loaded {} v{} as {event:?}", raw.event_type, raw.schema_version);
        bob.apply(&event);
    }
    println!("bob's balance after old history: {}", bob.balance);
    Ok(())
}

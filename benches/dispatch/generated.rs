//! The bench domain written with es: `#[event]` structs, `#[derive(Aggregate)]`, one
//! `Apply<E>` per event. Replay goes through the generated `Apply<AccountEvent>`, decoding
//! through the generated `AccountEvent::decode`.

use std::hint::black_box;

use es::EventSet;
use es::prelude::*;
use es::{DecodeErrorKind, UpcastError};

use crate::workload::Stored;

/// An account was opened for `owner`.
#[event(version = 1)]
pub struct AccountOpened {
    /// Who owns the account.
    pub owner: String,
    /// What was paid in on opening, in cents.
    pub initial_deposit: u64,
}

/// Money was paid in. Version 2 added `reference` (typed upcast from version 1).
#[event(version = 2, upcast_from = MoneyDepositedV1)]
pub struct MoneyDeposited {
    /// How much, in cents.
    pub amount: u64,
    /// The payer's reference.
    pub reference: String,
}

/// The first shape of `MoneyDeposited`.
#[event(name = "MoneyDeposited", version = 1)]
pub struct MoneyDepositedV1 {
    /// How much, in cents.
    pub amount: u64,
}

impl From<MoneyDepositedV1> for MoneyDeposited {
    fn from(old: MoneyDepositedV1) -> Self {
        Self { amount: old.amount, reference: String::new() }
    }
}

/// Money was taken out. Version 2 added `fee` (JSON upcast from version 1).
#[event(version = 2, upcast_json(v1 = withdrawal_v1_to_v2))]
pub struct MoneyWithdrawn {
    /// How much, in cents.
    pub amount: u64,
    /// What the bank charged for it, in cents.
    pub fee: u64,
}

/// Version 1 of `MoneyWithdrawn` had no fee: it was free.
fn withdrawal_v1_to_v2(mut payload: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    let object = payload.as_object_mut().ok_or_else(|| UpcastError::new("expected an object"))?;
    object.insert("fee".to_owned(), serde_json::Value::from(0_u64));
    Ok(payload)
}

/// The account was frozen: no money moves until it is unfrozen.
#[event(version = 1)]
pub struct AccountFrozen {
    /// Why.
    pub reason: String,
}

/// The account was unfrozen.
#[event(version = 1)]
pub struct AccountUnfrozen {}

/// The account was closed for good.
#[event(version = 1)]
pub struct AccountClosed {}

/// A bank account, its state folded from its events.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(
    id = Uuid,
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountFrozen, AccountUnfrozen, AccountClosed),
)]
pub struct Account {
    /// Who owns it.
    pub owner: String,
    /// Opened and not yet closed.
    pub open: bool,
    /// Frozen now.
    pub frozen: bool,
    /// Why it is frozen (empty when it is not).
    pub frozen_reason: String,
    /// Closed for good.
    pub closed: bool,
    /// The balance in cents.
    pub balance: u64,
    /// Fees charged so far, in cents.
    pub fees: u64,
    /// The number of deposits.
    pub deposits: u32,
    /// The number of withdrawals.
    pub withdrawals: u32,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
        self.open = true;
        self.balance = event.initial_deposit;
    }
}

impl Apply<MoneyDeposited> for Account {
    fn apply(&mut self, event: &MoneyDeposited) {
        self.balance += event.amount;
        self.deposits += 1;
    }
}

impl Apply<MoneyWithdrawn> for Account {
    fn apply(&mut self, event: &MoneyWithdrawn) {
        self.balance -= event.amount + event.fee;
        self.fees += event.fee;
        self.withdrawals += 1;
    }
}

impl Apply<AccountFrozen> for Account {
    fn apply(&mut self, event: &AccountFrozen) {
        self.frozen = true;
        self.frozen_reason.clone_from(&event.reason);
    }
}

impl Apply<AccountUnfrozen> for Account {
    fn apply(&mut self, _: &AccountUnfrozen) {
        self.frozen = false;
        self.frozen_reason.clear();
    }
}

impl Apply<AccountClosed> for Account {
    fn apply(&mut self, _: &AccountClosed) {
        self.open = false;
        self.closed = true;
    }
}

/// Benchmark A, es side: folds every stream into a fresh `Account` through the generated
/// dispatch; returns the sum of the final balances.
#[inline(never)]
pub fn replay_generated(streams: &[Vec<AccountEvent>]) -> u64 {
    let mut total = 0;
    for stream in streams {
        let mut account = Account::default();
        for event in stream {
            account.apply(event);
        }
        total += black_box(&account).balance;
    }
    total
}

/// Benchmark B, es side: decodes every stored record with the generated
/// `AccountEvent::decode` (upcasting old versions) and applies it; returns the sum of the
/// final balances.
///
/// # Errors
/// The first record that does not decode.
#[inline(never)]
pub fn decode_apply_generated(streams: &[Vec<Stored>]) -> Result<u64, DecodeErrorKind> {
    let mut total = 0;
    for stream in streams {
        let mut account = Account::default();
        for record in stream {
            let event = AccountEvent::decode(&record.event_type, record.schema_version, &record.payload)?;
            account.apply(&event);
        }
        total += black_box(&account).balance;
    }
    Ok(total)
}

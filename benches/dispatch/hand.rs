//! The same domain written by hand, without es: serde-derived structs, an enum, a `match` that
//! applies each event and a decoder that dispatches on the stored type name and version.
//! Field names, state logic and upcasting are those of `generated.rs`, line for line.

use std::fmt;
use std::hint::black_box;

use serde::{Deserialize, Serialize};

use crate::workload::Stored;

/// An account was opened for `owner`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AccountOpened {
    /// Who owns the account.
    pub owner: String,
    /// What was paid in on opening, in cents.
    pub initial_deposit: u64,
}

/// Money was paid in (version 2).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MoneyDeposited {
    /// How much, in cents.
    pub amount: u64,
    /// The payer's reference.
    pub reference: String,
}

/// Money was paid in (version 1, no reference).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MoneyDepositedV1 {
    /// How much, in cents.
    pub amount: u64,
}

impl From<MoneyDepositedV1> for MoneyDeposited {
    fn from(old: MoneyDepositedV1) -> Self {
        Self { amount: old.amount, reference: String::new() }
    }
}

/// Money was taken out (version 2).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MoneyWithdrawn {
    /// How much, in cents.
    pub amount: u64,
    /// What the bank charged for it, in cents.
    pub fee: u64,
}

/// Version 1 of `MoneyWithdrawn` had no fee: it was free.
fn withdrawal_v1_to_v2(mut payload: serde_json::Value) -> Result<serde_json::Value, DecodeError> {
    let object = payload.as_object_mut().ok_or(DecodeError::Upcast("expected an object"))?;
    object.insert("fee".to_owned(), serde_json::Value::from(0_u64));
    Ok(payload)
}

/// The account was frozen.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AccountFrozen {
    /// Why.
    pub reason: String,
}

/// The account was unfrozen.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AccountUnfrozen {}

/// The account was closed for good.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AccountClosed {}

/// Every event of [`Account`], written by hand.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// [`AccountOpened`]
    AccountOpened(AccountOpened),
    /// [`MoneyDeposited`]
    MoneyDeposited(MoneyDeposited),
    /// [`MoneyWithdrawn`]
    MoneyWithdrawn(MoneyWithdrawn),
    /// [`AccountFrozen`]
    AccountFrozen(AccountFrozen),
    /// [`AccountUnfrozen`]
    AccountUnfrozen(AccountUnfrozen),
    /// [`AccountClosed`]
    AccountClosed(AccountClosed),
}

/// Why a stored record did not decode.
#[derive(Debug)]
pub enum DecodeError {
    /// No event has this type name.
    UnknownType,
    /// A schema version no code reads.
    Version {
        /// The stored version.
        found: u32,
    },
    /// The JSON does not fit the struct.
    Payload(serde_json::Error),
    /// The JSON upcaster refused the payload.
    Upcast(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType => f.write_str("unknown event type"),
            Self::Version { found } => write!(f, "unknown schema version {found}"),
            Self::Payload(error) => write!(f, "the payload does not fit: {error}"),
            Self::Upcast(why) => write!(f, "upcasting failed: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<serde_json::Error> for DecodeError {
    fn from(error: serde_json::Error) -> Self {
        Self::Payload(error)
    }
}

impl AccountEvent {
    /// Reads a stored `(type, version, payload)`, upcasting old versions.
    ///
    /// # Errors
    /// An unknown type, an unknown version or a payload that does not fit.
    pub fn decode(event_type: &str, schema_version: u32, payload: &str) -> Result<Self, DecodeError> {
        Ok(match event_type {
            "AccountOpened" => match schema_version {
                1 => Self::AccountOpened(serde_json::from_str(payload)?),
                found => return Err(DecodeError::Version { found }),
            },
            "MoneyDeposited" => match schema_version {
                2 => Self::MoneyDeposited(serde_json::from_str(payload)?),
                1 => Self::MoneyDeposited(serde_json::from_str::<MoneyDepositedV1>(payload)?.into()),
                found => return Err(DecodeError::Version { found }),
            },
            "MoneyWithdrawn" => match schema_version {
                2 => Self::MoneyWithdrawn(serde_json::from_str(payload)?),
                1 => {
                    let v1: serde_json::Value = serde_json::from_str(payload)?;
                    Self::MoneyWithdrawn(serde_json::from_value(withdrawal_v1_to_v2(v1)?)?)
                }
                found => return Err(DecodeError::Version { found }),
            },
            "AccountFrozen" => match schema_version {
                1 => Self::AccountFrozen(serde_json::from_str(payload)?),
                found => return Err(DecodeError::Version { found }),
            },
            "AccountUnfrozen" => match schema_version {
                1 => Self::AccountUnfrozen(serde_json::from_str(payload)?),
                found => return Err(DecodeError::Version { found }),
            },
            "AccountClosed" => match schema_version {
                1 => Self::AccountClosed(serde_json::from_str(payload)?),
                found => return Err(DecodeError::Version { found }),
            },
            _ => return Err(DecodeError::UnknownType),
        })
    }
}

/// A bank account, its state folded from its events.
#[derive(Default, Debug, Clone, PartialEq)]
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

impl Account {
    /// Folds one event into the state.
    pub fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened(event) => {
                self.owner.clone_from(&event.owner);
                self.open = true;
                self.balance = event.initial_deposit;
            }
            AccountEvent::MoneyDeposited(event) => {
                self.balance += event.amount;
                self.deposits += 1;
            }
            AccountEvent::MoneyWithdrawn(event) => {
                self.balance -= event.amount + event.fee;
                self.fees += event.fee;
                self.withdrawals += 1;
            }
            AccountEvent::AccountFrozen(event) => {
                self.frozen = true;
                self.frozen_reason.clone_from(&event.reason);
            }
            AccountEvent::AccountUnfrozen(_) => {
                self.frozen = false;
                self.frozen_reason.clear();
            }
            AccountEvent::AccountClosed(_) => {
                self.open = false;
                self.closed = true;
            }
        }
    }
}

/// Benchmark A, baseline: folds every stream into a fresh `Account` through the hand-written
/// `match`; returns the sum of the final balances.
#[inline(never)]
pub fn replay_hand(streams: &[Vec<AccountEvent>]) -> u64 {
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

/// Benchmark B, baseline: decodes every stored record with the hand-written decoder and applies
/// it; returns the sum of the final balances.
///
/// # Errors
/// The first record that does not decode.
#[inline(never)]
pub fn decode_apply_hand(streams: &[Vec<Stored>]) -> Result<u64, DecodeError> {
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

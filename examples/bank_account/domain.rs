//! The bank account domain: four events (one of them in its second version), one aggregate.
//! Shared by the example and by the tests in `tests/`, which check every rule.

use es::prelude::*;

/// An account was opened for `owner`.
#[event(version = 1)]
pub struct AccountOpened {
    /// Who owns the account.
    pub owner: String,
    /// What was paid in on opening.
    pub initial_deposit: u64,
}

/// Money was paid in. Version 2 added `reference`.
#[event(version = 2, upcast_from = MoneyDepositedV1)]
pub struct MoneyDeposited {
    /// How much, in cents.
    pub amount: u64,
    /// The payer's reference.
    pub reference: String,
}

/// The first shape of `MoneyDeposited`, kept only so that old history still loads.
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

/// Money was taken out.
#[event(version = 1)]
pub struct MoneyWithdrawn {
    /// How much, in cents.
    pub amount: u64,
}

/// The account was closed; it takes no more money.
#[event(version = 1)]
pub struct AccountClosed {}

/// Why a command on a [`BankAccount`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// `open` on an account that is already open.
    #[error("the account is already open")]
    AlreadyOpen,
    /// A command other than `open` on an account never opened.
    #[error("the account is not open")]
    NotOpen,
    /// Any command on a closed account.
    #[error("the account is closed")]
    Closed,
    /// A deposit or withdrawal of nothing.
    #[error("the amount must be more than zero")]
    ZeroAmount,
    /// A withdrawal of more than the balance.
    #[error("insufficient funds: the balance is {balance}, {requested} was requested")]
    InsufficientFunds {
        /// The balance at the time.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
}

/// A customer's bank account.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(
    id = Uuid,
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed),
    error = AccountError,
    snapshot(every = 100, version = 1),
)]
pub struct BankAccount {
    /// Who owns it (empty until opened).
    pub owner: String,
    /// Opened and not yet closed.
    pub open: bool,
    /// Closed for good.
    pub closed: bool,
    /// The balance in cents.
    pub balance: u64,
}

impl Apply<AccountOpened> for BankAccount {
    fn apply(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
        self.open = true;
        self.balance = event.initial_deposit;
    }
}

impl Apply<MoneyDeposited> for BankAccount {
    fn apply(&mut self, event: &MoneyDeposited) {
        self.balance += event.amount;
    }
}

impl Apply<MoneyWithdrawn> for BankAccount {
    fn apply(&mut self, event: &MoneyWithdrawn) {
        self.balance -= event.amount;
    }
}

impl Apply<AccountClosed> for BankAccount {
    fn apply(&mut self, _: &AccountClosed) {
        self.open = false;
        self.closed = true;
    }
}

impl BankAccount {
    fn ensure_open(&self) -> Result<(), AccountError> {
        if self.closed {
            Err(AccountError::Closed)
        } else if !self.open {
            Err(AccountError::NotOpen)
        } else {
            Ok(())
        }
    }

    /// Opens the account with a first deposit (which may be zero).
    pub fn open(&self, owner: impl Into<String>, initial_deposit: u64) -> Result<AccountOpened, AccountError> {
        if self.closed {
            return Err(AccountError::Closed);
        }
        if self.open {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(AccountOpened { owner: owner.into(), initial_deposit })
    }

    /// Pays money in.
    pub fn deposit(&self, amount: u64, reference: impl Into<String>) -> Result<MoneyDeposited, AccountError> {
        self.ensure_open()?;
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        Ok(MoneyDeposited { amount, reference: reference.into() })
    }

    /// Takes money out; never more than the balance.
    pub fn withdraw(&self, amount: u64) -> Result<MoneyWithdrawn, AccountError> {
        self.ensure_open()?;
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds { balance: self.balance, requested: amount });
        }
        Ok(MoneyWithdrawn { amount })
    }

    /// Closes the account, paying out what is left first.
    pub fn close(&self) -> Result<(Option<MoneyWithdrawn>, AccountClosed), AccountError> {
        self.ensure_open()?;
        let payout = (self.balance > 0).then_some(MoneyWithdrawn { amount: self.balance });
        Ok((payout, AccountClosed {}))
    }
}

use es::prelude::*;

#[event(name = "Deposited", version = 1)]
pub struct DepositedV0 {
    pub amount: u64,
}

#[event(version = 1, upcast_from = DepositedV0)]
pub struct Deposited {
    pub amount: u64,
}

impl From<DepositedV0> for Deposited {
    fn from(old: DepositedV0) -> Self {
        Self { amount: old.amount }
    }
}

fn main() {}

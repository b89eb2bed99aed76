use es::prelude::*;

#[event(name = "Deposited", version = 1)]
pub struct DepositedV1 {
    pub amount: u64,
}

#[event(name = "Deposited", version = 2, upcast_from = DepositedV1)]
pub struct DepositedV2 {
    pub amount: u64,
    pub reference: String,
}

impl From<DepositedV1> for DepositedV2 {
    fn from(old: DepositedV1) -> Self {
        Self { amount: old.amount, reference: String::new() }
    }
}

#[event(version = 3, upcast_from = DepositedV1)]
pub struct Deposited {
    pub amount: u64,
    pub reference: String,
    pub booked: bool,
}

impl From<DepositedV2> for Deposited {
    fn from(old: DepositedV2) -> Self {
        Self { amount: old.amount, reference: old.reference, booked: false }
    }
}

fn main() {}

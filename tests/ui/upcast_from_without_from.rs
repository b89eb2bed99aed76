use es::prelude::*;

#[event(name = "Deposited", version = 1)]
pub struct DepositedV1 {
    pub amount: u64,
}

#[event(version = 2, upcast_from = DepositedV1)]
pub struct Deposited {
    pub amount: u64,
    pub reference: String,
}

fn main() {}

use es::UpcastError;
use es::prelude::*;
use serde_json::Value;

#[event(name = "Deposited", version = 1)]
pub struct DepositedV1 {
    pub amount: u64,
}

fn one_to_two(value: Value) -> Result<Value, UpcastError> {
    Ok(value)
}

#[event(version = 2, upcast_from = DepositedV1, upcast_json(v1 = one_to_two))]
pub struct Deposited {
    pub amount: u64,
    pub reference: String,
}

impl From<DepositedV1> for Deposited {
    fn from(old: DepositedV1) -> Self {
        Self { amount: old.amount, reference: String::new() }
    }
}

fn main() {}

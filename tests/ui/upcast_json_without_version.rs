use es::UpcastError;
use es::prelude::*;
use serde_json::Value;

fn one_to_two(value: Value) -> Result<Value, UpcastError> {
    Ok(value)
}

#[event(version = 2, upcast_json(one_to_two))]
pub struct Deposited {
    pub amount: u64,
}

fn main() {}

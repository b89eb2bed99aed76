use es::UpcastError;
use es::prelude::*;
use serde_json::Value;

fn one_to_two(value: Value) -> Result<Value, UpcastError> {
    Ok(value)
}

fn three_to_four(value: Value) -> Result<Value, UpcastError> {
    Ok(value)
}

#[event(version = 4, upcast_json(v1 = one_to_two, v3 = three_to_four))]
pub struct Deposited {
    pub amount: u64,
}

fn main() {}

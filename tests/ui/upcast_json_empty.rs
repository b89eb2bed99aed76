use es::prelude::*;

#[event(version = 2, upcast_json())]
pub struct Deposited {
    pub amount: u64,
}

fn main() {}

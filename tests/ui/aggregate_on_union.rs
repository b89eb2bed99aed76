use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Aggregate, Clone, Copy)]
#[aggregate(id = Uuid, events(Opened))]
pub union Account {
    open: u8,
    balance: u64,
}

fn main() {}

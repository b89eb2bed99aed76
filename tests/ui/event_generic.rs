use es::prelude::*;

#[event(version = 1)]
pub struct Opened<T> {
    pub owner: T,
}

fn main() {}

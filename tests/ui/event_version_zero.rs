use es::prelude::*;

#[event(version = 0)]
pub struct Opened {
    pub owner: String,
}

fn main() {}

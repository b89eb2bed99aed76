use es::prelude::*;

#[event(version = 1, name = "Opened", version = 2)]
pub struct Opened {
    pub owner: String,
}

fn main() {}

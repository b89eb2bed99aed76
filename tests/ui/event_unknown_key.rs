use es::prelude::*;

#[event(version = 1, renamed = "Opened")]
pub struct Opened {
    pub owner: String,
}

fn main() {}

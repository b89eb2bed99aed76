use es::prelude::*;

#[event(name = "Opened")]
pub struct Opened {
    pub owner: String,
}

fn main() {}

use es::prelude::*;

#[derive(Debug)]
#[event(version = 1)]
pub struct Opened {
    pub owner: String,
}

fn main() {}

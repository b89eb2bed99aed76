use es::prelude::*;

#[event(version = 1)]
pub enum Opened {
    Yes,
    No,
}

fn main() {}

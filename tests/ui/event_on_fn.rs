use es::prelude::*;

#[event(version = 1)]
pub fn opened() {}

fn main() {
    opened();
}

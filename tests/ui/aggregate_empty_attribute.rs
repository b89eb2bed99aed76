use es::prelude::*;

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate()]
pub struct Account {
    open: bool,
}

fn main() {}

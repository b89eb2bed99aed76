use es::prelude::*;

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid)]
pub struct Account {
    open: bool,
}

fn main() {}

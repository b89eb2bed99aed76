use es::prelude::*;

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events())]
pub struct Account {
    open: bool,
}

fn main() {}

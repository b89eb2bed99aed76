use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

pub struct Closed {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened, Closed))]
pub struct Account {
    open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<Closed> for Account {
    fn apply(&mut self, _: &Closed) {
        self.open = false;
    }
}

fn main() {}

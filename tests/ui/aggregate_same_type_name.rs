use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[event(name = "Opened", version = 1)]
pub struct Reopened {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened, Reopened))]
pub struct Account {
    open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<Reopened> for Account {
    fn apply(&mut self, _: &Reopened) {
        self.open = true;
    }
}

fn main() {}

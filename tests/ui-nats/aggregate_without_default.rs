use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Aggregate, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened))]
pub struct Account {
    open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

fn main() {}

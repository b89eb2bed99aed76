use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[event(version = 1)]
pub struct Greeted {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened, Greeted), retired(Greeted))]
pub struct Account {
    open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<Greeted> for Account {
    fn apply(&mut self, _: &Greeted) {}
}

fn main() {}

use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[event(version = 1)]
pub struct Closed {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(events(Opened Closed), id = Uuid)]
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

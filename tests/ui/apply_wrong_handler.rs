use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[event(version = 1)]
pub struct Closed {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened, Closed))]
pub struct Account {
    open: bool,
}

#[es::apply]
impl Account {
    fn opened(&self, _: &Opened) {}

    fn closed(&mut self, _: &Closed) {
        self.open = false;
    }
}

fn main() {}

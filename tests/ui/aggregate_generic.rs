use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened))]
pub struct Account<T> {
    open: T,
}

impl<T: Default> Apply<Opened> for Account<T> {
    fn apply(&mut self, _: &Opened) {
        self.open = T::default();
    }
}

fn main() {}

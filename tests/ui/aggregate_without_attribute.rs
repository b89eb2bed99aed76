use es::prelude::*;
use es::testing::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Aggregate, Default, Debug, Clone)]
pub struct Account {
    open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

fn main() {
    let _ = Account::given_nothing();
}

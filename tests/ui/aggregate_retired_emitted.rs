use es::prelude::*;
use es::testing::*;

#[event(version = 1)]
pub struct Opened {}

/// Replaced by a richer event; stored ones must still load.
#[event(version = 1)]
pub struct Greeted {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened), retired(Greeted))]
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

impl Account {
    pub fn greet(&self) -> Result<Greeted, std::convert::Infallible> {
        Ok(Greeted {})
    }
}

fn main() {
    let _ = Account::given(Opened {}).when(|account| account.greet());
}

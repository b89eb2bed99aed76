use es::prelude::*;
use es::testing::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Debug, Clone, PartialEq)]
pub struct Greeted {}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(Opened))]
pub struct Account {
    open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Account {
    pub fn greet(&self) -> Result<Greeted, std::convert::Infallible> {
        Ok(Greeted {})
    }
}

fn main() {
    let _ = Account::given(Opened {}).when(|account| account.greet());
}

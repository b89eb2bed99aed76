use es::prelude::*;

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

pub async fn run(accounts: &Repository<Account, es::InMemoryStore>, id: Uuid) {
    let _ = accounts.execute(&id, |account| account.greet()).await;
}

fn main() {}

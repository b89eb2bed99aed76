use es::prelude::*;
use es::testing::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error("already open")]
    AlreadyOpen,
}

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
    pub fn open(&self) -> Result<Opened, AccountError> {
        if self.open {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(Opened {})
    }
}

fn main() {
    Account::given_nothing().when(|account| account.open()).then(Opened {});
}

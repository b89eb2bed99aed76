use es::prelude::*;

#[event(name = "Deposited", version = 1)]
pub struct DepositedV1 {
    pub amount: u64,
}

#[event(version = 2, upcast_from = DepositedV1)]
pub struct Deposited {
    pub amount: u64,
    pub reference: String,
}

impl From<DepositedV1> for Deposited {
    fn from(old: DepositedV1) -> Self {
        Self { amount: old.amount, reference: String::new() }
    }
}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(DepositedV1, Deposited))]
pub struct Account {
    balance: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

fn main() {}

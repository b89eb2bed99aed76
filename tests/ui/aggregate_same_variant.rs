use es::prelude::*;

mod shop {
    use es::prelude::*;

    #[event(version = 1)]
    pub struct Placed {}
}

mod warehouse {
    use es::prelude::*;

    #[event(name = "WarehousePlaced", version = 1)]
    pub struct Placed {}
}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = Uuid, events(shop::Placed, warehouse::Placed))]
pub struct Order {
    placed: u32,
}

#[es::apply]
impl Order {
    fn shop(&mut self, _: &shop::Placed) {
        self.placed += 1;
    }

    fn warehouse(&mut self, _: &warehouse::Placed) {
        self.placed += 1;
    }
}

fn main() {}

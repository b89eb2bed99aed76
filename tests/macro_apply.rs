//! `#[es::apply]` (all the handlers in one `impl` block), variants named with `as`, and
//! snapshot state derived with the prelude's serde derives and no serde dependency of its own.

use es::prelude::*;
use es::testing::*;

mod shop {
    use es::prelude::*;

    /// An order was placed in the shop.
    #[event(version = 1)]
    pub struct Placed {
        pub items: u32,
    }
}

mod warehouse {
    use es::prelude::*;

    /// An order was placed with the warehouse: same struct name, another event.
    #[event(name = "WarehousePlaced", version = 1)]
    pub struct Placed {
        pub pallets: u32,
    }
}

/// The order was shipped.
#[event(version = 1)]
pub struct Shipped {}

/// An order, with its handlers in one `#[es::apply]` block.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "es::serde")]
#[aggregate(
    id = Uuid,
    events(shop::Placed as OrderPlaced, warehouse::Placed as PalletsPlaced, Shipped),
    snapshot(every = 10, version = 1),
)]
pub struct Order {
    items: u32,
    pallets: u32,
    shipped: bool,
}

#[es::apply]
impl Order {
    /// Items add up.
    fn placed(&mut self, event: &shop::Placed) {
        self.items += event.items;
    }

    fn pallets(&mut self, event: &warehouse::Placed) {
        self.pallets += event.pallets;
    }

    fn shipped(&mut self, _: &Shipped) {
        self.shipped = true;
    }
}

impl Order {
    fn ship(&self) -> Result<Shipped, std::convert::Infallible> {
        Ok(Shipped {})
    }
}

#[test]
fn the_apply_block_generates_one_impl_per_event() {
    Order::given((shop::Placed { items: 2 }, warehouse::Placed { pallets: 1 }, shop::Placed { items: 3 }))
        .when(Order::ship)
        .then(Shipped {})
        .and_state_is(Order { items: 5, pallets: 1, shipped: true });
}

#[test]
fn variants_take_the_names_given_with_as() {
    let events = [
        OrderEvent::OrderPlaced(shop::Placed { items: 1 }),
        OrderEvent::PalletsPlaced(warehouse::Placed { pallets: 2 }),
    ];
    let types: Vec<&str> = events.iter().map(EventSet::event_type).collect();
    assert_eq!(types, ["Placed", "WarehousePlaced"]);
    assert_eq!(OrderEvent::event_types(), ["Placed", "WarehousePlaced", "Shipped"]);
}

#[test]
fn snapshot_state_round_trips_with_the_prelude_derives() {
    let order = Order { items: 5, pallets: 1, shipped: true };
    let Some(Ok(state)) = order.encode_snapshot() else { panic!("the state encodes") };
    assert_eq!(state, r#"{"items":5,"pallets":1,"shipped":true}"#);
    let Some(Ok(back)) = Order::decode_snapshot(&state) else { panic!("the state decodes") };
    assert_eq!(back, order);
}

use es::prelude::*;

/// Serialized, but not described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "es::__private::serde")]
pub struct Address {
    pub street: String,
}

#[event(version = 1)]
pub struct Moved {
    pub to: Address,
}

fn main() {}

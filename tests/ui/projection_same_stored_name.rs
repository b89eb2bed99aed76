use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

/// Stored under the same name as `Opened`, in another aggregate's streams.
#[event(name = "Opened", version = 1)]
pub struct ShopOpened {}

#[derive(Projection, Default)]
#[projection(name = "openings", events(Opened, ShopOpened))]
pub struct Openings {}

impl Handle<Opened> for Openings {
    fn handle(&mut self, _: &Envelope<Opened>) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl Handle<ShopOpened> for Openings {
    fn handle(&mut self, _: &Envelope<ShopOpened>) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

pub struct Shop;

#[derive(Projection, Default)]
#[projection(events(Opened in Shop))]
pub struct Openings {}

impl Handle<Opened> for Openings {
    fn handle(&mut self, _: &Envelope<Opened>) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

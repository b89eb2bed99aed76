use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Projection, Default)]
#[projection(name = "accounts", events(Opened, Opened))]
pub struct Accounts {}

impl Handle<Opened> for Accounts {
    fn handle(&mut self, _: &Envelope<Opened>) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

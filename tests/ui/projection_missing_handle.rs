use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[event(version = 1)]
pub struct Closed {}

#[derive(Projection, Default)]
#[projection(name = "accounts", events(Opened, Closed))]
pub struct Accounts {
    open: u32,
}

impl Handle<Opened> for Accounts {
    fn handle(&mut self, _: &Envelope<Opened>) -> Result<(), HandlerError> {
        self.open += 1;
        Ok(())
    }
}

fn main() {}

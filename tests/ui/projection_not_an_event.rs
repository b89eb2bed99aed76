use es::prelude::*;

pub struct NotAnEvent {}

#[derive(Projection, Default)]
#[projection(events(NotAnEvent))]
pub struct Accounts {}

fn main() {}

use es::prelude::*;

#[event(version = 1)]
pub struct Opened {}

#[derive(Projection, Default)]
#[projection(name = "", version = 0, evnts(Opened), name = "again")]
pub struct Accounts {}

#[derive(Projection, Default)]
#[projection(name = "empty", events())]
pub struct Empty {}

#[derive(Projection, Default)]
pub struct NoAttribute {}

fn main() {}

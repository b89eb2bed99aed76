//! Code generation: the expanders only read a checked model.

pub mod aggregate;
pub mod apply;
pub mod event;
pub mod event_list;
pub mod projection;
pub mod schema;

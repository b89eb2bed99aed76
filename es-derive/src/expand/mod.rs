//! Code generation, one module per macro.

pub mod aggregate;
pub mod event;

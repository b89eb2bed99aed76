//! Schema docs for es, rendered from what `#[event]` and `#[derive(Aggregate)]` record.
//!
//! A [`System`] lists the schemas of a set of aggregates. From it, [`markdown`] writes one
//! readable page, [`json_schema`] a JSON Schema (draft 2020-12) per event version, [`asyncapi`]
//! an AsyncAPI 3.0 document, and [`lock`] compares it with a committed lock file so that an
//! event version that already exists cannot change shape unnoticed.
//!
//! Users reach all of it through the facade, as `es::schema::{System, markdown, json_schema,
//! asyncapi, lock}` (feature `schema-docs`, on by default).

pub mod asyncapi;
pub mod json_schema;
pub mod lock;
pub mod markdown;
mod system;

pub use system::{AggregateList, System};

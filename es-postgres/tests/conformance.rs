//! The whole store conformance suite on PostgreSQL, each test in a schema of its own.

mod common;

es_core::conformance_suite!(|test: &str| {
    let test = test.to_owned();
    async move { common::store(&test).await }
});

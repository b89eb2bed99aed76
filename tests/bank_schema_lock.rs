//! The schema lock of the bank domain, as a project adds it: one line against the committed
//! `tests/schema.lock.json` (written with `ES_SCHEMA_LOCK=update cargo test --all-features`, so
//! it holds the JSON Schemas too; checked field by field without the feature).

#[allow(dead_code)]
#[path = "../examples/bank_account/domain.rs"]
mod domain;

#[test]
fn the_bank_events_match_the_lock() {
    es::schema::lock::assert_up_to_date(
        &es::schema::System::of::<(domain::BankAccount,)>("the bank"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schema.lock.json"),
    );
}

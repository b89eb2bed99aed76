//! Compile-fail cases of `#[event]` and `#[derive(Aggregate)]`: each file under `tests/ui/`
//! holds one misuse, beside the error it must produce.

#[rustversion::attr(not(stable(1.95)), ignore = "UI snapshots are recorded with Rust 1.95")]
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

/// With feature `json-schema`, a type nested in an event without `JsonSchema` is an error that
/// names it.
#[cfg(feature = "json-schema")]
#[rustversion::attr(not(stable(1.95)), ignore = "UI snapshots are recorded with Rust 1.95")]
#[test]
fn ui_json_schema() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui-json-schema/*.rs");
}

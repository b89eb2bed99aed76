//! Compile-fail cases of `#[event]` and `#[derive(Aggregate)]`: each file under `tests/ui/`
//! holds one misuse, beside the error it must produce.

#[rustversion::attr(not(stable(1.95)), ignore = "UI snapshots are recorded with Rust 1.95")]
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    if cfg!(feature = "nats") {
        // async-nats (feature `nats`) has an enum variant named `Default`, and with two items of
        // that name in the build rustc names the trait `std::default::Default`: the one case
        // whose message names it has a snapshot of its own in `tests/ui-nats/`.
        let mut paths: Vec<_> = std::fs::read_dir("tests/ui")
            .expect("tests/ui")
            .map(|entry| entry.expect("tests/ui").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .filter(|path| !std::path::Path::new("tests/ui-nats").join(path.file_name().unwrap()).exists())
            .collect();
        paths.sort();
        for path in paths {
            cases.compile_fail(path);
        }
        cases.compile_fail("tests/ui-nats/*.rs");
    } else {
        cases.compile_fail("tests/ui/*.rs");
    }
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

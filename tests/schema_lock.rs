//! The schema lock: a round trip through its file, every breaking change detected with a
//! message that names the event, the version, the field and what to do, and compatible changes
//! accepted only through the explicit update step.
//!
//! Each module below is one state of the same code base: the same aggregate (`"account"`) and
//! the same stored event names, changed in one way. (Written out in each module: a `macro_rules!`
//! that declares the aggregate trips over the derive's hygiene.)

use es::schema::System;
use es::schema::lock::{self, Breaking, Change, Lock, LockError, Mode};

/// A nested type, stored inside `Opened`.
#[derive(Debug, Clone, PartialEq, es::prelude::Serialize, es::prelude::Deserialize)]
#[serde(crate = "es::serde")]
#[cfg_attr(feature = "json-schema", derive(es::JsonSchema), schemars(crate = "es::__private::schemars"))]
pub struct Address {
    /// The street.
    pub street: String,
}

/// Another nested type, of another name.
#[derive(Debug, Clone, PartialEq, es::prelude::Serialize, es::prelude::Deserialize)]
#[serde(crate = "es::serde")]
#[cfg_attr(feature = "json-schema", derive(es::JsonSchema), schemars(crate = "es::__private::schemars"))]
pub struct PostalAddress {
    /// The lines.
    pub lines: Vec<String>,
}

/// The released code: what the lock was written from.
mod released {
    use es::Apply;
    use es::prelude::*;

    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
    }

    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }

    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

mod field_removed {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub address: super::Address,
    }
    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

mod type_changed {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: i64,
        pub address: super::Address,
    }
    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

mod renamed {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub initial_deposit: u64,
        pub address: super::Address,
    }
    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

mod renamed_with_serde {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        #[serde(rename = "deposit")]
        pub initial_deposit: u64,
        pub address: super::Address,
    }
    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

mod required_added {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
        pub branch: String,
    }
    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

mod nested_changed {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::PostalAddress,
    }
    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

mod event_removed {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
}

/// Version 1 of `Deposited` reused for another shape.
mod version_reused {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
    }
    /// Deposited, with a currency: should have been version 2.
    #[event(version = 1)]
    pub struct Deposited {
        pub cents: i64,
        pub currency: String,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

/// Version 2 of `Deposited` with no way to read version 1.
mod version_without_upcaster {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
    }
    /// Deposited.
    #[event(version = 2)]
    pub struct Deposited {
        pub amount: u64,
        pub reference: String,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

/// Compatible: version 2 of `Deposited` with an optional field and an upcaster, a new event, and
/// an optional field added to version 1 of `Opened`.
mod compatible {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
        pub note: Option<String>,
    }
    /// Deposited, version 2.
    #[event(version = 2, upcast_from = DepositedV1)]
    pub struct Deposited {
        pub amount: u64,
        pub reference: Option<String>,
    }
    /// Deposited, version 1.
    #[event(name = "Deposited", version = 1)]
    pub struct DepositedV1 {
        pub amount: u64,
    }
    impl From<DepositedV1> for Deposited {
        fn from(old: DepositedV1) -> Self {
            Self { amount: old.amount, reference: None }
        }
    }
    /// Closed: a new event.
    #[event(version = 1)]
    pub struct Closed {}
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited, Closed))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
    impl Apply<Closed> for Account {
        fn apply(&mut self, _: &Closed) {}
    }
}

/// Later still: version 1 of `Deposited` is read only as raw JSON now.
mod raw_json {
    use es::__private::serde_json::{Value, json};
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
        pub note: Option<String>,
    }
    /// Deposited, version 2.
    #[event(version = 2, upcast_json(v1 = deposited_v1_to_v2))]
    pub struct Deposited {
        pub amount: u64,
        pub reference: Option<String>,
    }
    fn deposited_v1_to_v2(mut v1: Value) -> Result<Value, es::UpcastError> {
        let object = v1.as_object_mut().ok_or_else(|| es::UpcastError::new("version 1 is an object"))?;
        object.insert("reference".into(), json!(null));
        Ok(v1)
    }
    /// Closed.
    #[event(version = 1)]
    pub struct Closed {}
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened, Deposited, Closed))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
    impl Apply<Closed> for Account {
        fn apply(&mut self, _: &Closed) {}
    }
}

/// `Deposited` retired: still read and applied, no longer emitted.
mod retired {
    use es::Apply;
    use es::prelude::*;
    /// Opened.
    #[event(version = 1)]
    pub struct Opened {
        pub owner: String,
        pub deposit: u64,
        pub address: super::Address,
    }
    /// Deposited.
    #[event(version = 1)]
    pub struct Deposited {
        pub amount: u64,
    }
    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Opened), retired(Deposited))]
    pub struct Account {}
    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {}
    }
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
}

/// A nested type that keeps its name and changes inside: before and after.
mod inside_before {
    use es::Apply;
    use es::prelude::*;

    /// Where to.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(crate = "es::serde")]
    #[cfg_attr(feature = "json-schema", derive(es::JsonSchema), schemars(crate = "es::__private::schemars"))]
    pub struct Address {
        /// The street.
        pub street: String,
    }

    /// Moved.
    #[event(version = 1)]
    pub struct Moved {
        pub to: Address,
    }

    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Moved))]
    pub struct Account {}
    impl Apply<Moved> for Account {
        fn apply(&mut self, _: &Moved) {}
    }
}

mod inside_after {
    use es::Apply;
    use es::prelude::*;

    /// Where to, now with a required house number.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(crate = "es::serde")]
    #[cfg_attr(feature = "json-schema", derive(es::JsonSchema), schemars(crate = "es::__private::schemars"))]
    pub struct Address {
        /// The street.
        pub street: String,
        /// The house number.
        pub number: u32,
    }

    /// Moved.
    #[event(version = 1)]
    pub struct Moved {
        pub to: Address,
    }

    /// The account.
    #[derive(Aggregate, Default, Debug, Clone)]
    #[aggregate(id = u64, name = "account", events(Moved))]
    pub struct Account {}
    impl Apply<Moved> for Account {
        fn apply(&mut self, _: &Moved) {}
    }
}

fn system<A: es::Aggregate>() -> System {
    System::new("test").with::<A>()
}

fn lock_of<A: es::Aggregate>() -> Lock {
    Lock::of(&system::<A>())
}

/// The breaking changes from the released lock to `A`'s code.
fn breaking<A: es::Aggregate>() -> Vec<Breaking> {
    lock::compare(&lock_of::<released::Account>(), &lock_of::<A>()).breaking
}

/// The one breaking change from the released lock, and its message.
fn one_break<A: es::Aggregate>() -> (Breaking, String) {
    let mut found = breaking::<A>();
    assert_eq!(found.len(), 1, "expected one breaking change, found {found:#?}");
    let one = found.remove(0);
    let message = one.to_string();
    (one, message)
}

#[test]
fn a_lock_round_trips_through_its_text_in_a_stable_order() {
    let lock = lock_of::<compatible::Account>();
    let text = lock.to_text();
    assert_eq!(Lock::parse(&text), Ok(lock.clone()));
    assert_eq!(Lock::parse(&text).map(|l| l.to_text()), Ok(text.clone()));
    // Keys are sorted: `Closed` before `Deposited` before `Opened`, whatever the declaration order.
    let closed = text.find("\"Closed\"").unwrap_or(usize::MAX);
    let deposited = text.find("\"Deposited\"").unwrap_or(0);
    assert!(closed < deposited, "{text}");
    assert!(lock::compare(&lock, &lock).is_clean());
}

#[test]
fn removing_a_field_is_breaking() {
    let (one, message) = one_break::<field_removed::Account>();
    assert_eq!(one.change, Change::FieldRemoved { field: "deposit".into() });
    assert_eq!((one.event.as_str(), one.version), ("Opened", 1));
    for part in ["`Opened` version 1", "field `deposit` was removed", "version 2", "upcast_from"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[test]
fn changing_a_type_is_breaking() {
    let (one, message) = one_break::<type_changed::Account>();
    assert_eq!(one.change, Change::TypeChanged { field: "deposit".into(), from: "u64".into(), to: "i64".into() });
    assert!(message.contains("field `deposit` changed type from `u64` to `i64`"), "{message}");
    assert!(message.contains("`#[event(version = 2, upcast_from = ...)]`"), "{message}");
}

#[test]
fn renaming_without_a_serde_rename_is_breaking_and_with_one_is_not() {
    let (one, message) = one_break::<renamed::Account>();
    assert_eq!(one.change, Change::FieldRenamed { from: "deposit".into(), to: "initial_deposit".into() });
    assert!(message.contains("#[serde(rename = \"deposit\")]"), "{message}");
    assert_eq!(breaking::<renamed_with_serde::Account>(), []);
}

#[test]
fn adding_a_required_field_is_breaking() {
    let (one, message) = one_break::<required_added::Account>();
    assert_eq!(one.change, Change::RequiredFieldAdded { field: "branch".into() });
    assert!(message.contains("required field `branch` was added"), "{message}");
    assert!(message.contains("`Option`"), "{message}");
}

#[test]
fn changing_a_nested_type_is_breaking() {
    let (one, message) = one_break::<nested_changed::Account>();
    assert!(matches!(one.change, Change::TypeChanged { ref field, .. } if field == "address"), "{one:?}");
    assert!(message.contains("from `super::Address` to `super::PostalAddress`"), "{message}");
}

/// With feature `json-schema`, the lock compares each field's JSON Schema, nested types
/// resolved: a change inside `Address` is reported on the field that holds it.
#[cfg(feature = "json-schema")]
#[test]
fn changing_a_nested_type_inside_is_breaking() {
    let report = lock::compare(&lock_of::<inside_before::Account>(), &lock_of::<inside_after::Account>());
    assert_eq!(report.breaking.len(), 1, "{report:#?}");
    let one = &report.breaking[0];
    assert!(
        matches!(&one.change, Change::NestedChanged { field, ty, .. } if field == "to" && ty == "Address"),
        "{one:?}"
    );
    let message = one.to_string();
    assert!(
        message.contains("`Moved` version 1 (aggregate `account`): field `to` keeps its type `Address`"),
        "{message}"
    );
    assert!(message.contains("\"number\""), "{message}");
    assert!(message.contains("version 2"), "{message}");
    // A doc comment is no shape: changing one is no change.
    assert!(lock::compare(&lock_of::<inside_before::Account>(), &lock_of::<inside_before::Account>()).is_clean());
}

/// Without feature `json-schema`, the lock knows a field's type by its name only, as its docs
/// say: a change inside a type that keeps its name is not seen.
#[cfg(not(feature = "json-schema"))]
#[test]
fn without_json_schema_a_change_inside_a_nested_type_is_not_seen() {
    let report = lock::compare(&lock_of::<inside_before::Account>(), &lock_of::<inside_after::Account>());
    assert!(report.is_clean(), "{report:#?}");
}

#[test]
fn removing_an_event_is_breaking() {
    let (one, message) = one_break::<event_removed::Account>();
    assert_eq!((one.event.as_str(), one.change), ("Deposited", Change::EventRemoved));
    assert!(message.contains("list it again in `account`'s `events(...)`"), "{message}");
}

#[test]
fn a_retired_event_stays_readable_and_enters_the_lock_as_retired() {
    let schema = <retired::Account as es::Aggregate>::schema();
    assert_eq!(schema.retired, ["Deposited"]);
    // Still decoded from stored history.
    let decoded = <retired::AccountEvent as es::EventSet>::decode("Deposited", 1, r#"{"amount":5}"#);
    assert!(decoded.is_ok(), "{decoded:?}");
    let report = lock::compare(&lock_of::<released::Account>(), &lock_of::<retired::Account>());
    assert_eq!(report.breaking, []);
    let pending: Vec<String> = report.pending.iter().map(ToString::to_string).collect();
    assert_eq!(pending, ["`Deposited` (aggregate `account`): now retired, not in the lock yet"]);
    let updated = lock_of::<released::Account>().updated_with(&lock_of::<retired::Account>());
    assert!(updated.aggregates["account"].events["Deposited"].retired);
    assert!(updated.to_text().contains(r#""retired": true"#));
    let page = es::schema::markdown::render(&system::<retired::Account>());
    assert!(page.contains("(version 1, retired)") && page.contains("**Retired**"), "{page}");
}

#[test]
fn reusing_a_version_for_another_shape_is_breaking() {
    let found = breaking::<version_reused::Account>();
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(found.iter().all(|b| (b.event.as_str(), b.version) == ("Deposited", 1)), "{messages:#?}");
    assert!(messages.iter().any(|m| m.contains("field `amount` was renamed to `cents`") || m.contains("`amount`")));
    assert!(messages.iter().any(|m| m.contains("required field `currency` was added")), "{messages:#?}");
}

#[test]
fn a_new_version_without_an_upcaster_is_breaking() {
    let (one, message) = one_break::<version_without_upcaster::Account>();
    assert_eq!((one.event.as_str(), one.version), ("Deposited", 1));
    assert_eq!(one.change, Change::VersionUnread { oldest: 2, newest: 2 });
    assert!(message.contains("give version 2 an upcaster from version 1"), "{message}");
}

#[test]
fn compatible_changes_pass_once_the_lock_is_updated() {
    let report = lock::compare(&lock_of::<released::Account>(), &lock_of::<compatible::Account>());
    assert_eq!(report.breaking, []);
    let pending: Vec<String> = report.pending.iter().map(ToString::to_string).collect();
    assert_eq!(pending.len(), 3, "{pending:#?}");
    assert!(pending.iter().any(|p| p.starts_with("`Closed` (aggregate `account`): a new event")));
    assert!(pending.iter().any(|p| p.starts_with("`Deposited` version 2") && p.contains("a new version")));
    assert!(pending.iter().any(|p| p.starts_with("`Opened` version 1") && p.contains("compatible change")));
    let updated = lock_of::<released::Account>().updated_with(&lock_of::<compatible::Account>());
    assert!(lock::compare(&updated, &lock_of::<compatible::Account>()).is_clean());
}

#[test]
fn a_version_read_as_raw_json_keeps_its_locked_shape() {
    let locked = lock_of::<compatible::Account>();
    let today = lock_of::<raw_json::Account>();
    assert!(lock::compare(&locked, &today).is_clean(), "{:?}", lock::compare(&locked, &today));
    let updated = locked.updated_with(&today);
    let v1 = &updated.aggregates["account"].events["Deposited"].versions[0];
    assert_eq!(v1.version, 1);
    assert!(v1.shape.as_ref().is_some_and(|s| s.fields.contains_key("amount")), "{v1:?}");
}

#[test]
fn the_file_is_written_only_by_the_update_step() {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("a temporary folder: {error}"));
    let path = dir.path().join("schema.lock.json");
    let released = system::<released::Account>();

    let missing = lock::check_file(&released, &path, Mode::Check);
    assert!(matches!(missing, Err(LockError::Missing { .. })), "{missing:?}");
    let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("ES_SCHEMA_LOCK=update cargo test"), "{message}");
    assert!(!path.exists(), "the first run writes nothing");

    assert_eq!(lock::check_file(&released, &path, Mode::Update), Ok(()));
    assert_eq!(lock::check_file(&released, &path, Mode::Check), Ok(()));

    let compatible = system::<compatible::Account>();
    let pending = lock::check_file(&compatible, &path, Mode::Check);
    assert!(matches!(pending, Err(LockError::Pending(ref p)) if p.len() == 3), "{pending:?}");
    assert_eq!(lock::check_file(&compatible, &path, Mode::Update), Ok(()));
    assert_eq!(lock::check_file(&compatible, &path, Mode::Check), Ok(()));

    // A breaking change is never written by `update`.
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    let broken = system::<version_without_upcaster::Account>();
    let refused = lock::check_file(&broken, &path, Mode::Update);
    assert!(matches!(refused, Err(LockError::Breaking(_))), "{refused:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), before);
    assert_eq!(lock::check_file(&broken, &path, Mode::Force), Ok(()));
    assert_eq!(lock::check_file(&broken, &path, Mode::Check), Ok(()));
}

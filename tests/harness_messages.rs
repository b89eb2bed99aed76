//! What a failing given/when/then says, and where it says it: the history, the command's
//! outcome, expected against actual event by event, at the test's own line; and the check that
//! every produced event survives encode -> decode.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use es::prelude::*;
use es::testing::*;

// --- a wallet -----------------------------------------------------------------------------

/// Money came in.
#[event(version = 1)]
struct Deposited {
    amount: u64,
}

/// Money was paid to someone.
#[event(version = 1)]
struct Paid {
    amount: u64,
    to: String,
}

/// The wallet takes no more payments.
#[event(version = 1)]
struct Frozen {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum WalletError {
    #[error("the wallet is frozen")]
    Frozen,
    #[error("the balance {balance} is less than {requested}")]
    Insufficient { balance: u64, requested: u64 },
}

/// A wallet.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(id = Uuid, events(Deposited, Paid, Frozen), error = WalletError)]
struct Wallet {
    balance: u64,
    frozen: bool,
}

impl Apply<Deposited> for Wallet {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

impl Apply<Paid> for Wallet {
    fn apply(&mut self, event: &Paid) {
        self.balance -= event.amount;
    }
}

impl Apply<Frozen> for Wallet {
    fn apply(&mut self, _: &Frozen) {
        self.frozen = true;
    }
}

impl Wallet {
    fn pay(&self, amount: u64, to: &str) -> Result<Paid, WalletError> {
        if self.frozen {
            return Err(WalletError::Frozen);
        }
        if amount > self.balance {
            return Err(WalletError::Insufficient { balance: self.balance, requested: amount });
        }
        Ok(Paid { amount, to: to.into() })
    }

    /// Pays out everything, then freezes.
    fn freeze(&self) -> Result<(Option<Paid>, Frozen), WalletError> {
        if self.frozen {
            return Err(WalletError::Frozen);
        }
        Ok(((self.balance > 0).then(|| Paid { amount: self.balance, to: "owner".into() }), Frozen {}))
    }

    /// Checks the wallet; decides nothing.
    fn audit(&self) -> Result<(), WalletError> {
        if self.frozen { Err(WalletError::Frozen) } else { Ok(()) }
    }
}

/// Runs a check that must fail and returns its panic message.
fn failure(check: impl FnOnce()) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(check)) {
        Ok(()) => panic!("the check was expected to fail, but it passed"),
        Err(payload) => payload,
    };
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => panic!("the panic payload is neither a String nor a &str"),
        },
    }
}

/// Asserts that `message` contains every one of `parts`.
#[track_caller]
fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "the message lacks {part:?}:\n{message}");
    }
}

fn paid(amount: u64, to: &str) -> Paid {
    Paid { amount, to: to.into() }
}

// --- then: other events than expected -----------------------------------------------------

#[test]
fn a_differing_field_is_marked_with_both_values() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 200 }).when(|w| w.pay(120, "bob")).then(paid(100, "bob"));
    });
    assert_contains(
        &message,
        &[
            "given/when/then for Wallet failed: the command produced other events than expected\n",
            "Given:\n  1. Deposited { amount: 200 }\n",
            "When: the command produced\n  1. Paid { amount: 120, to: \"bob\" }\n",
            "Expected:\n  1. Paid { amount: 100, to: \"bob\" }\n",
            "Differences:\n  event 1 (Paid):\n    amount: expected 100, got 120\n",
        ],
    );
    assert!(!message.contains("to: expected"), "only differing fields are marked:\n{message}");
}

#[test]
fn every_differing_field_is_marked_and_strings_are_quoted() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 200 }).when(|w| w.pay(120, "eve")).then(paid(100, "bob"));
    });
    assert_contains(&message, &["    amount: expected 100, got 120\n", "    to: expected \"bob\", got \"eve\"\n"]);
}

#[test]
fn the_history_is_listed_in_order() {
    let message = failure(|| {
        let _ = Wallet::given((Deposited { amount: 5 }, Deposited { amount: 6 }, paid(1, "ann")))
            .when(|w| w.pay(2, "bob"))
            .then(paid(3, "bob"));
    });
    assert_contains(
        &message,
        &["Given:\n  1. Deposited { amount: 5 }\n  2. Deposited { amount: 6 }\n  3. Paid { amount: 1, to: \"ann\" }\n"],
    );
}

#[test]
fn no_history_is_said_so() {
    let message = failure(|| {
        let _ = Wallet::given_nothing().when(|w| w.freeze()).then((Some(paid(1, "owner")), Frozen {}));
    });
    assert_contains(
        &message,
        &[
            "Given: no events\n",
            "When: the command produced\n  1. Frozen\n",
            "Expected:\n  1. Paid { amount: 1, to: \"owner\" }\n  2. Frozen\n",
            "event 1: expected Paid, got Frozen\n",
            "event 2: missing, expected Frozen\n",
        ],
    );
}

#[test]
fn a_missing_event_is_named() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 10 }).when(|w| w.pay(10, "bob")).then((paid(10, "bob"), Frozen {}));
    });
    assert_contains(&message, &["Differences:\n  event 2: missing, expected Frozen\n"]);
    assert!(!message.contains("event 1"), "the equal first event is not listed as a difference:\n{message}");
}

#[test]
fn an_unexpected_event_is_named() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 10 }).when(|w| w.freeze()).then(Frozen {});
    });
    assert_contains(
        &message,
        &[
            "When: the command produced\n  1. Paid { amount: 10, to: \"owner\" }\n  2. Frozen\n",
            "Expected:\n  1. Frozen\n",
            "  event 1: expected Frozen, got Paid\n",
            "  event 2: unexpected Frozen\n",
        ],
    );
}

#[test]
fn an_event_of_another_type_is_named_by_type() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 10 }).when(|w| w.pay(5, "bob")).then(Deposited { amount: 5 });
    });
    assert_contains(&message, &["Differences:\n  event 1: expected Deposited, got Paid\n"]);
}

#[test]
fn expecting_events_from_a_command_that_produced_none() {
    let message = failure(|| {
        let _ = Wallet::given_nothing().when(|w| w.audit()).then(Frozen {});
    });
    assert_contains(
        &message,
        &[
            "the command produced other events than expected",
            "When: the command succeeded with no events\n",
            "event 1: missing, expected Frozen\n",
        ],
    );
}

// --- then when refused, then_nothing, then_error -----------------------------------------

#[test]
fn then_on_a_refused_command_shows_the_error() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 10 }).when(|w| w.pay(50, "bob")).then(paid(50, "bob"));
    });
    assert_contains(
        &message,
        &[
            "given/when/then for Wallet failed: the command was refused, but events were expected\n",
            "Given:\n  1. Deposited { amount: 10 }\n",
            "When: the command was refused with\n  Insufficient { balance: 10, requested: 50 }\n",
            "Expected:\n  1. Paid { amount: 50, to: \"bob\" }\n",
        ],
    );
}

#[test]
fn then_nothing_when_events_came() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 3 }).when(|w| w.freeze()).then_nothing();
    });
    assert_contains(
        &message,
        &[
            "the command produced events, but none were expected\n",
            "When: the command produced\n  1. Paid { amount: 3, to: \"owner\" }\n  2. Frozen\n",
        ],
    );
}

#[test]
fn then_nothing_when_refused() {
    let message = failure(|| {
        let _ = Wallet::given(Frozen {}).when(|w| w.audit()).then_nothing();
    });
    assert_contains(
        &message,
        &[
            "the command was refused, but it was expected to succeed with no events\n",
            "When: the command was refused with\n  Frozen\n",
        ],
    );
}

#[test]
fn then_error_with_another_error() {
    let message = failure(|| {
        Wallet::given(Deposited { amount: 10 }).when(|w| w.pay(50, "bob")).then_error(WalletError::Frozen);
    });
    assert_contains(
        &message,
        &[
            "the command was refused with another error than expected\n",
            "When: the command was refused with\n  Insufficient { balance: 10, requested: 50 }\n",
            "Expected error:\n  Frozen\n",
        ],
    );
}

#[test]
fn then_error_with_other_values_of_the_same_error() {
    let message = failure(|| {
        Wallet::given(Deposited { amount: 10 })
            .when(|w| w.pay(50, "bob"))
            .then_error(WalletError::Insufficient { balance: 10, requested: 40 });
    });
    assert_contains(
        &message,
        &[
            "  Insufficient { balance: 10, requested: 50 }\n",
            "Expected error:\n  Insufficient { balance: 10, requested: 40 }\n",
        ],
    );
}

#[test]
fn then_error_when_the_command_succeeded() {
    let message = failure(|| {
        Wallet::given(Deposited { amount: 100 })
            .when(|w| w.pay(50, "bob"))
            .then_error(WalletError::Insufficient { balance: 10, requested: 50 });
    });
    assert_contains(
        &message,
        &[
            "the command succeeded, but an error was expected\n",
            "When: the command produced\n  1. Paid { amount: 50, to: \"bob\" }\n",
            "Expected error:\n  Insufficient { balance: 10, requested: 50 }\n",
        ],
    );
}

#[test]
fn then_error_matches_with_an_error_the_check_refuses() {
    let message = failure(|| {
        Wallet::given(Frozen {})
            .when(|w| w.pay(1, "bob"))
            .then_error_matches(|e| matches!(e, WalletError::Insufficient { .. }));
    });
    assert_contains(
        &message,
        &[
            "the command was refused with an error the check did not accept\n",
            "When: the command was refused with\n  Frozen\n",
        ],
    );
}

#[test]
fn then_error_matches_when_the_command_succeeded() {
    let message = failure(|| {
        Wallet::given_nothing().when(|w| w.audit()).then_error_matches(|_| true);
    });
    assert_contains(
        &message,
        &["the command succeeded, but an error was expected\n", "When: the command succeeded with no events\n"],
    );
}

// --- the state and raw history ------------------------------------------------------------

#[test]
fn and_state_is_shows_both_states() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 10 })
            .when(|w| w.pay(4, "bob"))
            .then(paid(4, "bob"))
            .and_state_is(Wallet { balance: 5, frozen: false });
    });
    assert_contains(
        &message,
        &[
            "given/when/then for Wallet failed: the state after the command differs\n",
            "Expected state:\n  Wallet { balance: 5, frozen: false }\n",
            "Actual state:\n  Wallet { balance: 6, frozen: false }\n",
        ],
    );
}

#[test]
fn and_state_is_names_the_fields_that_differ() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 10 })
            .when(|w| w.pay(4, "bob"))
            .then(paid(4, "bob"))
            .and_state_is(Wallet { balance: 5, frozen: true });
    });
    assert_contains(&message, &["\nDifferences:\n  balance: expected 5, got 6\n  frozen: expected true, got false\n"]);
}

#[tokio::test]
async fn when_async_runs_a_command_that_awaits() {
    async fn fee() -> u64 {
        1
    }
    Wallet::given(Deposited { amount: 10 })
        .when_async(|wallet| async move {
            let fee = fee().await;
            wallet.pay(4 + fee, "bob")
        })
        .await
        .then(paid(5, "bob"))
        .and_state_is(Wallet { balance: 5, frozen: false });
}

#[test]
fn and_state_runs_the_checks() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 10 })
            .when(|w| w.pay(4, "bob"))
            .then(paid(4, "bob"))
            .and_state(|w| assert_eq!(w.balance, 7, "balance after paying"));
    });
    assert_contains(&message, &["balance after paying", "left: 6", "right: 7"]);
}

#[test]
fn raw_history_that_does_not_decode_names_the_record() {
    let message = failure(|| {
        let _ = Wallet::given_raw([
            RawEvent::new("Deposited", 1, r#"{"amount":1}"#),
            RawEvent::new("Paid", 1, r#"{"amount":"lots"}"#),
        ]);
    });
    assert_contains(
        &message,
        &[
            "given/when/then for Wallet failed: raw history record 2 (type `Paid`, schema version 1) does not decode: ",
            "the payload does not fit `Paid` (version 1): invalid type: string \"lots\"",
            "\npayload: {\"amount\":\"lots\"}",
        ],
    );
}

#[test]
fn raw_history_of_an_unknown_type_lists_the_known_types() {
    let message = failure(|| {
        let _ = Wallet::given(Deposited { amount: 1 }).and_raw([RawEvent::new("Withdrawn", 1, "{}")]);
    });
    assert_contains(&message, &["raw history record 1 (type `Withdrawn`", "known types are Deposited, Paid, Frozen"]);
}

// --- the encode -> decode round trip ------------------------------------------------------

/// A note; whether it is a draft is (wrongly) not stored.
#[event(version = 1)]
struct Noted {
    text: String,
    #[serde(skip)]
    draft: bool,
}

/// Counts per pair; a map whose keys JSON cannot hold.
#[event(version = 1)]
struct Tallied {
    counts: BTreeMap<(u8, u8), u32>,
}

/// A title, stored under another name than it is read under.
#[event(version = 1)]
struct Titled {
    #[serde(rename(serialize = "title"))]
    name: String,
}

/// A journal.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(id = u64, events(Noted, Tallied, Titled))]
struct Journal {
    entries: usize,
}

impl Apply<Noted> for Journal {
    fn apply(&mut self, _: &Noted) {
        self.entries += 1;
    }
}

impl Apply<Tallied> for Journal {
    fn apply(&mut self, _: &Tallied) {
        self.entries += 1;
    }
}

impl Apply<Titled> for Journal {
    fn apply(&mut self, _: &Titled) {
        self.entries += 1;
    }
}

type Never = std::convert::Infallible;

#[test]
fn an_event_that_survives_the_round_trip_passes() {
    Journal::given_nothing()
        .when(|_| Ok::<_, Never>(Noted { text: "a".into(), draft: false }))
        .then(Noted { text: "a".into(), draft: false })
        .and_state_is(Journal { entries: 1 });
}

#[test]
fn an_event_that_loses_data_in_serde_fails_then() {
    let message = failure(|| {
        let _ = Journal::given_nothing()
            .when(|_| Ok::<_, Never>(Noted { text: "a".into(), draft: true }))
            .then(Noted { text: "a".into(), draft: true });
    });
    assert_contains(
        &message,
        &[
            "given/when/then for Journal failed: produced event 1 does not survive encode -> decode (check its serde attributes)",
            "produced Noted { text: \"a\", draft: true }",
            "stored   {\"text\":\"a\"}",
            "decoded  Noted { text: \"a\", draft: false }",
            "Given: no events",
            "When: the command produced\n  1. Noted { text: \"a\", draft: true }",
        ],
    );
}

#[test]
fn then_nothing_is_not_affected_by_the_round_trip() {
    Journal::given(Noted { text: "a".into(), draft: true }).when(|_| Ok::<_, Never>(())).then_nothing();
}

#[test]
fn an_event_that_does_not_encode_fails_then() {
    let tally = Tallied { counts: BTreeMap::from([((1, 2), 3)]) };
    let message = failure(|| {
        let _ = Journal::given_nothing().when(|_| Ok::<_, Never>(tally.clone())).then(tally.clone());
    });
    assert_contains(
        &message,
        &["given/when/then for Journal failed: produced event 1 (Tallied) does not encode: ", "key must be a string"],
    );
}

#[test]
fn an_event_that_does_not_decode_after_encoding_fails_then() {
    let message = failure(|| {
        let _ = Journal::given_nothing()
            .when(|_| Ok::<_, Never>((Noted { text: "a".into(), draft: false }, Titled { name: "t".into() })))
            .then((Noted { text: "a".into(), draft: false }, Titled { name: "t".into() }));
    });
    assert_contains(
        &message,
        &[
            "given/when/then for Journal failed: produced event 2 (Titled v1) does not decode after encoding: ",
            "missing field `name`",
            "stored {\"title\":\"t\"}",
        ],
    );
}

#[test]
fn events_that_differ_only_in_what_serde_skips_are_shown_whole() {
    let message = failure(|| {
        let _ = Journal::given_nothing()
            .when(|_| Ok::<_, Never>(Noted { text: "a".into(), draft: true }))
            .then(Noted { text: "a".into(), draft: false });
    });
    assert_contains(
        &message,
        &[
            "  event 1 (Noted):\n",
            "    expected Noted { text: \"a\", draft: false }\n",
            "    got      Noted { text: \"a\", draft: true }\n",
        ],
    );
}

// --- where a failure is reported ----------------------------------------------------------

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The panic hook is global: only one test may replace it at a time.
static HOOK: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set while this thread runs a check whose panic location is wanted.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The location of the last panic on this thread while capturing.
    static CAUGHT: RefCell<Option<(String, u32)>> = const { RefCell::new(None) };
}

/// Where `check` panicked, as the panic hook saw it; `None` if it did not panic.
fn location_of(check: impl FnOnce()) -> Option<(String, u32)> {
    CAUGHT.with_borrow_mut(|caught| *caught = None);
    CAPTURING.with(|capturing| capturing.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(check));
    CAPTURING.with(|capturing| capturing.set(false));
    outcome.err()?;
    CAUGHT.with_borrow_mut(Option::take)
}

#[test]
fn failures_are_reported_at_the_test_s_own_line() {
    let _only_hook_user = HOOK.lock().unwrap_or_else(PoisonError::into_inner);
    let previous: Arc<Hook> = Arc::new(panic::take_hook());
    let forward = Arc::clone(&previous);
    panic::set_hook(Box::new(move |info| {
        if CAPTURING.with(Cell::get) {
            let location = info.location().map(|l| (l.file().to_owned(), l.line()));
            CAUGHT.with_borrow_mut(|caught| *caught = location);
        } else {
            // Panics of tests running meanwhile on other threads are reported as usual.
            forward(info);
        }
    }));

    // Every check on one line, so that the expected line is `line!()` of that line.
    #[rustfmt::skip]
    let seen = [
        (line!(), location_of(|| { let _ = Wallet::given(Deposited { amount: 1 }).when(|w| w.pay(1, "a")).then(paid(2, "a")); })),
        (line!(), location_of(|| { let _ = Wallet::given_nothing().when(|w| w.pay(1, "a")).then(paid(1, "a")); })),
        (line!(), location_of(|| { let _ = Wallet::given(Deposited { amount: 1 }).when(|w| w.freeze()).then_nothing(); })),
        (line!(), location_of(|| Wallet::given_nothing().when(|w| w.audit()).then_error(WalletError::Frozen))),
        (line!(), location_of(|| Wallet::given(Frozen {}).when(|w| w.audit()).then_error(WalletError::Insufficient { balance: 0, requested: 0 }))),
        (line!(), location_of(|| Wallet::given_nothing().when(|w| w.audit()).then_error_matches(|_| true))),
        (line!(), location_of(|| { let _ = Wallet::given_nothing().when(|w| w.freeze()).then(Frozen {}).and_state_is(Wallet::default()); })),
        (line!(), location_of(|| { let _ = Wallet::given_raw([RawEvent::new("Nope", 1, "{}")]); })),
        (line!(), location_of(|| { let _ = Wallet::given_nothing().and_raw([RawEvent::new("Paid", 1, "{}")]); })),
        (line!(), location_of(|| { let _ = Journal::given_nothing().when(|_| Ok::<_, Never>(Noted { text: String::new(), draft: true })).then(Noted { text: String::new(), draft: true }); })),
    ];

    // Restore the hook before asserting: nothing above panics outside `catch_unwind`.
    drop(panic::take_hook());
    match Arc::try_unwrap(previous) {
        Ok(previous) => panic::set_hook(previous),
        Err(previous) => panic::set_hook(Box::new(move |info| previous(info))),
    }

    for (line, location) in seen {
        assert_eq!(location, Some((file!().to_owned(), line)), "the failing check on line {line}");
    }
}

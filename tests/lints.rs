//! The code `#[event]`, `#[derive(Aggregate)]` and `#[derive(Projection)]` generate stays silent under a user's strictest
//! lints: this crate denies warnings, missing docs, needless qualified paths and all of clippy's
//! pedantic group, and uses every key that generates code. `cargo clippy --all-targets` and
//! `cargo test` both compile it; any lint the expansion triggers fails the build.

#![deny(warnings, missing_docs, unused_qualifications)]
#![deny(clippy::pedantic)]

use es::UpcastError;
use es::prelude::*;
use es::testing::*;
use serde_json::{Value, json};

/// A ledger was opened. It was called `LedgerCreated` once.
#[event(version = 1, aliases = ["LedgerCreated"])]
pub struct LedgerOpened {
    /// Who keeps the ledger.
    pub keeper: String,
}

/// The first shape of [`EntryBooked`], kept so that old history still loads.
#[event(name = "EntryBooked", version = 1)]
pub struct EntryBookedV1 {
    /// The amount in cents.
    pub cents: u64,
}

/// An entry was booked. Version 2 added the memo.
#[event(version = 2, upcast_from = EntryBookedV1)]
pub struct EntryBooked {
    /// The amount in cents.
    pub cents: u64,
    /// What the entry is for.
    pub memo: String,
}

impl From<EntryBookedV1> for EntryBooked {
    fn from(old: EntryBookedV1) -> Self {
        Self { cents: old.cents, memo: String::new() }
    }
}

/// The ledger was closed. Version 2 added the reason, version 3 the closing balance; the older
/// structs are gone, their JSON is upcast.
#[event(version = 3, upcast_json(v1 = closed_v1_to_v2, v2 = closed_v2_to_v3))]
pub struct LedgerClosed {
    /// Why it was closed.
    pub reason: String,
    /// The balance when it closed, in cents.
    pub balance: u64,
}

/// Version 2 added `reason`.
///
/// # Errors
/// When the payload is not a JSON object.
pub fn closed_v1_to_v2(mut v1: Value) -> Result<Value, UpcastError> {
    let object = v1.as_object_mut().ok_or_else(|| UpcastError::new("version 1 is an object"))?;
    object.insert("reason".into(), json!("unknown"));
    Ok(v1)
}

/// Version 3 added `balance`.
///
/// # Errors
/// When the payload is not a JSON object.
pub fn closed_v2_to_v3(mut v2: Value) -> Result<Value, UpcastError> {
    let object = v2.as_object_mut().ok_or_else(|| UpcastError::new("version 2 is an object"))?;
    object.insert("balance".into(), json!(0));
    Ok(v2)
}

/// Why a command on a [`Ledger`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The ledger is not open.
    #[error("the ledger is not open")]
    NotOpen,
}

/// A ledger of booked entries.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[aggregate(
    id = Uuid,
    events(LedgerOpened, EntryBooked, LedgerClosed),
    error = LedgerError,
    snapshot(every = 50, version = 1),
)]
pub struct Ledger {
    /// Open and not yet closed.
    pub open: bool,
    /// The sum of the entries, in cents.
    pub balance: u64,
}

impl Apply<LedgerOpened> for Ledger {
    fn apply(&mut self, _: &LedgerOpened) {
        self.open = true;
    }
}

impl Apply<EntryBooked> for Ledger {
    fn apply(&mut self, event: &EntryBooked) {
        self.balance += event.cents;
    }
}

impl Apply<LedgerClosed> for Ledger {
    fn apply(&mut self, _: &LedgerClosed) {
        self.open = false;
    }
}

impl Ledger {
    /// Books an entry.
    ///
    /// # Errors
    /// [`LedgerError::NotOpen`] unless the ledger is open.
    pub fn book(&self, cents: u64, memo: &str) -> Result<EntryBooked, LedgerError> {
        if !self.open {
            return Err(LedgerError::NotOpen);
        }
        Ok(EntryBooked { cents, memo: memo.to_owned() })
    }

    /// Closes the ledger.
    ///
    /// # Errors
    /// [`LedgerError::NotOpen`] unless the ledger is open.
    pub fn close(&self, reason: &str) -> Result<LedgerClosed, LedgerError> {
        if !self.open {
            return Err(LedgerError::NotOpen);
        }
        Ok(LedgerClosed { reason: reason.to_owned(), balance: self.balance })
    }
}

#[test]
fn the_strictly_linted_aggregate_works() {
    Ledger::given(LedgerOpened { keeper: "ann".to_owned() })
        .when(|ledger| ledger.book(250, "rent"))
        .then(EntryBooked { cents: 250, memo: "rent".to_owned() })
        .and_state(|ledger| assert_eq!(ledger.balance, 250));

    Ledger::given((LedgerOpened { keeper: "ann".to_owned() }, EntryBooked { cents: 5, memo: String::new() }))
        .when(|ledger| ledger.close("done"))
        .then(LedgerClosed { reason: "done".to_owned(), balance: 5 });

    Ledger::given_nothing().when(|ledger| ledger.book(1, "early")).then_error(LedgerError::NotOpen);
}

#[test]
fn old_history_decodes_through_every_upcast_kind() {
    let history = [
        RawEvent::new("LedgerCreated", 1, r#"{"keeper":"ann"}"#),
        RawEvent::new("EntryBooked", 1, r#"{"cents":7}"#),
        RawEvent::new("LedgerClosed", 1, "{}"),
    ];
    let given = Ledger::given_raw(history);
    assert_eq!(given.state(), &Ledger { open: false, balance: 7 });
    assert_eq!(
        given.history().last(),
        Some(&LedgerEvent::LedgerClosed(LedgerClosed { reason: "unknown".to_owned(), balance: 0 }))
    );
}

/// A clock ticked once.
#[event(version = 1, crate = ::es)]
pub struct Ticked;

/// A clock was set to a time, in seconds.
#[event(version = 1, crate = ::es)]
pub struct Set(pub u64);

/// A clock: one unit-struct event and one tuple-struct event, the other keys of
/// `#[aggregate]` and no snapshot.
#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(Ticked, Set), event_enum = ClockChange, name = "clock", crate = ::es)]
pub struct Clock {
    /// Seconds since it was set.
    pub seconds: u64,
}

impl Apply<Ticked> for Clock {
    fn apply(&mut self, _: &Ticked) {
        self.seconds += 1;
    }
}

impl Apply<Set> for Clock {
    fn apply(&mut self, event: &Set) {
        self.seconds = event.0;
    }
}

/// A stopwatch: an aggregate of a single event.
#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = u64, events(Ticked))]
pub struct Stopwatch {
    /// Ticks so far.
    pub ticks: u64,
}

impl Apply<Ticked> for Stopwatch {
    fn apply(&mut self, _: &Ticked) {
        self.ticks += 1;
    }
}

#[test]
fn unit_and_tuple_events_work() {
    Clock::given(Set(10)).when(|_| Ok((Ticked, Ticked))).then((Ticked, Ticked)).and_state(|clock| {
        assert_eq!(clock.seconds, 12);
    });
    assert_eq!(ClockChange::from(Ticked), ClockChange::Ticked(Ticked));
    assert_ne!(ClockChange::from(Ticked), ClockChange::Set(Set(1)));
    Stopwatch::given([Ticked, Ticked]).when(|_| Ok(Ticked)).then(StopwatchEvent::Ticked(Ticked));
}

/// Events of another module, one of them named with `as` in `events(...)`.
pub mod shelf {
    use es::prelude::*;

    /// A book was shelved, stored under serde's renamed keys.
    #[event(version = 1)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Shelved {
        /// The book's title.
        #[serde(rename = "name", alias = "title")]
        pub book_title: String,
        /// A note, left out when empty.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub shelf_note: String,
        /// Where it stands.
        pub position: Option<u32>,
    }
}

/// A bookcase: its handlers in one `#[es::apply]` block.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Eq)]
#[aggregate(id = u64, events(shelf::Shelved as BookShelved, Ticked))]
pub struct Bookcase {
    /// Books on it.
    pub books: u32,
}

#[es::apply]
impl Bookcase {
    /// One more book.
    fn shelved(&mut self, _: &shelf::Shelved) {
        self.books += 1;
    }

    #[allow(clippy::unused_self, reason = "a tick changes nothing")]
    fn ticked(&mut self, _: &Ticked) {}
}

#[test]
fn the_apply_block_and_renamed_variants_work() {
    let shelved = shelf::Shelved { book_title: "Emma".to_owned(), shelf_note: String::new(), position: None };
    Bookcase::given(shelved.clone()).when(|_| Ok(Ticked)).then(Ticked).and_state_is(Bookcase { books: 1 });
    assert_eq!(BookcaseEvent::from(shelved.clone()), BookcaseEvent::BookShelved(shelved));
    assert_eq!(shelf::Shelved::schema().fields[0].json_name, "name");
}

/// Every ledger's booked total, read from ledgers and from bookcases' ticks.
#[derive(Projection, Default, Debug, PartialEq, Eq)]
#[projection(name = "ledger_totals", version = 2, events(LedgerOpened, EntryBooked in Ledger, Ticked in Bookcase))]
pub struct LedgerTotals {
    /// Ledgers opened.
    pub ledgers: u32,
    /// Cents booked.
    pub cents: u64,
    /// Ticks seen.
    pub ticks: u32,
}

impl Handle<LedgerOpened> for LedgerTotals {
    fn handle(&mut self, _: &Envelope<LedgerOpened>) -> Result<(), HandlerError> {
        self.ledgers += 1;
        Ok(())
    }
}

impl Handle<EntryBooked> for LedgerTotals {
    fn handle(&mut self, event: &Envelope<EntryBooked>) -> Result<(), HandlerError> {
        self.cents += event.event.cents;
        Ok(())
    }
}

impl Handle<Ticked> for LedgerTotals {
    fn handle(&mut self, _: &Envelope<Ticked>) -> Result<(), HandlerError> {
        self.ticks += 1;
        Ok(())
    }
}

#[test]
fn the_strictly_linted_projection_works() {
    LedgerTotals::given((
        LedgerOpened { keeper: "kim".to_owned() },
        EntryBooked { cents: 5, memo: String::new() },
        Ticked,
    ))
    .then_state_is(LedgerTotals { ledgers: 1, cents: 5, ticks: 1 });
}

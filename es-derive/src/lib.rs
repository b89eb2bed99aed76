//! The macros of [es](https://docs.rs/es): `#[event]`, `#[derive(Aggregate)]`,
//! `#[derive(Projection)]` and `#[es::apply]`. Use them through the facade crate `es`, which re-exports them; each macro's
//! own documentation lists every key, what it generates and an example.
//!
//! Each macro runs parse → model → check → expand: `attr` and `serde_attr` read the helper and
//! serde attributes, `ast` builds the one model of the input, `check` validates it once, and
//! the modules of `expand` write the code from the model alone (`expand::event_list` is shared
//! by every derive over a list of events). A mistake becomes a `compile_error!` at the
//! offending tokens, next to the `fallback` expansion, so that one mistake does not cascade.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod serde_attr;

use proc_macro::TokenStream;

/// Makes a struct an event: one fact that happened, in one schema version.
///
/// ```
/// use es::prelude::*;
///
/// /// An account was opened for `owner`.
/// #[event(version = 1)]
/// pub struct AccountOpened {
///     /// Who owns the account.
///     pub owner: String,
/// }
///
/// assert_eq!((AccountOpened::NAME, AccountOpened::VERSION), ("AccountOpened", 1));
/// assert_eq!(AccountOpened::schema().fields[0].doc, "Who owns the account.");
/// ```
///
/// Put it above the struct's derives: it adds `Serialize`, `Deserialize`, `Debug`, `Clone`
/// and `PartialEq` (skipping any derived below it; one derived *above* it is invisible to it
/// and collides with its own, rustc's E0119 "conflicting implementations") and implements
/// `es::Event`: the stored type name and version, decoding of this and every
/// older version, and the schema. The serde derives need no serde dependency; the struct's
/// `#[serde(...)]` attributes apply as usual, and the schema describes the JSON they produce.
///
/// | key | meaning |
/// | --- | --- |
/// | `version = N` | required; the schema version this struct describes, from 1 |
/// | `name = "..."` | the stored type name; the struct's name by default. An older version of an event carries the name of the current one |
/// | `aliases = ["Old", ...]` | former type names still read as this event |
/// | `upcast_from = Older` | records of older versions are read as `Older` (an event of version N-1 stored under this name) and converted with `impl From<Older> for Self` |
/// | `upcast_json(v1 = f, v2 = g, ...)` | for when the old struct is gone: `f` turns version 1's JSON into version 2's, and so on up to N; each is an `es::schema::JsonUpcaster`, `fn(serde_json::Value) -> Result<serde_json::Value, es::UpcastError>` |
/// | `crate = path` | where the `es` crate is, if renamed |
///
/// With the facade's feature `json-schema`, it also derives `schemars::JsonSchema` (through
/// `es::__private::schemars`), so that the schema docs describe nested types precisely and the
/// schema lock sees a change inside them: types nested in the event then need
/// `#[derive(es::JsonSchema)]` with `#[schemars(crate = "es::__private::schemars")]`, and a
/// missing one is a compile error that names the type.
///
/// A new version keeps the old struct and points at it:
///
/// ```
/// use es::prelude::*;
///
/// /// Money was paid in. Version 2 added `reference`.
/// #[event(version = 2, upcast_from = MoneyDepositedV1)]
/// pub struct MoneyDeposited {
///     pub amount: u64,
///     pub reference: String,
/// }
///
/// /// The first shape of `MoneyDeposited`, kept so that old history still loads.
/// #[event(name = "MoneyDeposited", version = 1)]
/// pub struct MoneyDepositedV1 {
///     pub amount: u64,
/// }
///
/// impl From<MoneyDepositedV1> for MoneyDeposited {
///     fn from(old: MoneyDepositedV1) -> Self {
///         Self { amount: old.amount, reference: String::new() }
///     }
/// }
///
/// let today = MoneyDeposited::decode_payload(1, r#"{"amount":5}"#).unwrap();
/// assert_eq!(today, MoneyDeposited { amount: 5, reference: String::new() });
/// ```
///
/// Or rewrites the old JSON, one function per older version (the function reads
/// `serde_json::Value`: add `serde_json` to your dependencies to write one):
///
/// ```
/// use es::UpcastError;
/// use es::prelude::*;
/// use serde_json::{Value, json};
///
/// /// A price changed. Version 2 added the currency.
/// #[event(version = 2, upcast_json(v1 = price_v1_to_v2))]
/// pub struct PriceChanged {
///     pub cents: u64,
///     pub currency: String,
/// }
///
/// fn price_v1_to_v2(mut v1: Value) -> Result<Value, UpcastError> {
///     let object = v1.as_object_mut().ok_or_else(|| UpcastError::new("version 1 is an object"))?;
///     object.insert("currency".into(), json!("EUR"));
///     Ok(v1)
/// }
///
/// let today = PriceChanged::decode_payload(1, r#"{"cents":250}"#).unwrap();
/// assert_eq!(today, PriceChanged { cents: 250, currency: "EUR".into() });
/// ```
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::event::expand(args.into(), item.into()).into()
}

/// Implements `Aggregate` for the state struct: the event enum, its conversions, the apply
/// dispatch, decoding with upcasting, the schema and the given/when/then entry points.
///
/// ```
/// use es::prelude::*;
/// use es::testing::*; // given/when/then
///
/// /// An account was opened.
/// #[event(version = 1)]
/// pub struct AccountOpened {
///     pub owner: String,
/// }
///
/// /// Money was paid in.
/// #[event(version = 1)]
/// pub struct MoneyDeposited {
///     pub amount: u64,
/// }
///
/// /// Why a command was refused.
/// #[derive(Debug, PartialEq)]
/// pub enum AccountError {
///     NotOpen,
/// }
/// impl std::fmt::Display for AccountError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("the account is not open")
///     }
/// }
/// impl std::error::Error for AccountError {}
///
/// /// A customer's bank account.
/// #[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
/// #[serde(crate = "es::serde")]
/// #[aggregate(
///     id = Uuid,
///     events(AccountOpened, MoneyDeposited),
///     error = AccountError,
///     snapshot(every = 100, version = 1),
/// )]
/// pub struct BankAccount {
///     open: bool,
///     balance: u64,
/// }
///
/// // One handler per event, all in one block (or one `impl Apply<E>` each).
/// #[es::apply]
/// impl BankAccount {
///     fn opened(&mut self, _: &AccountOpened) {
///         self.open = true;
///     }
///
///     fn deposited(&mut self, event: &MoneyDeposited) {
///         self.balance += event.amount;
///     }
/// }
///
/// impl BankAccount {
///     pub fn deposit(&self, amount: u64) -> Result<MoneyDeposited, AccountError> {
///         if !self.open {
///             return Err(AccountError::NotOpen);
///         }
///         Ok(MoneyDeposited { amount })
///     }
/// }
///
/// BankAccount::given(AccountOpened { owner: "ann".into() })
///     .when(|account| account.deposit(50))
///     .then(MoneyDeposited { amount: 50 })
///     .and_state_is(BankAccount { open: true, balance: 50 });
/// BankAccount::given_nothing().when(|account| account.deposit(50)).then_error(AccountError::NotOpen);
///
/// // The generated enum: one variant per event, `From` each event.
/// let event: BankAccountEvent = MoneyDeposited { amount: 1 }.into();
/// assert!(matches!(event, BankAccountEvent::MoneyDeposited(_)));
/// ```
///
/// Generated: `pub enum BankAccountEvent { AccountOpened(AccountOpened), ... }` with `Clone`,
/// `PartialEq`, `Debug`, `From<each event>` and `EventSet` (stored type names, encoding,
/// decoding with upcasting and aliases); `impl Apply<BankAccountEvent>` dispatching each
/// variant to the state's `Apply<E>` (a missing one is a compile error at the event in
/// `events(...)` that says what to write); `impl Aggregate` (id, error, stream type, snapshot
/// policy and schema); and a compile-time check that no two events are stored under one name.
///
/// | key of `#[aggregate(...)]` | meaning |
/// | --- | --- |
/// | `id = Type` | required; the id of one aggregate (its `Display` is the stream id) |
/// | `events(A, b::B as OtherB, ...)` | required; the events it applies, each with an `Apply<E>`; `as` names the enum's variant (the last path segment by default) |
/// | `retired(A, ...)` | events no longer emitted that stored history still holds: each stays in the enum, decoded and applied (so it needs its `Apply<E>`), but a command that returns it does not compile; the schema docs show it as retired and the schema lock keeps it |
/// | `error = Type` | the error its commands return; `Infallible` by default |
/// | `snapshot(every = N, version = V)` | snapshot the state every N events in version V of its shape; the state then derives `Serialize` and `Deserialize` (from `es::prelude`; with `#[serde(crate = "es::serde")]` when serde is not a dependency of your crate) |
/// | `event_enum = Name` | the generated enum's name; `<Aggregate>Event` by default |
/// | `name = "..."` | the stream type; the struct's name by default |
/// | `crate = path` | where the `es` crate is, if renamed |
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    expand::aggregate::expand(input.into()).into()
}

/// Turns each method of an `impl` block into an `impl Apply<E>`: all the handlers of an
/// aggregate in one block, as a hand-written `match` would be.
///
/// Each method is `fn any_name(&mut self, event: &E)` and becomes
/// `impl Apply<E> for Type { fn apply(&mut self, event: &E) { ... } }`; the method itself is
/// not kept. A listed event without a handler is still the compile error of a missing
/// `Apply<E>`. The only key is `crate = path`, where the `es` crate is, if renamed.
///
/// ```
/// use es::prelude::*;
/// use es::testing::*; // given/when/then
///
/// #[event(version = 1)]
/// pub struct Started {
///     pub at: u64,
/// }
///
/// #[event(version = 1)]
/// pub struct Stepped {}
///
/// #[derive(Aggregate, Default, Debug, Clone, PartialEq)]
/// #[aggregate(id = u64, events(Started, Stepped))]
/// pub struct Counter {
///     value: u64,
/// }
///
/// #[es::apply]
/// impl Counter {
///     fn started(&mut self, event: &Started) {
///         self.value = event.at;
///     }
///
///     fn stepped(&mut self, _: &Stepped) {
///         self.value += 1;
///     }
/// }
///
/// Counter::given((Started { at: 41 }, Stepped {})).when(|_| Ok(Stepped {})).then(Stepped {})
///     .and_state_is(Counter { value: 43 });
/// ```
#[proc_macro_attribute]
pub fn apply(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::apply::expand(args.into(), item.into()).into()
}

/// Implements `es::projection::Projection` for a read model: its name, version and the events
/// it selects, and the dispatch of each stored record (decoded through the event's aliases and
/// upcasters, exactly as an aggregate reads it) to one `Handle<E>` per event.
///
/// ```
/// use std::collections::HashMap;
///
/// use es::prelude::*;
///
/// /// An account was opened.
/// #[event(version = 1)]
/// pub struct AccountOpened {
///     pub owner: String,
/// }
///
/// /// Money was paid in.
/// #[event(version = 1)]
/// pub struct MoneyDeposited {
///     pub amount: u64,
/// }
///
/// /// Every account's balance, by stream id.
/// #[derive(Projection, Default, Debug)]
/// #[projection(name = "balances", version = 1, events(AccountOpened, MoneyDeposited))]
/// pub struct Balances {
///     by_account: HashMap<String, u64>,
/// }
///
/// impl Handle<AccountOpened> for Balances {
///     fn handle(&mut self, event: &Envelope<AccountOpened>) -> Result<(), HandlerError> {
///         self.by_account.insert(event.stream.id().to_owned(), 0);
///         Ok(())
///     }
/// }
///
/// impl Handle<MoneyDeposited> for Balances {
///     fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
///         *self.by_account.entry(event.stream.id().to_owned()).or_default() += event.event.amount;
///         Ok(())
///     }
/// }
///
/// use es::testing::*;
/// Balances::given((AccountOpened { owner: "ann".into() }, MoneyDeposited { amount: 5 }))
///     .then_state(|balances| assert_eq!(balances.by_account.values().sum::<u64>(), 5));
/// ```
///
/// | key of `#[projection(...)]` | meaning |
/// | --- | --- |
/// | `events(A, B in Shop, ...)` | required; the events it handles, each with a `Handle<E>`; `in Aggregate` reads the event only from that aggregate's streams (two events of one stored name in two aggregates are told apart so) |
/// | `name = "..."` | the name its checkpoint is stored under; the type's name by default |
/// | `version = N` | its version, 1 by default: bump it to rebuild the read model |
/// | `crate = path` | where the `es` crate is, if renamed |
///
/// Name, version and the selected events (with their aliases and stream types) make up the
/// projection's identity: a runner that finds a checkpoint stored for another identity
/// rebuilds instead of resuming.
#[proc_macro_derive(Projection, attributes(projection))]
pub fn derive_projection(input: TokenStream) -> TokenStream {
    expand::projection::expand(input.into()).into()
}

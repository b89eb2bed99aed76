//! Given/when/then for aggregates: give history, run a command, check what it decided.
//!
//!
//! Every check is `#[track_caller]`: a failure is reported at the test's own line, with the
//! given history, the command's outcome and, event by event, what was expected against what
//! came, the differing fields marked. Every event a command produces is also encoded and
//! decoded again, so a serde or upcast mistake fails the test that produced the event.

use std::fmt::{self, Debug, Write as _};

use crate::aggregate::Aggregate;
use crate::event::{CommandResult, EventSet, IntoEvents};
use crate::record::RawEvent;

mod hooked;
mod projection;
pub use self::hooked::{Hook, Hooked};
pub use self::projection::{GivenProjection, GivenRecord, History, ProjectionScenario};

/// The entry points of the harness, for every aggregate (`BankAccount::given(...)`).
pub trait Scenario: Aggregate {
    /// Starts from the default state with `history` applied: one event, a tuple, a `Vec`, …
    #[track_caller]
    fn given(history: impl IntoEvents<Self::Event>) -> Given<Self> {
        Given::new().and(history)
    }

    /// Starts from the default state with no history.
    fn given_nothing() -> Given<Self> {
        Given::new()
    }

    /// Starts from history as a store hands it back (type name, schema version, JSON), decoded
    /// through the same upcasters production uses.
    #[track_caller]
    fn given_raw(history: impl IntoIterator<Item = RawEvent>) -> Given<Self> {
        Given::new().and_raw(history)
    }
}

impl<A: Aggregate> Scenario for A {}

/// History applied so far; `when` runs a command on it.
#[must_use = "a scenario checks nothing until `when(...)` and a `then...` run"]
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
    state: A,
}

impl<A: Aggregate> Given<A> {
    fn new() -> Self {
        Self { history: Vec::new(), state: A::default() }
    }

    /// Applies more events.
    #[track_caller]
    pub fn and(mut self, more: impl IntoEvents<A::Event>) -> Self {
        for event in more.into_events() {
            self.state.apply(&event);
            self.history.push(event);
        }
        self
    }

    /// Applies more history given as stored records; a record that does not decode fails the
    /// test here.
    #[track_caller]
    pub fn and_raw(mut self, more: impl IntoIterator<Item = RawEvent>) -> Self {
        for (index, raw) in more.into_iter().enumerate() {
            match A::Event::decode(&raw.event_type, raw.schema_version, &raw.payload) {
                Ok(event) => {
                    self.state.apply(&event);
                    self.history.push(event);
                }
                Err(error) => panic!(
                    "given/when/then for {} failed: raw history record {} (type `{}`, schema version {}) does not decode: {}\npayload: {}",
                    A::TYPE,
                    index + 1,
                    raw.event_type,
                    raw.schema_version,
                    with_causes(&error),
                    raw.payload
                ),
            }
        }
        self
    }

    /// The state the history folded into.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The history as today's events.
    pub fn history(&self) -> &[A::Event] {
        &self.history
    }

    /// Runs a command on the state. The command returns `Result<X, Error>` where `X` is any
    /// [`IntoEvents`] and `Error` the aggregate's error (see [`CommandResult`]).
    pub fn when<F, Out>(self, command: F) -> When<A>
    where
        F: FnOnce(&A) -> Out,
        Out: CommandResult<A>,
    {
        let outcome = command(&self.state).into_result().map(IntoEvents::into_events);
        When { history: self.history, state: self.state, outcome }
    }

    /// [`Given::when`] for a command that awaits outside services, as
    /// [`Repository::execute_async`](crate::Repository::execute_async) runs it: the command
    /// gets a copy of the state and returns a future. Await the result, then check it as usual:
    /// `Show::given_nothing().when_async(|show| async move { show.reserve(&seats).await }).await.then(...)`.
    pub async fn when_async<R, F, Fut>(self, command: F) -> When<A>
    where
        F: FnOnce(A) -> Fut,
        Fut: Future<Output = Result<R, A::Error>>,
        R: IntoEvents<A::Event>,
    {
        let outcome = command(self.state.clone()).await.map(IntoEvents::into_events);
        When { history: self.history, state: self.state, outcome }
    }
}

/// A command's outcome, to be checked with one of the `then...` methods.
#[must_use = "a scenario checks nothing until a `then...` runs"]
pub struct When<A: Aggregate> {
    history: Vec<A::Event>,
    state: A,
    outcome: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> When<A> {
    /// Checks that the command succeeded with exactly these events, in this order.
    #[track_caller]
    pub fn then(self, expected: impl IntoEvents<A::Event>) -> Then<A> {
        let expected = expected.into_events();
        match &self.outcome {
            Ok(actual) if *actual == expected => self.into_then(),
            Ok(actual) => self.fail("the command produced other events than expected", |out| {
                write_expected(out, &expected);
                write_event_diff(out, &expected, actual);
            }),
            Err(_) => self.fail("the command was refused, but events were expected", |out| {
                write_expected(out, &expected);
            }),
        }
    }

    /// Checks that the command succeeded without producing any event.
    #[track_caller]
    pub fn then_nothing(self) -> Then<A> {
        match &self.outcome {
            Ok(actual) if actual.is_empty() => self.into_then(),
            Ok(_) => self.fail("the command produced events, but none were expected", |_| {}),
            Err(_) => self.fail("the command was refused, but it was expected to succeed with no events", |_| {}),
        }
    }

    /// Checks that the command was refused with exactly this error.
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match &self.outcome {
            Err(actual) if *actual == expected => {}
            Err(_) => self.fail("the command was refused with another error than expected", |out| {
                let _ = writeln!(out, "Expected error:\n  {expected:?}");
            }),
            Ok(_) => self.fail("the command succeeded, but an error was expected", |out| {
                let _ = writeln!(out, "Expected error:\n  {expected:?}");
            }),
        }
    }

    /// Checks that the command was refused with an error for which `check` holds (for error
    /// types without `PartialEq`).
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&A::Error) -> bool) {
        match &self.outcome {
            Err(actual) if check(actual) => {}
            Err(_) => self.fail("the command was refused with an error the check did not accept", |_| {}),
            Ok(_) => self.fail("the command succeeded, but an error was expected", |_| {}),
        }
    }

    /// The raw outcome, for checks the `then...` methods do not cover.
    pub fn outcome(&self) -> Result<&[A::Event], &A::Error> {
        self.outcome.as_ref().map(Vec::as_slice)
    }

    #[track_caller]
    fn into_then(self) -> Then<A> {
        if let Ok(events) = &self.outcome
            && let Some(problem) = round_trip_problem(events)
        {
            self.fail(&problem, |_| {});
        }
        let events = match self.outcome {
            Ok(events) => events,
            Err(_) => unreachable!("into_then is only called on success"),
        };
        let mut state = self.state;
        for event in &events {
            state.apply(event);
        }
        Then { state, events }
    }

    #[track_caller]
    fn fail(&self, headline: &str, details: impl FnOnce(&mut String)) -> ! {
        let mut out = format!("given/when/then for {} failed: {headline}\n\n", A::TYPE);
        write_given(&mut out, &self.history);
        match &self.outcome {
            Ok(events) if events.is_empty() => out.push_str("When: the command succeeded with no events\n"),
            Ok(events) => {
                out.push_str("When: the command produced\n");
                write_numbered(&mut out, events);
            }
            Err(error) => {
                let _ = writeln!(out, "When: the command was refused with\n  {error:?}");
            }
        }
        details(&mut out);
        panic!("{out}");
    }
}

/// A successful outcome: the events were as expected; the state after them can be checked.
pub struct Then<A: Aggregate> {
    state: A,
    events: Vec<A::Event>,
}

impl<A: Aggregate> Then<A> {
    /// The state after the produced events were applied.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The produced events.
    pub fn events(&self) -> &[A::Event] {
        &self.events
    }

    /// Runs assertions on the state after the produced events were applied. Returns the
    /// outcome again, so that a scenario can end with it or go on.
    pub fn and_state(self, check: impl FnOnce(&A)) -> Self {
        check(&self.state);
        self
    }

    /// Checks that the state after the produced events equals `expected`. A failure shows both
    /// states and, for a struct, the fields that differ.
    #[track_caller]
    pub fn and_state_is(self, expected: A) -> Self
    where
        A: PartialEq,
    {
        if self.state != expected {
            let mut out = format!(
                "given/when/then for {} failed: the state after the command differs\n\nExpected state:\n  {expected:?}\nActual state:\n  {:?}\n",
                A::TYPE,
                self.state
            );
            write_state_diff(&mut out, &expected, &self.state);
            panic!("{out}");
        }
        self
    }
}

fn write_given<E: Debug>(out: &mut String, history: &[E]) {
    if history.is_empty() {
        out.push_str("Given: no events\n");
    } else {
        out.push_str("Given:\n");
        write_numbered(out, history);
    }
}

fn write_expected<E: Debug>(out: &mut String, expected: &[E]) {
    if expected.is_empty() {
        out.push_str("Expected: no events\n");
    } else {
        out.push_str("Expected:\n");
        write_numbered(out, expected);
    }
}

fn write_numbered<E: Debug>(out: &mut String, events: &[E]) {
    for (index, event) in events.iter().enumerate() {
        let _ = writeln!(out, "  {}. {event:?}", index + 1);
    }
}

/// Event by event: a different type, the fields that differ, a missing or an extra event.
fn write_event_diff<E: EventSet>(out: &mut String, expected: &[E], actual: &[E]) {
    out.push_str("\nDifferences:\n");
    for index in 0..expected.len().max(actual.len()) {
        let n = index + 1;
        match (expected.get(index), actual.get(index)) {
            (Some(want), Some(got)) if want == got => {}
            (Some(want), Some(got)) if want.event_type() != got.event_type() => {
                let _ = writeln!(out, "  event {n}: expected {}, got {}", want.event_type(), got.event_type());
            }
            (Some(want), Some(got)) => {
                let _ = writeln!(out, "  event {n} ({}):", want.event_type());
                write_field_diff(out, want, got);
            }
            (Some(want), None) => {
                let _ = writeln!(out, "  event {n}: missing, expected {want:?}");
            }
            (None, Some(got)) => {
                let _ = writeln!(out, "  event {n}: unexpected {got:?}");
            }
            (None, None) => {}
        }
    }
}

fn write_field_diff<E: EventSet>(out: &mut String, want: &E, got: &E) {
    let as_json = |event: &E| event.encode().ok().and_then(|json| serde_json::from_str(&json).ok());
    match (as_json(want), as_json(got)) {
        (Some(serde_json::Value::Object(want_json)), Some(serde_json::Value::Object(got_json))) => {
            let before = out.len();
            let mut names: Vec<&String> = want_json.keys().chain(got_json.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                match (want_json.get(name), got_json.get(name)) {
                    (Some(w), Some(g)) if w == g => {}
                    (w, g) => {
                        let _ = writeln!(out, "    {name}: expected {}, got {}", Shown(w), Shown(g));
                    }
                }
            }
            if out.len() == before {
                // Equal JSON, unequal events: the difference is in what serde skips.
                let _ = writeln!(
                    out,
                    "    the stored JSON is the same: they differ in fields serde does not store\n    expected {want:?}\n    got      {got:?}"
                );
            }
        }
        _ => {
            let _ = writeln!(out, "    expected {want:?}\n    got      {got:?}");
        }
    }
}

/// The fields of two states that differ, read from their pretty `Debug` output (a state needs
/// no serde). Nothing is written when the output is not that of a struct with named fields.
fn write_state_diff<A: Debug>(out: &mut String, expected: &A, actual: &A) {
    let (Some(want), Some(got)) = (debug_fields(expected), debug_fields(actual)) else { return };
    out.push_str("\nDifferences:\n");
    for (name, want_value) in &want {
        match got.iter().find(|(other, _)| other == name) {
            Some((_, got_value)) if got_value == want_value => {}
            Some((_, got_value)) => {
                let _ = writeln!(out, "  {name}: expected {want_value}, got {got_value}");
            }
            None => {
                let _ = writeln!(out, "  {name}: expected {want_value}, absent");
            }
        }
    }
    for (name, got_value) in got.iter().filter(|(name, _)| !want.iter().any(|(other, _)| other == name)) {
        let _ = writeln!(out, "  {name}: unexpected, got {got_value}");
    }
}

/// `Name { a: 1, b: [..] }` printed with `{:#?}`, as `[("a", "1"), ("b", "[..]")]`, each value on
/// one line.
fn debug_fields(value: &impl Debug) -> Option<Vec<(String, String)>> {
    let text = format!("{value:#?}");
    let mut lines = text.lines();
    if !lines.next()?.ends_with(" {") {
        return None;
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line == "}" {
            break;
        }
        match line.strip_prefix("    ") {
            Some(rest) if !rest.starts_with([' ', '}', ']', ')']) => {
                let (name, value) = rest.split_once(": ")?;
                fields.push((name.to_owned(), value.to_owned()));
            }
            _ => {
                let (_, value) = fields.last_mut()?;
                let piece = line.trim();
                let closing = piece.starts_with(['}', ']', ')']);
                if closing && value.ends_with(',') {
                    value.pop();
                }
                if !value.ends_with(['[', '(']) && (!closing || piece.starts_with('}')) {
                    value.push(' ');
                }
                value.push_str(piece);
            }
        }
    }
    for (_, value) in &mut fields {
        if value.ends_with(',') {
            value.pop();
        }
    }
    Some(fields)
}

struct Shown<'a>(Option<&'a serde_json::Value>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("(absent)"),
        }
    }
}

/// An error and each of its causes, once each (errors put their cause in `source()`, not in
/// their message).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Encodes and decodes every event again; the first that does not come back equal.
fn round_trip_problem<E: EventSet>(events: &[E]) -> Option<String> {
    for (index, event) in events.iter().enumerate() {
        let n = index + 1;
        let payload = match event.encode() {
            Ok(payload) => payload,
            Err(error) => return Some(format!("produced event {n} ({}) does not encode: {error}", event.event_type())),
        };
        match E::decode(event.event_type(), event.schema_version(), &payload) {
            Ok(decoded) if decoded == *event => {}
            Ok(decoded) => {
                return Some(format!(
                    "produced event {n} does not survive encode -> decode (check its serde attributes)\n  produced {event:?}\n  stored   {payload}\n  decoded  {decoded:?}"
                ));
            }
            Err(error) => {
                return Some(format!(
                    "produced event {n} ({} v{}) does not decode after encoding: {}\n  stored {payload}",
                    event.event_type(),
                    event.schema_version(),
                    with_causes(&error)
                ));
            }
        }
    }
    None
}

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod counter;
#[cfg(feature = "testing")]
pub mod projection_suite;

/// Fails unless `checks` (a suite's list) names exactly the `pub async fn`s of `source` (the
/// suite's module), so that no check is defined and never run.
#[cfg(all(test, feature = "testing"))]
fn assert_every_check_listed(source: &str, checks: &[&str]) {
    let mut defined: Vec<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split(['<', '(']).next())
        .collect();
    let mut listed = checks.to_vec();
    listed.sort_unstable();
    defined.sort_unstable();
    assert_eq!(defined, listed, "a check is defined but not run, or run but not defined");
}

#[cfg(test)]
mod tests {
    use super::debug_fields;

    #[derive(Debug)]
    #[allow(dead_code, reason = "read through Debug")]
    struct Inner {
        a: u8,
    }

    #[derive(Debug)]
    #[allow(dead_code, reason = "read through Debug")]
    struct State {
        count: u64,
        names: Vec<&'static str>,
        inner: Inner,
        pair: (u8, u8),
    }

    #[test]
    fn debug_fields_reads_each_field_onto_one_line() {
        let state = State { count: 2, names: vec!["a", "b"], inner: Inner { a: 1 }, pair: (1, 2) };
        let fields = debug_fields(&state).unwrap_or_default();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            fields,
            [("count", "2"), ("names", "[\"a\", \"b\"]"), ("inner", "Inner { a: 1 }"), ("pair", "(1, 2)")]
        );
    }

    #[test]
    fn debug_fields_of_a_non_struct_is_none() {
        assert!(debug_fields(&5_u8).is_none());
        assert!(debug_fields(&(1, 2)).is_none());
    }
}

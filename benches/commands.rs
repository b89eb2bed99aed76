//! Commands on one bank domain, through es's repository on `InMemoryStore`, beside the same
//! command loop written by hand and the same loop driving es's store directly ("raw").
//!
//! Three workloads, each measured per command:
//!
//! - `cached`: 10,000 accounts, opened before timing, then 10 commands on each, interleaved
//!   (100,000 commands a run). es: `Repository::with_cache(10_000)`.
//! - `replay`: ten accounts with a 10,000-event stream each, ten commands on each in turn (100
//!   commands a run, so no stream grows by more than 0.1 %), no snapshots, nothing cached:
//!   every command replays its 10,000 events, decoding their JSON. es: `with_cache(0)`.
//! - `snapshots`: the same with a snapshot every 100 events (es's snapshot policy), 100 commands
//!   on each of the ten accounts (1,000 a run), so each tail length from 0 to 99 is replayed
//!   equally often and each account writes one snapshot.
//!
//! The hand-written side (`hand`) does the work es does per command and no more: keeps the
//! state (`cached`) or a snapshot as JSON (`snapshots`) or neither (`replay`), replays the
//! stream's events after it from its log decoding their JSON, decides, serializes the event to
//! JSON, gives it a UUID v7 (same crate), checks the stream version, appends a record (id,
//! stream, version, type, schema version, payload, metadata, time) to its log and applies the
//! event. The raw side (`raw`) is the same loop on es's `InMemoryStore` through the
//! `EventStore` trait, without the repository: what the store costs.
//!
//! `cargo bench --bench commands` runs criterion (each iteration is one run on fresh data built
//! untimed; divide by the run's commands). `cargo bench --bench commands -- --summary [ROUNDS]`
//! times es, hand-written and raw alternately, round after round, and prints per-command
//! medians and ratios. `commands --once VARIANT` (`cached-es`, `cached-hand`, `cached-raw`,
//! `replay-…`, `snapshots-…`) builds the data, then runs that variant once, for callgrind (see
//! `benches/callgrind_commands.sh`).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use es::prelude::*;

/// Accounts of the `cached` workload.
const ACCOUNTS: usize = 10_000;
/// Commands on each account of the `cached` workload.
const ROUNDS_PER_ACCOUNT: usize = 10;
/// Accounts of the `replay` and `snapshots` workloads.
const LONG_STREAMS: usize = 10;
/// Events in each of their streams before a run.
const STREAM_LENGTH: u64 = 10_000;
/// Snapshot interval of the `snapshots` workload.
const SNAPSHOT_EVERY: u64 = 100;

/// Runs an in-memory future to its end: nothing in `InMemoryStore` waits, so one poll does
/// (an executor would only add its own cost to both sides).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory command waited"),
    }
}

/// What the `k`-th command on an account decides, given its balance.
#[derive(Debug, Clone, Copy)]
enum Decision {
    Deposit(u64),
    Withdraw(u64),
}

fn decide(k: u64, balance: u64) -> Decision {
    let amount = k.wrapping_mul(7919) % 90 + 10;
    if k % 3 == 2 && balance >= amount { Decision::Withdraw(amount) } else { Decision::Deposit(amount) }
}

fn owner(n: usize) -> String {
    format!("owner number {n}")
}

fn account_id(n: usize) -> String {
    format!("account-{n:05}")
}

/// The decisions of a stream of `length` events after its opening: what the fills store.
fn history(length: u64) -> Vec<Decision> {
    let mut balance = 0;
    (1..length)
        .map(|k| {
            let decision = decide(k, balance);
            match decision {
                Decision::Deposit(amount) => balance += amount,
                Decision::Withdraw(amount) => balance -= amount,
            }
            decision
        })
        .collect()
}

/// The bank domain with es: `#[event]`s, `#[derive(Aggregate)]`, the repository.
mod es_side {
    use es::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};

    use super::*;

    /// An account was opened.
    #[event(version = 1)]
    pub struct AccountOpened {
        /// Who owns it.
        pub owner: String,
    }

    /// Money was paid in.
    #[event(version = 1)]
    pub struct MoneyDeposited {
        /// How much, in cents.
        pub amount: u64,
    }

    /// Money was taken out.
    #[event(version = 1)]
    pub struct MoneyWithdrawn {
        /// How much, in cents.
        pub amount: u64,
    }

    /// An account, never snapshotted.
    #[derive(Aggregate, Default, Debug, Clone, PartialEq)]
    #[aggregate(id = String, events(AccountOpened, MoneyDeposited, MoneyWithdrawn))]
    pub struct Account {
        open: bool,
        pub balance: u64,
        deposits: u32,
        withdrawals: u32,
    }

    /// The same account, snapshotted every 100 events.
    #[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[aggregate(
        id = String,
        name = "Account",
        events(AccountOpened, MoneyDeposited, MoneyWithdrawn),
        snapshot(every = 100, version = 1)
    )]
    pub struct SnapshottedAccount {
        open: bool,
        pub balance: u64,
        deposits: u32,
        withdrawals: u32,
    }

    /// What the benchmark needs of both account aggregates.
    pub trait BankAccount: Aggregate<Id = String> {
        fn balance(&self) -> u64;
        fn event(decision: Decision) -> Self::Event;
        fn opened(owner: String) -> Self::Event;
    }

    macro_rules! applies {
        ($account:ty) => {
            impl BankAccount for $account {
                fn balance(&self) -> u64 {
                    self.balance
                }
                fn event(decision: Decision) -> Self::Event {
                    event(decision)
                }
                fn opened(owner: String) -> Self::Event {
                    AccountOpened { owner }.into()
                }
            }
            impl Apply<AccountOpened> for $account {
                fn apply(&mut self, _: &AccountOpened) {
                    self.open = true;
                }
            }
            impl Apply<MoneyDeposited> for $account {
                fn apply(&mut self, event: &MoneyDeposited) {
                    self.balance += event.amount;
                    self.deposits += 1;
                }
            }
            impl Apply<MoneyWithdrawn> for $account {
                fn apply(&mut self, event: &MoneyWithdrawn) {
                    self.balance -= event.amount;
                    self.withdrawals += 1;
                }
            }
        };
    }
    applies!(Account);
    applies!(SnapshottedAccount);

    fn event<E: From<MoneyDeposited> + From<MoneyWithdrawn>>(decision: Decision) -> E {
        match decision {
            Decision::Deposit(amount) => MoneyDeposited { amount }.into(),
            Decision::Withdraw(amount) => MoneyWithdrawn { amount }.into(),
        }
    }

    /// The stored form of `decision`, as es writes it.
    fn raw(decision: Decision) -> RawEvent {
        match decision {
            Decision::Deposit(amount) => RawEvent::new("MoneyDeposited", 1, format!(r#"{{"amount":{amount}}}"#)),
            Decision::Withdraw(amount) => RawEvent::new("MoneyWithdrawn", 1, format!(r#"{{"amount":{amount}}}"#)),
        }
    }

    /// Fills `streams` accounts' streams with `length` events each (and, for snapshotted ones,
    /// the snapshot the repository would have written at the end), through the store.
    pub fn fill(store: &InMemoryStore, streams: usize, length: u64, snapshot: bool) {
        let history = history(length);
        for n in 0..streams {
            let stream = StreamId::of::<Account>(&account_id(n));
            let opened = RawEvent::new("AccountOpened", 1, serde_json::json!({ "owner": owner(n) }).to_string());
            let mut all = vec![NewEvent::new(opened)];
            all.extend(history.iter().map(|&decision| NewEvent::new(raw(decision))));
            let mut state = SnapshottedAccount::default();
            for chunk in all.chunks(1000) {
                now(store.append(&stream, ExpectedVersion::Any, chunk.to_vec())).expect("fill");
            }
            if snapshot {
                state.open = true;
                for &decision in &history {
                    state.apply(&event::<SnapshottedAccountEvent>(decision));
                }
                let state = serde_json::to_string(&state).expect("state serializes");
                let snapshot = es::Snapshot { stream, version: Version(length), snapshot_version: 1, state };
                now(store.save_snapshot(snapshot)).expect("snapshot");
            }
        }
    }

    pub struct Cached {
        repository: Repository<Account, InMemoryStore>,
        ids: Vec<String>,
    }

    impl Cached {
        pub fn new() -> Self {
            let repository = Repository::new(InMemoryStore::new()).with_cache(ACCOUNTS);
            let ids: Vec<String> = (0..ACCOUNTS).map(account_id).collect();
            for (n, id) in ids.iter().enumerate() {
                now(repository.execute(id, |_| Ok(AccountEvent::from(AccountOpened { owner: owner(n) }))))
                    .expect("open");
            }
            Self { repository, ids }
        }

        pub fn balances(&self) -> Vec<u64> {
            self.ids.iter().map(|id| now(self.repository.load(id)).expect("load").balance).collect()
        }
    }

    /// `cached`, es: 100,000 commands.
    #[inline(never)]
    pub fn run_cached(fixture: &mut Cached) -> u64 {
        let mut last = 0;
        for round in 0..ROUNDS_PER_ACCOUNT {
            for (n, id) in fixture.ids.iter().enumerate() {
                let k = (round * ACCOUNTS + n) as u64;
                let executed = now(fixture.repository.execute(id, |a| Ok(event::<AccountEvent>(decide(k, a.balance)))))
                    .expect("execute");
                last = executed.version().map_or(0, |v| v.0);
            }
        }
        last
    }

    pub struct Long<A: Aggregate> {
        repository: Repository<A, InMemoryStore>,
        ids: Vec<String>,
    }

    impl<A: BankAccount> Long<A> {
        pub fn new() -> Self {
            let store = InMemoryStore::new();
            fill(&store, LONG_STREAMS, STREAM_LENGTH, A::SNAPSHOT.is_some());
            Self { repository: Repository::new(store).with_cache(0), ids: (0..LONG_STREAMS).map(account_id).collect() }
        }
    }

    impl<A: BankAccount> Long<A> {
        pub fn balances(&self) -> Vec<u64> {
            self.ids.iter().map(|id| now(self.repository.load(id)).expect("load").balance()).collect()
        }
    }

    /// `replay`, es: 100 commands, each replaying a 10,000-event stream.
    #[inline(never)]
    pub fn run_replay(fixture: &mut Long<Account>) -> u64 {
        let mut last = 0;
        for round in 0..10 {
            for id in &fixture.ids {
                let k = STREAM_LENGTH + round;
                let executed = now(fixture.repository.execute(id, |a| Ok(event::<AccountEvent>(decide(k, a.balance)))))
                    .expect("execute");
                last = executed.version().map_or(0, |v| v.0);
            }
        }
        last
    }

    /// `snapshots`, es: 1,000 commands, each from the latest snapshot.
    #[inline(never)]
    pub fn run_snapshots(fixture: &mut Long<SnapshottedAccount>) -> u64 {
        let mut last = 0;
        for round in 0..SNAPSHOT_EVERY {
            for id in &fixture.ids {
                let k = STREAM_LENGTH + round;
                let executed =
                    now(fixture.repository.execute(id, |a| Ok(event::<SnapshottedAccountEvent>(decide(k, a.balance)))))
                        .expect("execute");
                last = executed.version().map_or(0, |v| v.0);
            }
        }
        last
    }
}

/// The same command loop by hand: a log, a stream index, the state cache or snapshots.
mod hand {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::SystemTime;

    use es::{Metadata, Uuid};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Opened {
        owner: String,
    }

    #[derive(Serialize, Deserialize)]
    struct Amount {
        amount: u64,
    }

    enum Event {
        Opened(Opened),
        Deposited(Amount),
        Withdrawn(Amount),
    }

    impl Event {
        fn encode(&self) -> (&'static str, u32, String) {
            let encoded = match self {
                Event::Opened(event) => ("AccountOpened", serde_json::to_string(event)),
                Event::Deposited(event) => ("MoneyDeposited", serde_json::to_string(event)),
                Event::Withdrawn(event) => ("MoneyWithdrawn", serde_json::to_string(event)),
            };
            (encoded.0, 1, encoded.1.expect("serializes"))
        }

        fn decode(record: &Record) -> Event {
            let payload = record.payload.as_str();
            let decoded = match (record.event_type, record.schema_version) {
                ("AccountOpened", 1) => serde_json::from_str(payload).map(Event::Opened),
                ("MoneyDeposited", 1) => serde_json::from_str(payload).map(Event::Deposited),
                ("MoneyWithdrawn", 1) => serde_json::from_str(payload).map(Event::Withdrawn),
                _ => panic!("unknown event"),
            };
            decoded.expect("decodes")
        }
    }

    #[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
    pub struct State {
        open: bool,
        pub balance: u64,
        deposits: u32,
        withdrawals: u32,
    }

    impl State {
        fn apply(&mut self, event: &Event) {
            match event {
                Event::Opened(_) => self.open = true,
                Event::Deposited(event) => {
                    self.balance += event.amount;
                    self.deposits += 1;
                }
                Event::Withdrawn(event) => {
                    self.balance -= event.amount;
                    self.withdrawals += 1;
                }
            }
        }
    }

    /// One committed event, as a store records it.
    #[allow(dead_code)]
    struct Record {
        id: Uuid,
        stream: Arc<str>,
        version: u64,
        event_type: &'static str,
        schema_version: u32,
        payload: String,
        metadata: Metadata,
        recorded_at: SystemTime,
    }

    /// One account: its events in the log, and its cached state or latest snapshot.
    struct Stream {
        name: Arc<str>,
        /// Indexes of its events in the log.
        events: Vec<usize>,
        cached: Option<(State, u64)>,
        snapshot: Option<(u64, String)>,
    }

    impl Stream {
        fn new(name: Arc<str>) -> Self {
            Self { name, events: Vec::new(), cached: None, snapshot: None }
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        Cached,
        Replay,
        Snapshots,
    }

    pub struct Bank {
        mode: Mode,
        log: Vec<Record>,
        streams: HashMap<Arc<str>, Stream>,
        pub ids: Vec<String>,
    }

    impl Bank {
        fn empty(mode: Mode) -> Self {
            Self { mode, log: Vec::new(), streams: HashMap::new(), ids: Vec::new() }
        }

        /// `cached`: 10,000 accounts opened.
        pub fn cached() -> Self {
            let mut bank = Self::empty(Mode::Cached);
            bank.ids = (0..ACCOUNTS).map(account_id).collect();
            for n in 0..ACCOUNTS {
                let id = account_id(n);
                bank.execute(&id, |_| Event::Opened(Opened { owner: owner(n) }));
            }
            bank
        }

        /// `replay` and `snapshots`: ten 10,000-event streams (and their snapshots).
        pub fn long(mode: Mode) -> Self {
            let mut bank = Self::empty(mode);
            bank.ids = (0..LONG_STREAMS).map(account_id).collect();
            let history = history(STREAM_LENGTH);
            for n in 0..LONG_STREAMS {
                let mut stream = Stream::new(Arc::from(account_id(n)));
                let mut state = State::default();
                let opened = Event::Opened(Opened { owner: owner(n) });
                for (at, event) in std::iter::once(opened).chain(history.iter().map(|&d| to_event(d))).enumerate() {
                    let (event_type, schema_version, payload) = event.encode();
                    stream.events.push(bank.log.len());
                    bank.log.push(Record {
                        id: Uuid::now_v7(),
                        stream: Arc::clone(&stream.name),
                        version: at as u64 + 1,
                        event_type,
                        schema_version,
                        payload,
                        metadata: Metadata::new(),
                        recorded_at: SystemTime::now(),
                    });
                    state.apply(&event);
                }
                if mode == Mode::Snapshots {
                    let json = serde_json::to_string(&state).expect("state serializes");
                    stream.snapshot = Some((STREAM_LENGTH, json));
                }
                bank.streams.insert(Arc::clone(&stream.name), stream);
            }
            bank
        }

        /// One command: load, decide, encode, id, version check, append, apply, cache or
        /// snapshot. Returns the new version.
        fn execute(&mut self, id: &str, decide: impl FnOnce(&State) -> Event) -> u64 {
            let Some(stream) = self.streams.get_mut(id) else {
                let name: Arc<str> = Arc::from(id);
                self.streams.insert(Arc::clone(&name), Stream::new(name));
                return self.execute(id, decide);
            };
            let (mut state, version) = load(self.mode, &self.log, stream);
            let event = decide(&state);
            let (event_type, schema_version, payload) = event.encode();
            let event_id = Uuid::now_v7();
            assert_eq!(stream.events.len() as u64, version, "version conflict");
            let next = version + 1;
            stream.events.push(self.log.len());
            self.log.push(Record {
                id: event_id,
                stream: Arc::clone(&stream.name),
                version: next,
                event_type,
                schema_version,
                payload,
                metadata: Metadata::new(),
                recorded_at: SystemTime::now(),
            });
            state.apply(&event);
            match self.mode {
                Mode::Cached => stream.cached = Some((state, next)),
                Mode::Snapshots if version / SNAPSHOT_EVERY != next / SNAPSHOT_EVERY => {
                    let json = serde_json::to_string(&state).expect("state serializes");
                    stream.snapshot = Some((next, json));
                }
                _ => {}
            }
            next
        }

        pub fn balances(&self) -> Vec<u64> {
            self.ids.iter().map(|id| load(self.mode, &self.log, &self.streams[id.as_str()]).0.balance).collect()
        }
    }

    /// Where a command starts: the cached state, the snapshot or nothing, then the events after
    /// it.
    fn load(mode: Mode, log: &[Record], stream: &Stream) -> (State, u64) {
        let (mut state, from) = match (mode, &stream.cached, &stream.snapshot) {
            (Mode::Cached, Some(cached), _) => *cached,
            (Mode::Snapshots, _, Some((version, json))) => {
                (serde_json::from_str(json).expect("snapshot decodes"), *version)
            }
            _ => (State::default(), 0),
        };
        let tail = stream.events.get(from as usize..).expect("the stream reaches the snapshot");
        for &index in tail {
            state.apply(&Event::decode(&log[index]));
        }
        (state, stream.events.len() as u64)
    }

    fn to_event(decision: Decision) -> Event {
        match decision {
            Decision::Deposit(amount) => Event::Deposited(Amount { amount }),
            Decision::Withdraw(amount) => Event::Withdrawn(Amount { amount }),
        }
    }

    /// `cached`, by hand: 100,000 commands.
    #[inline(never)]
    pub fn run_cached(bank: &mut Bank) -> u64 {
        let ids = std::mem::take(&mut bank.ids);
        let mut last = 0;
        for round in 0..ROUNDS_PER_ACCOUNT {
            for (n, id) in ids.iter().enumerate() {
                let k = (round * ACCOUNTS + n) as u64;
                last = bank.execute(id, |state| to_event(decide(k, state.balance)));
            }
        }
        bank.ids = ids;
        last
    }

    /// `replay` and `snapshots`, by hand: `rounds` commands on each stream in turn.
    #[inline(never)]
    pub fn run_long(bank: &mut Bank, rounds: u64) -> u64 {
        let ids = std::mem::take(&mut bank.ids);
        let mut last = 0;
        for round in 0..rounds {
            for id in &ids {
                let k = STREAM_LENGTH + round;
                last = bank.execute(id, |state| to_event(decide(k, state.balance)));
            }
        }
        bank.ids = ids;
        last
    }
}

/// The same loop on es's store, without the repository: what the store and decoding cost.
mod raw {
    use std::collections::HashMap;

    use es::{EventSet, EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, StreamId};

    use super::es_side::{Account, BankAccount, SnapshottedAccount};
    use super::*;

    pub struct Raw<A> {
        store: InMemoryStore,
        /// `cached`: each account's state and version.
        cache: Option<HashMap<StreamId, (A, Version)>>,
        streams: Vec<StreamId>,
    }

    impl<A: BankAccount> Raw<A> {
        pub fn cached() -> Self {
            let mut raw = Raw {
                store: InMemoryStore::new(),
                cache: Some(HashMap::new()),
                streams: (0..ACCOUNTS).map(|n| StreamId::of::<A>(&account_id(n))).collect(),
            };
            for n in 0..ACCOUNTS {
                let stream = raw.streams[n].clone();
                raw.execute(&stream, |_| A::opened(owner(n)));
            }
            raw
        }

        pub fn long() -> Self {
            let store = InMemoryStore::new();
            es_side::fill(&store, LONG_STREAMS, STREAM_LENGTH, A::SNAPSHOT.is_some());
            Raw { store, cache: None, streams: (0..LONG_STREAMS).map(|n| StreamId::of::<A>(&account_id(n))).collect() }
        }

        /// The cached state or the snapshot, then the events after it.
        fn load(&self, stream: &StreamId) -> (A, Version) {
            let (mut state, mut version) = match &self.cache {
                Some(cache) => cache.get(stream).cloned().unwrap_or_default(),
                None if A::SNAPSHOT.is_some() => match now(self.store.load_snapshot(stream)).expect("snapshot") {
                    Some(snapshot) => {
                        let state = A::decode_snapshot(&snapshot.state).expect("snapshots").expect("decodes");
                        (state, snapshot.version)
                    }
                    None => Default::default(),
                },
                None => Default::default(),
            };
            loop {
                let page = now(self.store.read_stream(stream, version.next(), 1024)).expect("read");
                for record in &page {
                    let raw = &record.event;
                    let event = A::Event::decode(&raw.event_type, raw.schema_version, &raw.payload).expect("decodes");
                    state.apply(&event);
                    version = record.stream_version;
                }
                if page.len() < 1024 {
                    return (state, version);
                }
            }
        }

        /// One command: load, decide, encode as es does, append expecting the loaded version,
        /// apply, cache or snapshot.
        fn execute(&mut self, stream: &StreamId, decide: impl FnOnce(&A) -> A::Event) -> Version {
            let (mut state, version) = self.load(stream);
            let event = decide(&state);
            let raw = RawEvent {
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload: event.encode().expect("serializes"),
            };
            let appended =
                now(self.store.append(stream, ExpectedVersion::at(version), vec![NewEvent::new(raw)])).expect("append");
            let next = appended.events.last().map_or(version, |event| event.stream_version);
            state.apply(&event);
            if let Some(cache) = &mut self.cache {
                match cache.get_mut(stream) {
                    Some(slot) => *slot = (state, next),
                    None => {
                        cache.insert(stream.clone(), (state, next));
                    }
                }
            } else if let Some(policy) = A::SNAPSHOT
                && version.0 / policy.every != next.0 / policy.every
            {
                let state = state.encode_snapshot().expect("snapshots").expect("serializes");
                let snapshot = es::Snapshot { stream: stream.clone(), version: next, snapshot_version: 1, state };
                now(self.store.save_snapshot(snapshot)).expect("snapshot");
            }
            next
        }

        pub fn balances(&self) -> Vec<u64> {
            self.streams.iter().map(|stream| self.load(stream).0.balance()).collect()
        }

        fn run(&mut self, rounds: u64, first_k: impl Fn(u64, usize) -> u64) -> u64 {
            let streams = std::mem::take(&mut self.streams);
            let mut last = Version::NONE;
            for round in 0..rounds {
                for (n, stream) in streams.iter().enumerate() {
                    let k = first_k(round, n);
                    last = self.execute(stream, |state| A::event(decide(k, state.balance())));
                }
            }
            self.streams = streams;
            last.0
        }
    }

    /// `cached`, raw: 100,000 commands.
    #[inline(never)]
    pub fn run_cached(raw: &mut Raw<Account>) -> u64 {
        raw.run(ROUNDS_PER_ACCOUNT as u64, |round, n| round * ACCOUNTS as u64 + n as u64)
    }

    /// `replay`, raw: 100 commands.
    #[inline(never)]
    pub fn run_replay(raw: &mut Raw<Account>) -> u64 {
        raw.run(10, |round, _| STREAM_LENGTH + round)
    }

    /// `snapshots`, raw: 1,000 commands.
    #[inline(never)]
    pub fn run_snapshots(raw: &mut Raw<SnapshottedAccount>) -> u64 {
        raw.run(SNAPSHOT_EVERY, |round, _| STREAM_LENGTH + round)
    }
}

/// One side of a workload, run once on fresh data: the time of the run alone, and (with
/// `check`) the balances it left.
type Side = fn(bool) -> (Duration, Option<Vec<u64>>);

fn timed<F>(
    setup: impl FnOnce() -> F,
    run: impl FnOnce(&mut F) -> u64,
    balances: impl FnOnce(&F) -> Vec<u64>,
    check: bool,
) -> (Duration, Option<Vec<u64>>) {
    let mut fixture = setup();
    let start = Instant::now();
    black_box(run(black_box(&mut fixture)));
    let elapsed = start.elapsed();
    (elapsed, check.then(|| balances(&fixture)))
}

struct Workload {
    name: &'static str,
    /// Commands in one run.
    commands: u64,
    /// The issue's goal for es / hand-written.
    goal: f64,
    es: Side,
    hand: Side,
    raw: Side,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "cached",
        commands: (ACCOUNTS * ROUNDS_PER_ACCOUNT) as u64,
        goal: 5.0,
        es: |check| timed(es_side::Cached::new, es_side::run_cached, es_side::Cached::balances, check),
        hand: |check| timed(hand::Bank::cached, hand::run_cached, hand::Bank::balances, check),
        raw: |check| timed(raw::Raw::cached, raw::run_cached, raw::Raw::balances, check),
    },
    Workload {
        name: "replay",
        commands: 10 * LONG_STREAMS as u64,
        goal: 100.0,
        es: |check| timed(es_side::Long::new, es_side::run_replay, es_side::Long::balances, check),
        hand: |check| {
            timed(|| hand::Bank::long(hand::Mode::Replay), |bank| hand::run_long(bank, 10), hand::Bank::balances, check)
        },
        raw: |check| timed(raw::Raw::long, raw::run_replay, raw::Raw::balances, check),
    },
    Workload {
        name: "snapshots",
        commands: SNAPSHOT_EVERY * LONG_STREAMS as u64,
        goal: 1.0,
        es: |check| timed(es_side::Long::new, es_side::run_snapshots, es_side::Long::balances, check),
        hand: |check| {
            timed(
                || hand::Bank::long(hand::Mode::Snapshots),
                |bank| hand::run_long(bank, SNAPSHOT_EVERY),
                hand::Bank::balances,
                check,
            )
        },
        raw: |check| timed(raw::Raw::long, raw::run_snapshots, raw::Raw::balances, check),
    },
];

impl Workload {
    fn sides(&self) -> [(&'static str, Side); 3] {
        [("es", self.es), ("hand_written", self.hand), ("raw_store", self.raw)]
    }

    /// Runs every side once: they must leave the same balances.
    fn check(&self) {
        let [es, hand, raw] = self.sides().map(|(_, side)| side(true).1.expect("checked"));
        assert_eq!(es, hand, "{}: es and the hand-written loop must agree", self.name);
        assert_eq!(es, raw, "{}: es and the raw loop must agree", self.name);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--once") {
        let variant = args.get(at + 1).map_or("", String::as_str);
        if let Err(message) = once(variant) {
            eprintln!("{message}");
            std::process::exit(2);
        }
        return;
    }
    if let Some(at) = args.iter().position(|arg| arg == "--summary") {
        let rounds = args.get(at + 1).and_then(|n| n.parse().ok()).unwrap_or(10).max(1);
        summary(rounds);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    for workload in &WORKLOADS {
        workload.check();
        let mut group = criterion.benchmark_group(format!("commands/{}", workload.name));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
            .throughput(criterion::Throughput::Elements(workload.commands));
        for (name, side) in workload.sides() {
            group.bench_function(name, |b| b.iter_custom(|iters| (0..iters).map(|_| side(false).0).sum()));
        }
        group.finish();
    }
    criterion.final_summary();
    println!(
        "(criterion times one run: cached 100,000 commands, replay 100, snapshots 1,000; \
         `-- --summary` prints per-command figures and ratios)"
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Times the three sides of each workload alternately (the order rotating) for `rounds`
/// rounds after one unrecorded round, and prints per-command medians and ratios.
fn summary(rounds: usize) {
    println!(
        "{:<10} {:>13} {:>13} {:>13} {:>9} {:>12} {:>10} {:>8} {:>6}",
        "workload", "hand-written", "raw store", "es", "es/hand", "(per round)", "(fastest)", "es/raw", "goal"
    );
    for workload in &WORKLOADS {
        workload.check();
        let sides = workload.sides();
        let mut times: [Vec<f64>; 3] = Default::default();
        let mut ratios = Vec::new();
        for round in 0..=rounds {
            let mut this = [0.0; 3];
            for turn in 0..3 {
                let at = (round + turn) % 3;
                this[at] = (sides[at].1)(false).0.as_secs_f64() * 1e9 / workload.commands as f64;
            }
            if round > 0 {
                for (at, time) in this.iter().enumerate() {
                    times[at].push(*time);
                }
                ratios.push(this[0] / this[1]);
            }
        }
        let fastest = |at: usize| times[at].iter().copied().fold(f64::INFINITY, f64::min);
        let fastest_ratio = fastest(0) / fastest(1);
        let [es, hand, raw] = times.map(|mut t| median(&mut t));
        println!(
            "{:<10} {:>13} {:>13} {:>13} {:>8.2}x {:>11.2}x {:>9.2}x {:>7.2}x {:>5}x",
            workload.name,
            per_command(hand),
            per_command(raw),
            per_command(es),
            es / hand,
            median(&mut ratios),
            fastest_ratio,
            es / raw,
            workload.goal
        );
    }
    println!(
        "(per command, medians of {rounds} rounds; es/hand is the ratio of the medians, then the median \
         per-round ratio and the ratio of the fastest rounds, which other load on the machine disturbs least)"
    );
}

fn per_command(nanos: f64) -> String {
    if nanos >= 10_000.0 { format!("{:.1} us", nanos / 1e3) } else { format!("{nanos:.0} ns") }
}

/// Builds the data of one variant, then runs it once (callgrind counts only inside the run
/// function, through `--toggle-collect`).
fn once(variant: &str) -> Result<(), String> {
    let (workload, side) = variant.rsplit_once('-').ok_or_else(|| format!("unknown variant `{variant}`"))?;
    let workload = WORKLOADS
        .iter()
        .find(|w| w.name == workload)
        .ok_or_else(|| format!("unknown workload `{workload}`: use cached, replay or snapshots"))?;
    let run = match side {
        "es" => workload.es,
        "hand" => workload.hand,
        "raw" => workload.raw,
        other => return Err(format!("unknown side `{other}`: use es, hand or raw")),
    };
    let (elapsed, _) = run(false);
    eprintln!("{variant}: {:.1} ns per command", elapsed.as_secs_f64() * 1e9 / workload.commands as f64);
    Ok(())
}

//! `execute` on SQLite (load + decide + append, one durable commit each) over 100 accounts in
//! turn, beside plain rusqlite doing the same work on the same file layout: read the stream's
//! events after the version it holds in memory, decide, serialize the event, then in one
//! IMMEDIATE transaction check the stream's version and insert the row (WAL,
//! `synchronous = FULL`, UUID v7 ids in insertion order).
//!
//! `cargo bench --bench sqlite_execute [-- ROUNDS]` runs both sides alternately, round after
//! round (so both meet the same load from elsewhere), and prints commands per second from the
//! median round of each and the ratio es / raw.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use es::prelude::*;
use es::{RawEvent, SqliteStore};
use es_sqlite::rusqlite::{Connection, TransactionBehavior, params};

/// Money was paid in.
#[event(version = 1)]
pub struct Deposited {
    /// How much.
    pub amount: u64,
}

/// An account.
#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(Deposited))]
pub struct Account {
    balance: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

const ACCOUNTS: usize = 100;
const COMMANDS_PER_ROUND: usize = 200;

fn deposit(account: &Account) -> Result<Deposited, std::convert::Infallible> {
    Ok(Deposited { amount: account.balance % 7 + 1 })
}

/// The same work by hand: state in a map, tail read, decide, encode, version check, insert.
struct Raw {
    connection: Connection,
    states: HashMap<String, (u64, i64)>,
}

impl Raw {
    fn execute(&mut self, id: &str) {
        let (mut balance, mut version) = self.states.get(id).copied().unwrap_or((0, 0));
        {
            let mut tail = self
                .connection
                .prepare_cached(
                    "SELECT stream_version, payload FROM events WHERE stream_type = 'Account' AND stream_id = ?1 \
                     AND stream_version > ?2 ORDER BY stream_version LIMIT 1024",
                )
                .expect("prepare");
            let mut rows = tail.query(params![id, version]).expect("tail");
            while let Some(row) = rows.next().expect("row") {
                let payload: String = row.get(1).expect("payload");
                let event: Deposited = serde_json::from_str(&payload).expect("decode");
                balance += event.amount;
                version = row.get(0).expect("version");
            }
        }
        let event = Deposited { amount: balance % 7 + 1 };
        let payload = serde_json::to_string(&event).expect("encode");
        let raw = RawEvent::new("Deposited", 1, payload);
        let micros =
            i64::try_from(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_micros())
                .expect("time");
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin");
        let current: i64 = transaction
            .prepare_cached(
                "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_type = 'Account' AND stream_id = ?1",
            )
            .expect("prepare")
            .query_row(params![id], |row| row.get(0))
            .expect("version");
        assert_eq!(current, version, "another writer");
        transaction
            .prepare_cached(
                "INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version, \
                 payload, metadata, recorded_at) VALUES ('Account', ?1, ?2, ?3, ?4, ?5, ?6, '{}', ?7)",
            )
            .expect("prepare")
            .execute(params![
                id,
                version + 1,
                Uuid::now_v7().as_bytes(),
                raw.event_type,
                raw.schema_version,
                raw.payload,
                micros
            ])
            .expect("insert");
        transaction.commit().expect("commit");
        self.states.insert(id.to_owned(), (balance + event.amount, version + 1));
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(15);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
    let ids: Vec<String> = (0..ACCOUNTS).map(|n| format!("account-{n}")).collect();

    let store = SqliteStore::open(dir.path().join("es.db")).expect("open");
    let accounts = Repository::<Account, _>::new(store);
    // The raw side uses a file with the store's own schema.
    drop(SqliteStore::open(dir.path().join("raw.db")).expect("open"));
    let connection = Connection::open(dir.path().join("raw.db")).expect("open raw");
    connection.pragma_update(None, "journal_mode", "WAL").expect("wal");
    connection.pragma_update(None, "synchronous", "FULL").expect("synchronous");
    let mut raw = Raw { connection, states: HashMap::new() };

    // Warm up both: every account has a few events and is in memory.
    for id in &ids {
        runtime.block_on(accounts.execute(id, deposit)).expect("execute");
        raw.execute(id);
    }
    let (mut es_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        for n in 0..COMMANDS_PER_ROUND {
            runtime.block_on(accounts.execute(&ids[n % ACCOUNTS], deposit)).expect("execute");
        }
        es_rates.push(COMMANDS_PER_ROUND as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        for n in 0..COMMANDS_PER_ROUND {
            raw.execute(&ids[n % ACCOUNTS]);
        }
        raw_rates.push(COMMANDS_PER_ROUND as f64 / started.elapsed().as_secs_f64());
    }
    let ratios: Vec<f64> = es_rates.iter().zip(&raw_rates).map(|(es, raw)| es / raw).collect();
    let (es_rate, raw_rate) = (median(es_rates), median(raw_rates));
    println!("execute on SQLite, {ACCOUNTS} accounts in turn, {rounds} rounds of {COMMANDS_PER_ROUND} commands");
    println!("  raw rusqlite  {raw_rate:>9.0} commands/s (median round)");
    println!("  es            {es_rate:>9.0} commands/s (median round)");
    println!(
        "  es / raw      {:>9.2} (ratio of medians), {:.2} (median of per-round ratios)",
        es_rate / raw_rate,
        median(ratios)
    );
}

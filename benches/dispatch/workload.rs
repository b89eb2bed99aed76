//! The events both sides replay and the records both sides decode: many short account streams
//! from a seeded generator, so every run and both sides see exactly the same data.

use std::fmt;

use es::EventSet;

use crate::generated::{
    AccountClosed, AccountEvent, AccountFrozen, AccountOpened, AccountUnfrozen, MoneyDeposited, MoneyDepositedV1,
    MoneyWithdrawn,
};
use crate::hand;

/// A record as a store hands it back: type name, schema version, JSON payload.
pub struct Stored {
    /// The stored type name.
    pub event_type: String,
    /// The schema version the payload was written with.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: String,
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One event of a stream and the schema version it is stored with: the current one, or 1 for
/// deposits and withdrawals written by older code (whose typed form is then what the upcaster
/// makes of them: no reference, no fee).
pub type Generated = (AccountEvent, u32);

/// Generates `total` events in streams of 50 to 150 events: opened, deposits and withdrawals
/// (never below a zero balance), the odd freeze and unfreeze, closed.
pub fn streams(total: usize, seed: u64) -> Vec<Vec<Generated>> {
    let mut rng = Rng(seed | 1);
    let mut streams = Vec::new();
    let mut produced = 0;
    while produced < total {
        let len = usize::try_from(50 + rng.below(101)).unwrap_or(100).min(total - produced);
        streams.push(stream(&mut rng, streams.len(), len));
        produced += len;
    }
    streams
}

fn stream(rng: &mut Rng, number: usize, len: usize) -> Vec<Generated> {
    let mut events = Vec::with_capacity(len);
    let initial_deposit = rng.below(10_000);
    let mut balance = initial_deposit;
    let mut frozen = false;
    events.push((AccountEvent::from(AccountOpened { owner: format!("owner-{number}"), initial_deposit }), 1));
    for index in 1..len {
        let roll = rng.below(100);
        let event = if index + 1 == len {
            (AccountClosed {}.into(), 1)
        } else if frozen {
            frozen = false;
            (AccountUnfrozen {}.into(), 1)
        } else if roll < 4 {
            frozen = true;
            let reason = if roll < 2 { "customer request" } else { "suspicious activity" };
            (AccountFrozen { reason: reason.to_owned() }.into(), 1)
        } else if roll < 55 || balance == 0 {
            let amount = 1 + rng.below(50_000);
            balance += amount;
            if rng.below(5) == 0 {
                (MoneyDeposited { amount, reference: String::new() }.into(), 1)
            } else {
                let reference = format!("INV-{:06}", rng.below(1_000_000));
                (MoneyDeposited { amount, reference }.into(), 2)
            }
        } else {
            let amount = 1 + rng.below(balance);
            balance -= amount;
            if rng.below(10) == 0 {
                (MoneyWithdrawn { amount, fee: 0 }.into(), 1)
            } else {
                let fee = if rng.below(4) == 0 { balance.min(50) } else { 0 };
                balance -= fee;
                (MoneyWithdrawn { amount, fee }.into(), 2)
            }
        };
        events.push(event);
    }
    events
}

/// The typed events of the es side, for replay.
pub fn typed(streams: &[Vec<Generated>]) -> Vec<Vec<AccountEvent>> {
    streams.iter().map(|s| s.iter().map(|(event, _)| event.clone()).collect()).collect()
}

/// The typed events of both sides: the es enum and the same events as the hand-written enum.
/// Built stream by stream, alternating, so that both sides' events are spread over the same
/// stretch of the heap and neither gets the better memory layout.
pub fn typed_both(streams: &[Vec<Generated>]) -> (Vec<Vec<AccountEvent>>, Vec<Vec<hand::AccountEvent>>) {
    let mut es_side = Vec::with_capacity(streams.len());
    let mut hand_side = Vec::with_capacity(streams.len());
    for stream in streams {
        es_side.push(stream.iter().map(|(event, _)| event.clone()).collect());
        hand_side.push(stream.iter().map(|(event, _)| to_hand(event)).collect());
    }
    (es_side, hand_side)
}

fn to_hand(event: &AccountEvent) -> hand::AccountEvent {
    match event {
        AccountEvent::AccountOpened(e) => hand::AccountEvent::AccountOpened(hand::AccountOpened {
            owner: e.owner.clone(),
            initial_deposit: e.initial_deposit,
        }),
        AccountEvent::MoneyDeposited(e) => hand::AccountEvent::MoneyDeposited(hand::MoneyDeposited {
            amount: e.amount,
            reference: e.reference.clone(),
        }),
        AccountEvent::MoneyWithdrawn(e) => {
            hand::AccountEvent::MoneyWithdrawn(hand::MoneyWithdrawn { amount: e.amount, fee: e.fee })
        }
        AccountEvent::AccountFrozen(e) => {
            hand::AccountEvent::AccountFrozen(hand::AccountFrozen { reason: e.reason.clone() })
        }
        AccountEvent::AccountUnfrozen(_) => hand::AccountEvent::AccountUnfrozen(hand::AccountUnfrozen {}),
        AccountEvent::AccountClosed(_) => hand::AccountEvent::AccountClosed(hand::AccountClosed {}),
    }
}

/// The records a store would hand back for these streams; deposits and withdrawals marked
/// version 1 are written in their version-1 shape.
pub fn stored(streams: &[Vec<Generated>]) -> Vec<Vec<Stored>> {
    streams.iter().map(|s| s.iter().map(|(event, version)| store(event, *version)).collect()).collect()
}

fn store(event: &AccountEvent, schema_version: u32) -> Stored {
    let payload = match (event, schema_version) {
        (AccountEvent::MoneyDeposited(e), 1) => serde_json::to_string(&MoneyDepositedV1 { amount: e.amount }),
        (AccountEvent::MoneyWithdrawn(e), 1) => serde_json::to_string(&serde_json::json!({ "amount": e.amount })),
        (event, _) => event.encode(),
    };
    Stored {
        event_type: event.event_type().to_owned(),
        schema_version,
        payload: payload.expect("bench events serialize"),
    }
}

/// How many events of each type and stored version a workload holds.
pub struct Mix<'a>(pub &'a [Vec<Generated>]);

impl fmt::Display for Mix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts: Vec<(&str, u32, usize)> = Vec::new();
        for (event, version) in self.0.iter().flatten() {
            let key = (event.event_type(), *version);
            match counts.iter_mut().find(|(name, v, _)| (*name, *v) == key) {
                Some(entry) => entry.2 += 1,
                None => counts.push((key.0, key.1, 1)),
            }
        }
        counts.sort_unstable();
        let total: usize = counts.iter().map(|c| c.2).sum();
        write!(f, "{total} events in {} streams:", self.0.len())?;
        for (name, version, count) in counts {
            write!(f, " {name} v{version} {:.1}%", 100.0 * count as f64 / total as f64)?;
        }
        Ok(())
    }
}

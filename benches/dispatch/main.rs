//! es's generated code against the same domain written by hand.
//!
//! - `replay`: folding 1,000,000 typed events into their aggregates, through the generated
//!   `Apply<AccountEvent>` dispatch against a hand-written enum and `match`.
//! - `decode_apply`: decoding 100,000 stored records (type name, schema version, JSON payload;
//!   some deposits and withdrawals in their older version, so both upcasters run) and applying
//!   them, through the generated `AccountEvent::decode` against serde_json into a hand-written
//!   enum with a hand-written dispatch on the type name and version.
//!
//! Both sides run the same seeded data, built before timing, and must agree on the result.
//!
//! `cargo bench --bench dispatch` runs criterion, one variant after the other.
//! `cargo bench --bench dispatch -- --paired [ROUNDS]` times the two sides of each benchmark
//! alternately, round after round, and prints the median of each and of the per-round ratios:
//! on a machine whose load changes while it runs, that ratio is steadier than two separate runs.
//! `dispatch --once VARIANT` (VARIANT one of `replay-generated`, `replay-hand`,
//! `decode-generated`, `decode-hand`) builds the data, then runs that variant a single time,
//! for `valgrind --tool=callgrind` (see `benches/callgrind.sh`).

mod generated;
mod hand;
mod workload;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// Events replayed by `replay`.
const REPLAY_EVENTS: usize = 1_000_000;
/// Records decoded and applied by `decode_apply`.
const DECODE_EVENTS: usize = 100_000;

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
    if let Some(at) = args.iter().position(|arg| arg == "--paired") {
        let rounds = args.get(at + 1).and_then(|n| n.parse().ok()).unwrap_or(200).max(1);
        paired(rounds);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    replay(&mut criterion);
    decode_apply(&mut criterion);
    criterion.final_summary();
}

/// Benchmark A's data: the same 1,000,000 events as es's enum and as the hand-written one.
/// With `check`, both sides replay it once and must agree (skipped under callgrind, which
/// counts every call of the variant's function).
fn replay_data(check: bool) -> (Vec<Vec<generated::AccountEvent>>, Vec<Vec<hand::AccountEvent>>) {
    let streams = workload::streams(REPLAY_EVENTS, 0x5eed_0001);
    eprintln!("replay: {}", workload::Mix(&streams));
    let (typed, typed_hand) = workload::typed_both(&streams);
    if !check {
        return (typed, typed_hand);
    }
    assert_eq!(
        generated::replay_generated(&typed),
        hand::replay_hand(&typed_hand),
        "both sides must fold to the same balances"
    );
    (typed, typed_hand)
}

/// Benchmark B's data: 100,000 stored records. With `check`, both sides must decode them into
/// the events they were made from.
fn decode_data(check: bool) -> Vec<Vec<workload::Stored>> {
    let streams = workload::streams(DECODE_EVENTS, 0x5eed_0002);
    eprintln!("decode_apply: {}", workload::Mix(&streams));
    let stored = workload::stored(&streams);
    if !check {
        return stored;
    }
    let expected = generated::replay_generated(&workload::typed(&streams));
    assert_eq!(generated::decode_apply_generated(&stored).ok(), Some(expected), "es decodes what was stored");
    assert_eq!(hand::decode_apply_hand(&stored).ok(), Some(expected), "the baseline decodes what was stored");
    stored
}

fn replay(criterion: &mut Criterion) {
    let (typed, typed_hand) = replay_data(true);
    let mut group = criterion.benchmark_group("replay_1m");
    group.sample_size(50).measurement_time(Duration::from_secs(10));
    group.bench_function("generated", |b| b.iter(|| generated::replay_generated(black_box(&typed))));
    group.bench_function("hand_written", |b| b.iter(|| hand::replay_hand(black_box(&typed_hand))));
    group.finish();
}

fn decode_apply(criterion: &mut Criterion) {
    let stored = decode_data(true);
    let mut group = criterion.benchmark_group("decode_apply_100k");
    group.sample_size(30).measurement_time(Duration::from_secs(10));
    group.bench_function("generated", |b| {
        b.iter(|| generated::decode_apply_generated(black_box(&stored)).expect("decodes"));
    });
    group.bench_function("hand_written", |b| {
        b.iter(|| hand::decode_apply_hand(black_box(&stored)).expect("decodes"));
    });
    group.finish();
}

/// Times `generated` and `hand` alternately (which goes first alternates too) for `rounds`
/// rounds after a few unrecorded ones, and prints the medians and the median per-round ratio.
fn paired(rounds: usize) {
    fn time(run: &mut dyn FnMut()) -> f64 {
        let start = Instant::now();
        run();
        start.elapsed().as_secs_f64() * 1e3
    }
    fn median(values: &mut [f64]) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }
    fn report(name: &str, rounds: usize, generated: &mut dyn FnMut(), hand: &mut dyn FnMut()) {
        let (mut es_side, mut hand_side, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds + 5 {
            let (g, h) = if round % 2 == 0 {
                let g = time(generated);
                (g, time(hand))
            } else {
                let h = time(hand);
                (time(generated), h)
            };
            if round >= 5 {
                es_side.push(g);
                hand_side.push(h);
                ratios.push(g / h);
            }
        }
        let (g, h) = (median(&mut es_side), median(&mut hand_side));
        println!(
            "{name}: generated {g:.3} ms, hand-written {h:.3} ms (medians of {rounds} paired rounds); \
             ratio of medians {:.3}, median of per-round ratios {:.3}",
            g / h,
            median(&mut ratios)
        );
    }

    let (typed, typed_hand) = replay_data(true);
    report(
        "replay_1m",
        rounds,
        &mut || {
            black_box(generated::replay_generated(black_box(&typed)));
        },
        &mut || {
            black_box(hand::replay_hand(black_box(&typed_hand)));
        },
    );
    drop((typed, typed_hand));
    let stored = decode_data(true);
    report(
        "decode_apply_100k",
        rounds,
        &mut || {
            black_box(generated::decode_apply_generated(black_box(&stored)).expect("decodes"));
        },
        &mut || {
            black_box(hand::decode_apply_hand(black_box(&stored)).expect("decodes"));
        },
    );
}

/// Builds the data of one variant, then runs it exactly once (callgrind counts only the
/// variant's own function, through `--toggle-collect`).
fn once(variant: &str) -> Result<(), String> {
    let total = match variant {
        "replay-generated" | "replay-hand" => {
            let (typed, typed_hand) = replay_data(false);
            if variant == "replay-generated" {
                generated::replay_generated(black_box(&typed))
            } else {
                hand::replay_hand(black_box(&typed_hand))
            }
        }
        "decode-generated" | "decode-hand" => {
            let stored = decode_data(false);
            if variant == "decode-generated" {
                generated::decode_apply_generated(black_box(&stored)).map_err(|e| e.to_string())?
            } else {
                hand::decode_apply_hand(black_box(&stored)).map_err(|e| e.to_string())?
            }
        }
        other => {
            return Err(format!(
                "unknown variant `{other}`: use replay-generated, replay-hand, decode-generated or decode-hand"
            ));
        }
    };
    black_box(total);
    Ok(())
}

#!/usr/bin/env bash
# What the macros cost at build time: `cargo check` of a crate with one aggregate of 50 events,
# written with es (`#[event]` + `#[derive(Aggregate)]`) against the same crate written by hand
# (serde derives, an enum, a `match`).
#
# Writes a throwaway workspace in a temp dir with two crates:
#   with_es  50 `#[event(version = 1)]` structs of 3 fields, an aggregate listing all 50 and 50
#            `impl Apply<E>` (es by path, this repository)
#   by_hand  the same 50 structs with `#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]`,
#            an enum of them (`#[derive(Debug, Clone, PartialEq)]`) and one `match` applying each
# checks each once so that every dependency is built, then RUNS times, alternating: touches the
# crate's source and runs `cargo check -p <crate>` with CARGO_INCREMENTAL=0 (the crate is checked
# in full, and only the crate). Times rustc on the crate alone (through a RUSTC_WRAPPER; macro
# expansion included) and the whole `cargo check` command, and cargo's no-op time beside it (a
# check with nothing to do). Prints medians and minimums.
#
# Usage: benches/compile_cost.sh [RUNS]      (RUNS defaults to 7; honours CARGO_TARGET_DIR)
#        ES_PATH=/other/checkout benches/compile_cost.sh   measures another checkout of es
#        IR=1 benches/compile_cost.sh   also counts the instructions rustc executes on each crate
#                                       (one run under valgrind's callgrind, ~1 min each): unlike
#                                       seconds, the count does not depend on what else the
#                                       machine is doing, so it compares two checkouts on a busy
#                                       machine
set -euo pipefail

root=${ES_PATH:-$(cd "$(dirname "$0")/.." && pwd)}
runs=${1:-7}
events=50
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

mkdir -p "$dir/with_es/src" "$dir/by_hand/src"
cat >"$dir/Cargo.toml" <<EOF
[workspace]
members = ["with_es", "by_hand"]
resolver = "3"
EOF
# The same dependency versions as this repository.
cp "$root/Cargo.lock" "$dir/Cargo.lock"

cat >"$dir/with_es/Cargo.toml" <<EOF
[package]
name = "with_es"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
es = { path = "$root", default-features = false }
EOF

cat >"$dir/by_hand/Cargo.toml" <<EOF
[package]
name = "by_hand"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
EOF

# The struct body and apply body are the same on both sides.
fields='    /// An amount.
    pub amount: u64,
    /// A free text.
    pub note: String,
    /// A flag.
    pub flag: bool,'
apply_body='        self.count += 1;
        self.total += event.amount;
        self.flagged |= event.flag;
        self.last_note.clone_from(&event.note);'
state='pub struct Big {
    /// Events applied.
    pub count: u64,
    /// The sum of the amounts.
    pub total: u64,
    /// Whether any event was flagged.
    pub flagged: bool,
    /// The last note.
    pub last_note: String,
}'

{
    echo '//! One aggregate of 50 events, with es.'
    echo 'use es::prelude::*;'
    for i in $(seq -w 1 "$events"); do
        printf '\n/// Event number %s.\n#[event(version = 1)]\npub struct Event%s {\n%s\n}\n' "$i" "$i" "$fields"
    done
    list=$(for i in $(seq -w 1 "$events"); do printf 'Event%s, ' "$i"; done)
    printf '\n/// The aggregate.\n#[derive(Aggregate, Default, Debug, Clone, PartialEq)]\n'
    printf '#[aggregate(id = Uuid, events(%s))]\n%s\n' "${list%, }" "$state"
    for i in $(seq -w 1 "$events"); do
        printf '\nimpl Apply<Event%s> for Big {\n    fn apply(&mut self, event: &Event%s) {\n%s\n    }\n}\n' \
            "$i" "$i" "$apply_body"
    done
} >"$dir/with_es/src/lib.rs"

{
    echo '//! One aggregate of 50 events, by hand.'
    echo 'use serde::{Deserialize, Serialize};'
    for i in $(seq -w 1 "$events"); do
        printf '\n/// Event number %s.\n#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]\npub struct Event%s {\n%s\n}\n' \
            "$i" "$i" "$fields"
    done
    printf '\n/// Every event of [`Big`].\n#[derive(Debug, Clone, PartialEq)]\npub enum BigEvent {\n'
    for i in $(seq -w 1 "$events"); do
        printf '    /// [`Event%s`]\n    Event%s(Event%s),\n' "$i" "$i" "$i"
    done
    printf '}\n\n/// The aggregate.\n#[derive(Default, Debug, Clone, PartialEq)]\n%s\n\n' "$state"
    printf 'impl Big {\n    /// Folds one event into the state.\n    pub fn apply(&mut self, event: &BigEvent) {\n'
    printf '        match event {\n'
    for i in $(seq -w 1 "$events"); do
        printf '            BigEvent::Event%s(event) => {\n%s\n            }\n' "$i" "$(sed 's/^/        /' <<<"$apply_body")"
    done
    printf '        }\n    }\n}\n'
} >"$dir/by_hand/src/lib.rs"

# A rustc wrapper that times the compiler on the two crates themselves: the "crate only"
# figure, without cargo's own work (fingerprints of every dependency, locking).
cat >"$dir/time-rustc.sh" <<'WRAPPER'
#!/usr/bin/env bash
case " $* " in
*" --crate-name with_es "* | *" --crate-name by_hand "*)
    if [[ -n ${RUSTC_IR_LOG:-} ]]; then
        exec valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file="$RUSTC_IR_LOG" "$@"
    fi
    start=$(date +%s.%N)
    "$@"
    status=$?
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }' >>"$RUSTC_TIMES"
    exit $status
    ;;
*) exec "$@" ;;
esac
WRAPPER
chmod +x "$dir/time-rustc.sh"

cd "$dir"
export CARGO_INCREMENTAL=0 RUSTC_WRAPPER="$dir/time-rustc.sh" RUSTC_TIMES="$dir/rustc-times"
echo "warming dependencies (first check of each crate)..." >&2
for crate in with_es by_hand; do
    # One crate at a time, as measured below: checking both at once would unify their
    # dependencies' features differently and rebuild some of them.
    if ! cargo check -q -p "$crate" 2>"$dir/warm.log"; then
        cat "$dir/warm.log" >&2
        exit 1
    fi
done

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.3f\n", e - s }'; }
# measure CRATE: touches the crate's source and checks it; prints "cargo-seconds rustc-seconds".
measure() {
    local start cargo_s
    touch "$dir/$1/src/lib.rs"
    : >"$RUSTC_TIMES"
    start=$(now)
    cargo check -q -p "$1" >/dev/null 2>&1
    cargo_s=$(since "$start")
    echo "$cargo_s $(cat "$RUSTC_TIMES")"
}

es_cargo=() es_rustc=() hand_cargo=() hand_rustc=() noop=()
for run in $(seq 1 "$runs"); do
    if ((run % 2)); then order="with_es by_hand"; else order="by_hand with_es"; fi
    for crate in $order; do
        read -r cargo_s rustc_s < <(measure "$crate")
        if [[ $crate == with_es ]]; then
            es_cargo+=("$cargo_s") es_rustc+=("$rustc_s")
        else
            hand_cargo+=("$cargo_s") hand_rustc+=("$rustc_s")
        fi
    done
    start=$(now)
    cargo check -q -p with_es >/dev/null 2>&1
    noop+=("$(since "$start")")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
minimum() { printf '%s\n' "$@" | sort -n | head -n 1; }
cell() { echo "$(median "$@") s (min $(minimum "$@"))"; }

echo "cargo check of one crate with a ${events}-event aggregate: median of ${runs} runs (CARGO_INCREMENTAL=0, dependencies built)"
printf '  %-44s %-24s %s\n' "" "rustc on the crate" "whole cargo check"
printf '  %-44s %-24s %s\n' "with es (#[event] + #[derive(Aggregate)])" "$(cell "${es_rustc[@]}")" "$(cell "${es_cargo[@]}")"
printf '  %-44s %-24s %s\n' "by hand (serde derives, enum, match)" "$(cell "${hand_rustc[@]}")" "$(cell "${hand_cargo[@]}")"
printf '  %-44s %-24s %s\n' "cargo check with nothing to do" "" "$(cell "${noop[@]}")"
awk -v e="$(median "${es_rustc[@]}")" -v h="$(median "${hand_rustc[@]}")" 'BEGIN {
    printf "  rustc, with es / by hand: %.2f (%+.3f s)\n", e / h, e - h
}'
echo "  every run, rustc seconds: with es [${es_rustc[*]}], by hand [${hand_rustc[*]}]"

if [[ -n ${IR:-} ]]; then
    command -v valgrind >/dev/null || { echo "IR=1 needs valgrind" >&2; exit 1; }
    declare -A ir
    for crate in with_es by_hand; do
        touch "$dir/$crate/src/lib.rs"
        RUSTC_IR_LOG="$dir/ir-$crate.log" cargo check -q -p "$crate" >/dev/null 2>&1
        ir[$crate]=$(sed -n 's/.*I *refs: *//p' "$dir/ir-$crate.log" | tr -d ,)
    done
    awk -v e="${ir[with_es]}" -v h="${ir[by_hand]}" 'BEGIN {
        printf "  instructions rustc executes on the crate: with es %.3f G, by hand %.3f G (%+.3f G, %.2fx)\n",
            e / 1e9, h / 1e9, (e - h) / 1e9, e / h
    }'
fi

#!/usr/bin/env bash
# Instruction counts of es's generated code against the hand-written baseline, with callgrind.
#
# Builds benches/dispatch in release mode (cargo's bench profile), then runs each variant once
# under `valgrind --tool=callgrind`, counting only the instructions executed inside the
# variant's own function (and everything it calls): building the data is not counted.
# Prints the Ir of each variant and the ratio generated / hand-written.
#
# Usage: benches/callgrind.sh            (from anywhere; honours CARGO_TARGET_DIR)
# Needs: valgrind.
set -euo pipefail

cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }

echo "building benches/dispatch (release)..." >&2
bin=$(cargo bench --bench dispatch --no-run --message-format=json 2>/dev/null \
    | grep '"executable":"[^"]' | grep '"name":"dispatch"' | tail -n 1 \
    | sed -e 's/.*"executable":"\([^"]*\)".*/\1/')
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "callgrind.sh: could not build the dispatch bench; run: cargo bench --bench dispatch --no-run" >&2
    exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# ir VARIANT FUNCTION: the Ir collected inside FUNCTION while `dispatch --once VARIANT` runs.
ir() {
    local variant=$1 function=$2
    valgrind --tool=callgrind --callgrind-out-file="$out/$variant.out" \
        --toggle-collect="$function" "$bin" --once "$variant" >"$out/$variant.log" 2>&1 || {
        cat "$out/$variant.log" >&2
        exit 1
    }
    local total
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$variant.out")
    if [[ -z "$total" || "$total" == 0 ]]; then
        echo "callgrind.sh: nothing counted in $function (was it renamed or inlined?)" >&2
        exit 1
    fi
    echo "$total"
}

replay_generated=$(ir replay-generated 'dispatch::generated::replay_generated')
replay_hand=$(ir replay-hand 'dispatch::hand::replay_hand')
decode_generated=$(ir decode-generated 'dispatch::generated::decode_apply_generated')
decode_hand=$(ir decode-hand 'dispatch::hand::decode_apply_hand')

awk -v rg="$replay_generated" -v rh="$replay_hand" -v dg="$decode_generated" -v dh="$decode_hand" 'BEGIN {
    printf "%-34s %15s %14s\n", "variant", "Ir", "Ir per event"
    printf "%-34s %15d %14.1f\n", "replay_1m/generated", rg, rg / 1000000
    printf "%-34s %15d %14.1f\n", "replay_1m/hand_written", rh, rh / 1000000
    printf "%-34s %15d %14.1f\n", "decode_apply_100k/generated", dg, dg / 100000
    printf "%-34s %15d %14.1f\n", "decode_apply_100k/hand_written", dh, dh / 100000
    printf "\n"
    printf "replay_1m         generated / hand-written: %.4f (target <= 1.05: %s)\n", rg / rh, rg / rh <= 1.05 ? "met" : "MISSED"
    printf "decode_apply_100k generated / hand-written: %.4f (target <= 1.15: %s)\n", dg / dh, dg / dh <= 1.15 ? "met" : "MISSED"
}'

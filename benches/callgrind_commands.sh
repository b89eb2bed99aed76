#!/usr/bin/env bash
# Instruction counts of the `commands` bench: es, hand-written and raw store, per workload.
#
# Builds benches/commands.rs in release mode (cargo's bench profile), then runs each variant
# once under `valgrind --tool=callgrind`, counting only the instructions executed inside the
# variant's run function (and everything it calls): building the data is not counted.
# Prints the Ir of each variant, per command, and the ratios es / hand-written and es / raw.
#
# Usage: benches/callgrind_commands.sh [WORKLOAD...]   (cached, replay, snapshots; default all)
#        KEEP=dir benches/callgrind_commands.sh        keeps the callgrind outputs in dir, for
#                                                      callgrind_annotate
# Needs: valgrind. Honours CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "callgrind_commands.sh: valgrind is not installed" >&2; exit 1; }

echo "building benches/commands (release)..." >&2
bin=$(cargo bench --bench commands --no-run --message-format=json 2>/dev/null \
    | grep '"executable":"[^"]' | grep '"name":"commands"' | tail -n 1 \
    | sed -e 's/.*"executable":"\([^"]*\)".*/\1/')
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "callgrind_commands.sh: could not build the commands bench; run: cargo bench --bench commands --no-run" >&2
    exit 1
fi

if [[ -n "${KEEP:-}" ]]; then
    out=$KEEP
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi

# ir VARIANT FUNCTION: the Ir collected inside FUNCTION while `commands --once VARIANT` runs.
ir() {
    local variant=$1 function=$2
    valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out/$variant.out" \
        --toggle-collect="$function" "$bin" --once "$variant" >"$out/$variant.log" 2>&1 || {
        cat "$out/$variant.log" >&2
        exit 1
    }
    local total
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$variant.out")
    if [[ -z "$total" || "$total" == 0 ]]; then
        echo "callgrind_commands.sh: nothing counted in $function (was it renamed or inlined?)" >&2
        exit 1
    fi
    echo "$total"
}

workloads=("$@")
[[ ${#workloads[@]} -eq 0 ]] && workloads=(cached replay snapshots)

printf "%-10s %9s %16s %16s %16s %9s %8s\n" workload commands "hand-written Ir" "raw store Ir" "es Ir" "es/hand" "es/raw"
for workload in "${workloads[@]}"; do
    case $workload in
        cached) commands=100000; es_fn=run_cached; hand_fn=run_cached; raw_fn=run_cached ;;
        replay) commands=100; es_fn=run_replay; hand_fn=run_long; raw_fn=run_replay ;;
        snapshots) commands=1000; es_fn=run_snapshots; hand_fn=run_long; raw_fn=run_snapshots ;;
        *) echo "callgrind_commands.sh: unknown workload $workload (cached, replay, snapshots)" >&2; exit 2 ;;
    esac
    hand=$(ir "$workload-hand" "commands::hand::$hand_fn")
    raw=$(ir "$workload-raw" "commands::raw::$raw_fn")
    es=$(ir "$workload-es" "commands::es_side::$es_fn")
    awk -v w="$workload" -v n="$commands" -v h="$hand" -v r="$raw" -v e="$es" 'BEGIN {
        printf "%-10s %9d %16d %16d %16d %8.2fx %7.2fx\n", w, n, h, r, e, e / h, e / r
        printf "%-10s %9s %16.0f %16.0f %16.0f   (Ir per command)\n", "", "", h / n, r / n, e / n
    }'
done

#!/usr/bin/env bash
# Instruction counts of the `projections` catch-up: the bare read_all loop and the two runners.
#
# Builds benches/projections.rs in release mode (cargo's bench profile), then runs each variant
# once under `valgrind --tool=callgrind` (`projections --once VARIANT`: no Tokio runtime, so
# every SQLite call runs inline on the one thread), counting only the instructions executed
# inside the variant's run function: filling the store is not counted. Prints the Ir of each
# variant, per event, and the ratio bare / runner (the share of a runner's instructions that
# the read alone costs; a wall-time ratio can beat it, since the runner reads the next page on
# another thread while it handles and commits a batch, and waits for no fsync per batch).
#
# Usage: benches/callgrind_projections.sh [VARIANT...]   (bare, per-event, folded; default all)
#        KEEP=dir benches/callgrind_projections.sh        keeps the callgrind outputs in dir
#        BIN=path benches/callgrind_projections.sh        measures that build of the bench
# Needs: valgrind. Honours CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "callgrind_projections.sh: valgrind is not installed" >&2; exit 1; }

bin=${BIN:-}
if [[ -z "$bin" ]]; then
    echo "building benches/projections (release)..." >&2
    bin=$(cargo bench --bench projections --no-run --message-format=json 2>/dev/null \
        | grep '"executable":"[^"]' | grep '"name":"projections"' | tail -n 1 \
        | sed -e 's/.*"executable":"\([^"]*\)".*/\1/')
fi
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "callgrind_projections.sh: could not build the projections bench; run: cargo bench --bench projections --no-run" >&2
    exit 1
fi

if [[ -n "${KEEP:-}" ]]; then
    out=$KEEP
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi

# ir VARIANT FUNCTION: the Ir collected inside FUNCTION while `projections --once VARIANT` runs.
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
        echo "callgrind_projections.sh: nothing counted in $function (was it renamed or inlined?)" >&2
        exit 1
    fi
    echo "$total"
}

variants=("$@")
[[ ${#variants[@]} -eq 0 ]] && variants=(bare per-event folded)

events=50000
bare=
printf "%-10s %16s %12s %14s\n" variant Ir "Ir per event" "bare / this"
for variant in "${variants[@]}"; do
    case $variant in
        bare) function=projections::run_bare ;;
        per-event) function=projections::run_per_event ;;
        folded) function=projections::run_folded ;;
        *) echo "callgrind_projections.sh: unknown variant $variant (bare, per-event, folded)" >&2; exit 2 ;;
    esac
    total=$(ir "$variant" "$function")
    [[ $variant == bare ]] && bare=$total
    awk -v v="$variant" -v n="$events" -v t="$total" -v b="$bare" 'BEGIN {
        ratio = b == "" ? "" : sprintf("%.3fx", b / t)
        printf "%-10s %16d %12.0f %14s\n", v, t, t / n, ratio
    }'
done

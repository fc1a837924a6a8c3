#!/usr/bin/env bash
# The search-efficiency benchmark, step 2 (on the GPU machine, from the project root,
# after spaces.sh): `nightshift run` on each kernel alone with a GPU-time budget of a
# fraction of what measuring its whole space cost (from its space.jsonl).
#
#   bench/search-efficiency/runs.sh SPACES_DIR OUT_DIR "0.05 0.10 0.25" [kernel ...]
#
# SPACES_DIR holds spaces.sh's tables (<kernel>/space.jsonl). The exhaustive GPU time
# is the sum of every configuration's cost (its compile timed alone, its validation
# and its measurement): what evaluating the whole space one configuration after
# another costs. Each run's journal is copied to OUT_DIR/runs/<kernel>-<fraction>[-<repeat>]/ as soon
# as it ends. The run's options are the defaults but for these, the same for every
# kernel: no energy window (a search pays for time only; the space's table has none),
# a 5 s candidate watchdog (the reserve a run keeps back from its budget), the model
# search after the patterns (budgets.toml's default), and the pattern library without
# its source tier: a rewritten kernel is outside the table, which could not judge it
# (FULL_LIBRARY=1 keeps it). REPEAT (default 1) runs each budget that many times;
# INTERLEAVE=1 sets `[search] interleave = true`.
set -u
spaces=${1:?usage: runs.sh SPACES_DIR OUT_DIR FRACTIONS [kernel ...]}
out=${2:?usage: runs.sh SPACES_DIR OUT_DIR FRACTIONS [kernel ...]}
fractions=${3:-0.05 0.10 0.25}
shift 3 2>/dev/null || shift $#
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(attention gemv simsearch gemm conv2d)
ns=${NIGHTSHIFT:-nightshift}
repeat=${REPEAT:-1}
work=$(mktemp -d)
mkdir -p "$out/runs" "$work/patterns"
for p in patterns/*.toml; do
    if [ "${FULL_LIBRARY:-0}" = 1 ] || ! grep -q '^tier *= *"source"' "$p"; then
        cp "$p" "$work/patterns/"
    fi
done
for k in "${kernels[@]}"; do
    table="$spaces/$k/space.jsonl"
    if [ ! -f "$table" ]; then
        echo "== $k: no $table (run spaces.sh first)"
        continue
    fi
    # GPU seconds the whole space cost (every row's compile + validate + measure).
    total=$(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(sum(r["cost_ms"] for r in rows if r.get("kind") == "config") / 1e3)' "$table")
    for f in $fractions; do
        for r in $(seq 1 "$repeat"); do
            id="$k-$f"
            [ "$repeat" -gt 1 ] && id="$id-$r"
            hours=$(python3 -c "print($total * $f / 3600)")
            cat > "$work/budgets.toml" <<TOML
[run]
gpu_hours = $hours
[limits]
candidate_watchdog_seconds = 5.0
[search]
after_patterns = true
interleave = $([ "${INTERLEAVE:-0}" = 1 ] && echo true || echo false)
TOML
            echo "== $id: $f of ${total} GPU-s = ${hours} GPU-hours ($(date -u +%H:%M:%S))"
            # Each run compiles from scratch (its own compile cache), as the exhaustive
            # measurement did; the device's measured ceilings are copied in.
            cache="$work/cache-$id"
            mkdir -p "$cache"
            cp -r "${NIGHTSHIFT_CACHE_DIR:-$HOME/.cache/nightshift}/ceilings" "$cache/" 2>/dev/null
            NIGHTSHIFT_CACHE_DIR="$cache" timeout --signal=INT 900 "$ns" run "kernels/$k" --new --run-id "$id" \
                --budgets "$work/budgets.toml" --patterns "$work/patterns" \
                --reports "$work/reports" --energy-ms 0 \
                --allow-dirty > "$work/$id.log" 2>&1
            echo "   exit $?; $(tail -n 2 "$work/$id.log" | tr '\n' ' ')"
            mkdir -p "$out/runs/$id"
            cp "$work/reports/$id/journal.jsonl" "$out/runs/$id/" 2>/dev/null
            cp "$work/$id.log" "$out/runs/$id/run.log"
        done
    done
done

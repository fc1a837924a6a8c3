#!/usr/bin/env bash
# Candidates per minute on N GPUs against one, on the bundled suite (issue 18).
#
#   bench/scale/run.sh OUT_DIR MINUTES GPUS...    e.g.  out 10 0 0,1 0,1,2,3
#
# Runs `nightshift run` on every bundled kernel once per GPU list, each for MINUTES
# of wall time (a new run each, the same budgets.toml otherwise), copies each journal
# to OUT_DIR and prints what analyze.py reads from them: candidates decided and
# measured per minute, and the speedup over the first list. Run it from the
# repository root on the GPU machine; NIGHTSHIFT names the binary.
set -euo pipefail
out=$1
minutes=$2
shift 2
bin=${NIGHTSHIFT:-nightshift}
mkdir -p "$out"
for gpus in "$@"; do
  id="scale-$(date -u +%H%M%S)-$(echo "$gpus" | tr , _)"
  echo "== --gpus $gpus ($minutes min): run $id" >&2
  timeout $((minutes * 60 + 600)) "$bin" run --new --run-id "$id" --gpus "$gpus" \
    --wall-minutes "$minutes" --allow-dirty --json >"$out/$id.json" 2>"$out/$id.err" || true
  cp "reports/$id/journal.jsonl" "$out/$id.journal.jsonl"
done
python3 "$(dirname "$0")/analyze.py" "$out"/*.journal.jsonl

#!/usr/bin/env bash
# The search-efficiency benchmark, step 1 (on the GPU machine, from the project root):
# every kernel's space measured exhaustively with `nightshift space`, each
# configuration validated and timed alone with bench's protocols.
#
#   bench/search-efficiency/spaces.sh OUT_DIR [SECONDS_PER_KERNEL] [kernel ...]
#
# Each kernel's table goes to OUT_DIR/spaces/<kernel>/space.jsonl as it is measured;
# run it again and each kernel continues where it stopped (--resume). A kernel that
# runs past SECONDS_PER_KERNEL (default 600) is stopped and left to the next call.
set -u
out=${1:?usage: spaces.sh OUT_DIR [SECONDS_PER_KERNEL] [kernel ...]}
limit=${2:-600}
shift 2 2>/dev/null || shift $#
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(attention gemv simsearch gemm conv2d)
ns=${NIGHTSHIFT:-nightshift}
mkdir -p "$out/spaces"
for k in "${kernels[@]}"; do
    dir="$out/spaces/$k"
    resume=()
    [ -f "$dir/space.jsonl" ] && resume=(--resume)
    echo "== $k ($(date -u +%H:%M:%S))"
    timeout --signal=INT "$limit" "$ns" space "kernels/$k" --out "$dir" "${resume[@]}" 2>&1 |
        grep -v '^\[' | tail -n 5
    echo "   exit ${PIPESTATUS[0]}"
done

#!/usr/bin/env python3
"""A CPU model of proposals/attention/03-wmma-flash.cu, to check its algorithm without a GPU.

It follows the kernel's own decomposition: which CTA and warp own which query rows in
each variant (and which CTAs return at once), K/V tiles of KT keys with zero rows past
S, the mask `key < lim`, the warp's tile skip, the lazy rescale (the reference max is
moved only when a tile's max passes it by more than TAU), P split into fp16 hi and lo
terms, and the final division. Products and sums are in double (the tensor cores'
fp32 accumulation is not modelled); fp16 rounding of the inputs, of P and of the
output is (struct's 'e' format, round to nearest even). Each output element is
compared with a double-precision reference under the spec's tolerance
(rtol 2e-3, atol 1e-4), and every output row must be written exactly once.

--bug zero-keys models proposal 02 (the mask tests only the causal diagonal; keys
past S, zero-filled, are then not masked): it must fail where S is not a multiple of
the tile and pass where it is, which is why the spec's odd sizes catch it.

Standard library only; small sizes (pure Python).
    python3 examples/proposer/simulate_attention.py
"""

import argparse
import math
import random
import struct
import sys

HD = 64
TAU = 8.0
LOG2E = 1.4426950408889634


def f16(x):
    """x rounded to fp16 (overflow to inf as the hardware does)."""
    try:
        return struct.unpack("<e", struct.pack("<e", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def layout(variant, bm, S):
    """(warps per CTA, KT, [(cta, pass_rows_start, rows_per_pass)] for one (b, h))."""
    if variant == 0:
        warps, kt = 4, 64
        rows = 16 * warps
        return warps, kt, [(0, q0, rows) for q0 in range(0, S, rows)]
    warps = bm
    kt = 16 if bm in (1, 16) else 32
    rows = 16 * warps
    grid_x = -(-S // bm)  # the spec's grid: cdiv(S, BM)
    return warps, kt, [(x, x * rows, rows) for x in range(grid_x) if x * rows < S]


def reference(q, k, v, S, causal):
    out = []
    for i in range(S):
        lim = i + 1 if causal else S
        sc = [sum(q[i][d] * k[j][d] for d in range(HD)) / 8.0 for j in range(lim)]
        m = max(sc)
        p = [math.exp(s - m) for s in sc]
        l = sum(p)
        out.append([sum(p[j] * v[j][d] for j in range(lim)) / l for d in range(HD)])
    return out


def kernel_model(q, k, v, S, causal, variant, bm, bug=None):
    warps, kt, passes = layout(variant, bm, S)
    qscale = LOG2E / math.sqrt(HD)
    out = [None] * S
    written = [0] * S
    kv_cache = {}
    for (_cta, q0, rows) in passes:
        kv_end = min(S, q0 + rows) if causal else S
        for w in range(warps):
            w0 = q0 + 16 * w
            if w0 >= S:  # warp_live
                continue
            rws = list(range(w0, w0 + 16))
            lim = {i: (min(S, i + 1) if causal else S) for i in rws}
            m_ref = {i: -math.inf for i in rws}
            lsum = {i: 0.0 for i in rws}
            acc = {i: [0.0] * HD for i in rws}
            qrow = {i: (q[i] if i < S else [0.0] * HD) for i in rws}
            for kv0 in range(0, kv_end, kt):
                if not any(kv0 < lim[i] for i in rws):  # the warp's tile skip
                    continue
                keys = list(range(kv0, kv0 + kt))
                kt_rows = [k[j] if j < S else [0.0] * HD for j in keys]
                vt_rows = [v[j] if j < S else [0.0] * HD for j in keys]
                for i in rws:
                    s = []
                    for c, j in enumerate(keys):
                        raw = sum(qrow[i][d] * kt_rows[c][d] for d in range(HD))
                        val = raw * qscale
                        if bug == "zero-keys":
                            ok = (not causal) or j <= i
                        else:
                            ok = j < lim[i]
                        s.append(val if ok else -math.inf)
                    mt = max(s)
                    grow = mt > m_ref[i] + TAU
                    alpha = 2.0 ** (m_ref[i] - mt) if grow else 1.0
                    if grow:
                        m_ref[i] = mt
                    lsum[i] *= alpha
                    acc[i] = [a * alpha for a in acc[i]]
                    mr = 0.0 if m_ref[i] == -math.inf else m_ref[i]
                    for c in range(kt):
                        p = 2.0 ** (s[c] - mr) if s[c] != -math.inf else 0.0
                        assert p <= 2.0 ** TAU * (1 + 1e-12), p
                        lsum[i] += p
                        hi = f16(p)
                        lo = f16(p - hi)
                        pe = hi + lo
                        if pe:
                            vr = vt_rows[c]
                            a = acc[i]
                            for d in range(HD):
                                a[d] += pe * vr[d]
            for i in rws:
                if i < S:
                    out[i] = [f16(a / lsum[i]) for a in acc[i]]
                    written[i] += 1
    return out, written


def run_case(S, causal, variant, bm, seed, large, bug):
    rnd = random.Random(seed)
    qs = 32.0 if large else 1.0
    q = [[f16(rnd.gauss(0, 1) * qs) for _ in range(HD)] for _ in range(S)]
    k = [[f16(rnd.gauss(0, 1)) for _ in range(HD)] for _ in range(S)]
    v = [[f16(rnd.gauss(0, 1)) for _ in range(HD)] for _ in range(S)]
    ref = reference(q, k, v, S, causal)
    got, written = kernel_model(q, k, v, S, causal, variant, bm, bug)
    if any(w != 1 for w in written):
        return False, "rows written %s times" % sorted(set(written))
    worst, where = 0.0, (0, 0, 0.0, 0.0)
    for i in range(S):
        for d in range(HD):
            r = f16(ref[i][d])
            err = abs(got[i][d] - r)
            tol = 1e-4 + 2e-3 * abs(r)
            if err / tol > worst:
                worst, where = err / tol, (i, d, got[i][d], r)
    return worst <= 1.0, "worst error / tolerance %.3f at row %d col %d (got %.6g, ref %.6g)" % (
        (worst,) + where)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bug", choices=["zero-keys"], help="model proposal 02's mistake")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    # The spec's odd validation sequence lengths (1, 77 causal, 130, 513 causal is too
    # slow here: 129 causal stands in for a tail past two full tiles), and multiples of
    # the tiles, in both variants and every BM; normal and large-magnitude trials.
    cases = [(1, False), (77, True), (130, False), (129, True), (128, False), (64, True)]
    configs = [(0, 4)] + [(1, bm) for bm in (1, 2, 4, 8, 16)]
    failures = passes = 0
    for S, causal in cases:
        for variant, bm in configs:
            for large in (False, True):
                ok, msg = run_case(S, causal, variant, bm, args.seed + S, large, args.bug)
                label = "S=%d %s VARIANT=%d BM=%d %s" % (S, "causal" if causal else "full", variant, bm,
                                                         "large" if large else "normal")
                print("%s %s: %s" % ("pass" if ok else "FAIL", label, msg))
                passes += ok
                failures += not ok
    print("%d passed, %d failed" % (passes, failures))
    return 1 if failures and not args.bug else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

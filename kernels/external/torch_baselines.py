#!/usr/bin/env python3
"""PyTorch baselines for nightshift's bundled kernels (kernels/*/kernel.toml).

  time   times what a user would otherwise write in PyTorch for a kernel, the way
         nightshift times its own kernels: "cold" (L2 flushed before each call, CUDA
         events around one call) or, when the cold median is below 10 us, "batch"
         (a CUDA graph of R back-to-back calls over enough input copies to defeat L2).
  check  recomputes a reference kernel's outputs, dumped by nightshift into a
         directory (manifest.json + raw little-endian buffers), in float64 with
         PyTorch and compares them.

Output contract: exactly one JSON object on stdout per invocation (progress and
warnings go to stderr); errors are {"schema": 1, "error": "..."}. Exit codes: 0 ok
(check: all outputs passed), 1 check failed, 2 bad usage or bad input,
3 torch or CUDA unavailable, 4 runtime failure (e.g. out of memory). Non-finite
numbers are written as null.

check tolerances (ok where |ref - expected| <= atol + rtol*|expected|; the references
accumulate in double, so these leave room for fp32-accumulating kernels too):
  fp32 sums/dot products of length K (rowsum, gemv, gemm):
      rtol 1e-5, atol 1e-6 * sqrt(K) * max|term|  (max|x|, max|A|*max|B|)
  softmax: rtol 1e-5, atol 1e-6 / seq_k (1e-6 of the mean output)
  layernorm: rtol 1e-5, atol 1e-6 * sqrt(cols) * max|gamma * xhat|
  attention (fp16 O): rtol 1e-3 (2 half-ulps), atol max(1e-4, 1e-6 * sqrt(S) * max|V|)
      (outputs are ~0.05 at S = 512: an atol of 1e-3 would hide 2% errors)
  simsearch scores: rtol 1e-5, atol 1e-6 * sqrt(dim) (cosines <= 1); index sets per
      query may differ only by entries tied with the k-th score within that tolerance.
Standard library + torch only; Python 3.10+.
"""
import argparse
import json
import math
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

SCHEMA = 1
KERNELS_DIR = Path(__file__).resolve().parent.parent
BATCH_BELOW_US = 10.0   # agent/src/worker/protocol.rs: batch_below_us
BATCH_SAMPLE_US = 500.0  # agent/src/worker/protocol.rs: batch_sample_us
SEED = 20240611

# Problem axes per kernel; a tuple lists accepted spellings of one axis.
AXES = {
    "softmax": ["rows", ("seq_k", "cols")],  # seq_k (cols in older specs)
    "rowsum": ["rows", "cols"],
    "layernorm": ["rows", "cols"],
    "gemv": ["m", "k", "n"],
    "gemm": ["m", "n", "k"],
    # attention/kernel.toml's axis is mask (1 full, 2 causal); its kernel arg causal = mask - 1
    "attention": ["B", "H", "S", "D", ("causal", "mask")],
    "simsearch": ["Q", "N", "dim", "k"],
    "conv2d": ["H", "W"],
}
# check: (name, dtype) of inputs, outputs and scalars as nightshift names them.
CHECK_ARGS = {
    "softmax": ([("x", "f32")], [("y", "f32")], ["rows", ("seq_k", "cols")]),
    "rowsum": ([("x", "f32")], [("y", "f32")], ["rows", "cols"]),
    "layernorm": ([("x", "f32"), ("gamma", "f32"), ("beta", "f32")], [("y", "f32")],
                  ["rows", "cols", "eps"]),
    "gemv": ([("A", "f32"), ("X", "f32")], [("Y", "f32")], ["m", "k", "n"]),
    "gemm": ([("A", "f16"), ("B", "f16")], [("C", "f32")], ["m", "n", "k"]),
    "attention": ([("Q", "f16"), ("K", "f16"), ("V", "f16")], [("O", "f16")],
                  ["B", "H", "S", "D", "causal"]),
    "simsearch": ([("queries", "f32"), ("corpus", "f32")], [("scores", "f32"), ("index", "i32")],
                  ["Q", "N", "dim", "k"]),
    "conv2d": ([("in", "f32"), ("f", "f32")], [("out", "f32")], ["H", "W"]),
}
DTYPE_SIZES = {"f16": 2, "f32": 4, "i32": 4}


class Fail(Exception):
    def __init__(self, msg, code=2):
        super().__init__(msg)
        self.code = code


def emit(obj):
    def clean(v):  # strict JSON: non-finite floats become null
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    sys.stdout.write(json.dumps(clean(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def log(msg):
    print(f"torch_baselines: {msg}", file=sys.stderr, flush=True)


def match_names(kernel, spec, given, what):
    """Maps each name in spec (a tuple lists accepted spellings; the first is canonical) to
    its value in given; fails on a missing, doubly given or unexpected name."""
    out, used = {}, set()
    for axis in spec:
        names = axis if isinstance(axis, tuple) else (axis,)
        hits = [n for n in names if n in given]
        if len(hits) != 1:
            raise Fail(f"{kernel}: {what} needs exactly one of {'/'.join(names)} (got: {', '.join(sorted(given)) or 'nothing'})")
        out[names[0]] = given[hits[0]]
        used.add(hits[0])
    extra = sorted(set(given) - used)
    if extra:
        raise Fail(f"{kernel}: unexpected {what} {', '.join(extra)} (expected: {', '.join(map(str, spec))})")
    return out


def load_torch(device):
    try:
        import torch
    except Exception as e:  # ImportError, or a broken install raising OSError
        raise Fail(f"cannot import torch: {e}", 3)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Fail(f"CUDA unavailable to torch {torch.__version__} (device {device!r}); use --device cpu", 3)
    if device != "cpu" and not device.startswith("cuda"):
        raise Fail(f"--device must be cpu or cuda[:N], got {device!r}")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (gemv, simsearch)
    torch.backends.cudnn.allow_tf32 = False
    return torch


def layernorm_eps(notes):
    path = KERNELS_DIR / "layernorm" / "kernel.toml"
    try:
        import tomllib
        spec = tomllib.loads(path.read_text())
        return float(next(a["value"] for a in spec["arg"] if a["name"] == "eps"))
    except Exception as e:
        notes.append(f"eps not read from {path} ({type(e).__name__}: {e}); 1e-5 assumed")
        return 1e-5


def device_name(torch, dev):
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


# ---------------------------------------------------------------- time

def build_op(torch, kernel, p, dev, notes):
    """Returns (make_inputs(set_index) -> tuple of tensors, op(*inputs), impl string)."""
    F = torch.nn.functional

    def gen(i):
        return torch.Generator(device=dev).manual_seed(SEED + i)

    def randn(g, *shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g, device=dev).to(dtype)

    def uniform(g, n, lo, hi):
        return torch.rand(n, generator=g, device=dev) * (hi - lo) + lo

    if kernel == "softmax":
        return (lambda i: (randn(gen(i), p["rows"], p["seq_k"]),),
                lambda x: torch.softmax(x, dim=-1), "torch.softmax(x, dim=-1), fp32")
    if kernel == "rowsum":
        return (lambda i: (randn(gen(i), p["rows"], p["cols"]),),
                lambda x: x.sum(dim=-1), "x.sum(dim=-1), fp32")
    if kernel == "layernorm":
        eps, c = layernorm_eps(notes), p["cols"]

        def mk(i):
            g = gen(i)
            return randn(g, p["rows"], c), uniform(g, c, 0.5, 1.5), uniform(g, c, -1.0, 1.0)
        return (mk, lambda x, w, b: F.layer_norm(x, (c,), w, b, eps),
                f"F.layer_norm(x, ({c},), gamma, beta, eps={eps:g}), fp32")
    if kernel == "gemv":
        return (lambda i: (randn(gen(i), p["m"], p["k"]), randn(gen(i + 1000), p["k"], p["n"])),
                torch.matmul, "torch.matmul(A, X), fp32, TF32 disabled (allow_tf32=False)")
    if kernel == "gemm":
        red = torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
        return (lambda i: (randn(gen(i), p["m"], p["k"], dtype=torch.float16),
                           randn(gen(i + 1000), p["k"], p["n"], dtype=torch.float16)),
                torch.matmul, "torch.matmul(A, B), fp16 inputs, fp16 output (our kernel writes fp32), "
                f"allow_fp16_reduced_precision_reduction={red}")
    if kernel == "attention":
        causal, shape = bool(p["causal"]), (p["B"], p["H"], p["S"], p["D"])

        def mk(i):
            g = gen(i)
            return tuple(randn(g, *shape, dtype=torch.float16) for _ in range(3))

        def op(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        try:  # private API; returns the backend SDPA would dispatch to for these inputs
            from torch.nn.attention import SDPBackend
            q = torch.empty(shape, dtype=torch.float16, device=dev)
            backend = SDPBackend(torch._fused_sdp_choice(q, q, q, None, 0.0, causal)).name + " backend"
        except Exception:
            backend = "default backend"
        return mk, op, f"F.scaled_dot_product_attention(q, k, v, is_causal={causal}), fp16, {backend}"
    if kernel == "simsearch":
        k = p["k"]
        return (lambda i: (randn(gen(i), p["Q"], p["dim"]), randn(gen(i + 1000), p["N"], p["dim"])),
                lambda q, c: torch.topk(F.normalize(q) @ F.normalize(c).T, k, dim=-1),
                f"torch.topk(F.normalize(q) @ F.normalize(c).T, {k}, dim=-1), fp32, TF32 disabled, "
                "corpus normalization timed")
    if kernel == "conv2d":
        # F.conv2d is a cross-correlation, as the kernel is: out[y, x] = sum f[i, j] *
        # in[y + i - 3, x + j - 3], zeros outside (padding 3 keeps the size).
        return (lambda i: (randn(gen(i), 1, 1, p["H"], p["W"]), randn(gen(i + 1000), 1, 1, 7, 7)),
                lambda x, w: F.conv2d(x, w, padding=3),
                "F.conv2d(x[1, 1, H, W], f[1, 1, 7, 7], padding=3), fp32, TF32 disabled")
    raise Fail(f"unknown kernel {kernel!r}")


def nbytes(obj):
    if isinstance(obj, (tuple, list)):
        return sum(nbytes(o) for o in obj)
    return obj.numel() * obj.element_size() if hasattr(obj, "element_size") else 0


def time_cuda(torch, dev, make, op, samples, warmup, notes):
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    if l2 <= 0:
        l2 = 50 << 20
        notes.append("L2 size unknown; flushing 100 MiB")
    flush = torch.empty(max(2 * l2, 1 << 20), dtype=torch.uint8, device=dev)
    inputs = make(0)
    out = None
    for _ in range(warmup):
        flush.fill_(0x5A)
        out = op(*inputs)
    footprint = max(nbytes(inputs) + nbytes(out if out is not None else op(*inputs)), 1)
    del out
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(samples)]
    for s, e in ev:
        flush.fill_(0x5A)
        s.record()
        op(*inputs)
        e.record()
    torch.cuda.synchronize(dev)
    cold = [s.elapsed_time(e) * 1e3 for s, e in ev]
    notes.append(f"cold: {2 * l2 >> 20} MiB buffer written before each call, CUDA events around one call "
                 "(GPU time between the events, including any gap while the host launches the op's kernels)")
    med = statistics.median(cold)
    if med >= BATCH_BELOW_US:
        return "cold", cold, med
    del flush
    torch.cuda.empty_cache()
    try:  # as nightshift: enough input copies that L2 cannot hold them, within memory
        want = min(64, -(-2 * l2 // footprint) + 1)
        sets = max(1, min(want, torch.cuda.mem_get_info(dev)[0] // 2 // footprint))
        launches = max(math.ceil(BATCH_SAMPLE_US / max(med, 1e-3)), sets)
        launches = -(-launches // sets) * sets
        all_sets = [inputs] + [make(i) for i in range(1, sets)]
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for j in range(3):
                op(*all_sets[j % sets])
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for j in range(launches):
                op(*all_sets[j % sets])
        graph.replay()
        for s, e in ev:
            s.record()
            graph.replay()
            e.record()
        torch.cuda.synchronize(dev)
    except Exception as e:
        notes.append(f"cold median {med:.3f} us < {BATCH_BELOW_US:g} us but CUDA graph capture failed "
                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); reporting cold")
        return "cold", cold, med
    notes.append(f"batch: cold median {med:.3f} us < {BATCH_BELOW_US:g} us; each sample is one CUDA graph of "
                 f"{launches} back-to-back calls over {sets} input set(s), divided by {launches}")
    return "batch", [s.elapsed_time(e) * 1e3 / launches for s, e in ev], med


def time_cpu(torch, make, op, samples, warmup, notes):
    inputs = make(0)
    for _ in range(warmup):
        op(*inputs)
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        op(*inputs)
        out.append((time.perf_counter() - t0) * 1e6)
    notes.append(f"device cpu ({torch.get_num_threads()} threads): wall-clock time.perf_counter around one "
                 "call; no cache flush, no CUDA events, no batch mode (not comparable with GPU timings)")
    return "cold", out, statistics.median(out)


def parse_problem(text):
    given = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not re.fullmatch(r"[+-]?\d+", val.strip()):
            raise Fail(f"--problem: {item!r} is not key=integer")
        if key.strip() in given:
            raise Fail(f"--problem: {key.strip()!r} given twice")
        given[key.strip()] = int(val)
    return given


def cmd_time(a):
    given = parse_problem(a.problem)
    if a.kernel not in AXES:
        raise Fail(f"unknown kernel {a.kernel!r} (known: {', '.join(AXES)})")
    p = match_names(a.kernel, AXES[a.kernel], given, "--problem key")
    if a.kernel == "attention":
        p["causal"] = given["mask"] - 1 if "mask" in given else p["causal"]
        if p["causal"] not in (0, 1):
            raise Fail(f"--problem: attention needs causal 0|1 or mask 1|2: {given}")
    if any(v <= 0 for k, v in p.items() if k != "causal"):
        raise Fail(f"--problem: sizes must be positive: {given}")
    if a.samples < 1 or a.warmup < 0:
        raise Fail("--samples must be >= 1 and --warmup >= 0")
    torch = load_torch(a.device)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    notes = []
    make, op, impl = build_op(torch, a.kernel, p, dev, notes)
    with torch.inference_mode():
        if dev.type == "cuda":
            method, samples, cold = time_cuda(torch, dev, make, op, a.samples, a.warmup, notes)
        else:
            method, samples, cold = time_cpu(torch, make, op, a.samples, a.warmup, notes)
    emit({"schema": SCHEMA, "kernel": a.kernel, "impl": impl, "problem": given,
          "device": device_name(torch, dev), "torch": torch.__version__, "cuda": torch.version.cuda,
          "method": method, "samples_us": samples, "median_us": statistics.median(samples),
          "cold_median_us": cold, "notes": notes})
    return 0


# ---------------------------------------------------------------- check

def read_manifest(d):
    path = d / "manifest.json"
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Fail(f"{path}: {e}")
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise Fail(f"{path}: expected an object with \"schema\": {SCHEMA}")
    for key, typ in (("kernel", str), ("problem", dict), ("args", list)):
        if not isinstance(m.get(key), typ):
            raise Fail(f"{path}: key {key!r} missing or not a {typ.__name__}")
    if m["kernel"] not in CHECK_ARGS:
        raise Fail(f"{path}: unknown kernel {m['kernel']!r} (known: {', '.join(CHECK_ARGS)})")
    return path, m


def load_args(torch, d, path, m, dev, notes):
    """Returns ({name: tensor}, {name: scalar}) after checking names, dtypes and sizes."""
    tdt = {"f16": torch.float16, "f32": torch.float32, "i32": torch.int32}
    ins, outs, scalar_names = CHECK_ARGS[m["kernel"]]
    want = dict(ins + outs)
    bufs, scalars = {}, {}
    for i, arg in enumerate(m["args"]):
        where = f"{path}: args[{i}]"
        if not isinstance(arg, dict) or not isinstance(arg.get("name"), str):
            raise Fail(f"{where}: expected an object with a string \"name\"")
        name, dtype = arg["name"], arg.get("dtype")
        where += f" ({name!r})"
        if arg.get("io") in ("scratch", "inout") and name not in want:
            notes.append(f"{name} ({arg['io']}) not compared: the PyTorch operation has no counterpart")
            continue
        if name in bufs or name in scalars:
            raise Fail(f"{where}: duplicate argument name")
        if dtype not in DTYPE_SIZES:
            raise Fail(f"{where}: unsupported dtype {dtype!r} (supported: {', '.join(DTYPE_SIZES)})")
        if "file" in arg:
            if name not in want:
                raise Fail(f"{where}: unexpected buffer for {m['kernel']} (expected {', '.join(want)})")
            if dtype != want[name]:
                raise Fail(f"{where}: dtype {dtype} but {m['kernel']} needs {want[name]}")
            io, n = arg.get("io"), arg.get("len")
            if io != ("in" if name in dict(ins) else "out") or not isinstance(n, int) or n < 0:
                raise Fail(f"{where}: needs \"io\": \"{'in' if name in dict(ins) else 'out'}\" and an integer \"len\" >= 0")
            f = d / str(arg["file"])
            size = f.stat().st_size if f.is_file() else -1
            if size != n * DTYPE_SIZES[dtype]:
                raise Fail(f"{where}: file {f} " + ("missing" if size < 0 else f"has {size} bytes")
                           + f", expected len {n} x {DTYPE_SIZES[dtype]} = {n * DTYPE_SIZES[dtype]}")
            t = torch.from_file(str(f), shared=False, size=n, dtype=tdt[dtype]) if n else torch.empty(0, dtype=tdt[dtype])
            bufs[name] = t.to(dev)
        elif "value" in arg:
            v = arg["value"]
            ok = isinstance(v, int) if dtype == "i32" else isinstance(v, (int, float)) and dtype == "f32"
            if not ok or isinstance(v, bool):
                raise Fail(f"{where}: value {v!r} does not fit dtype {dtype}")
            # an f32 scalar is what the kernel saw: round it to float32
            scalars[name] = v if dtype == "i32" else torch.tensor(float(v), dtype=torch.float32).item()
        else:
            raise Fail(f"{where}: needs \"file\" and \"len\" (buffer) or \"value\" (scalar)")
    missing = [n for n in want if n not in bufs]
    if missing:
        raise Fail(f"{path}: {m['kernel']} needs buffer(s) {', '.join(missing)}; manifest has {', '.join(bufs) or 'none'}")
    scalars = match_names(m["kernel"], scalar_names, scalars, f"{path}: scalar arg")
    for k, v in m["problem"].items():  # problem and scalars must agree where both name an axis
        alias = "seq_k" if k == "cols" and m["kernel"] == "softmax" else k
        if alias in scalars and scalars[alias] != v:
            raise Fail(f"{path}: problem {k}={v!r} but scalar arg {k} = {scalars[alias]!r}")
    if "mask" in m["problem"] and m["kernel"] == "attention" and m["problem"]["mask"] != scalars["causal"] + 1:
        raise Fail(f"{path}: problem mask={m['problem']['mask']!r} but scalar arg causal = {scalars['causal']!r}")
    return bufs, scalars


def expect_len(bufs, name, n):
    if bufs[name].numel() != n:
        raise Fail(f"buffer {name!r} has len {bufs[name].numel()}, but the scalars imply {n}")
    return bufs[name].double()


def compare(name, got, want, rtol, atol, rule):
    got, want = got.double().flatten(), want.double().flatten()
    diff = (got - want).abs()
    ok = (diff <= atol + rtol * want.abs()) | (got == want)
    meaningful = want.abs() > atol
    rel = (diff[meaningful] / want.abs()[meaningful]).max().item() if meaningful.any() else 0.0
    bad = int((~ok).sum())
    return {"arg": name, "elements": got.numel(), "max_abs": diff.max().item() if got.numel() else 0.0,
            "max_rel": rel, "rtol": rtol, "atol": atol, "bad": bad, "passed": bad == 0, "rule": rule}


def check_simsearch(torch, b, s):
    F = torch.nn.functional
    Q, N, dim, k = s["Q"], s["N"], s["dim"], s["k"]
    if not 0 < k <= N:
        raise Fail(f"simsearch: need 0 < k <= N (k={k}, N={N})")
    q = F.normalize(expect_len(b, "queries", Q * dim).view(Q, dim), dim=1)
    c = F.normalize(expect_len(b, "corpus", N * dim).view(N, dim), dim=1)
    rs, ri = expect_len(b, "scores", Q * k).view(Q, k), b["index"].long()
    if ri.numel() != Q * k:
        raise Fail(f"buffer 'index' has len {ri.numel()}, but the scalars imply {Q * k}")
    ri = ri.view(Q, k)
    rtol, atol = 1e-5, 1e-6 * math.sqrt(dim)
    vals, bad_idx, shortfall, short_rel = [], 0, 0.0, 0.0
    chunk = max(1, (256 << 20) // (8 * N))
    for r0 in range(0, Q, chunk):
        S = q[r0:r0 + chunk] @ c.T
        tv, ti = torch.topk(S, k, dim=-1)
        vals.append(tv)
        idx = ri[r0:r0 + chunk]
        valid = (idx >= 0) & (idx < N)
        srt = idx.sort(dim=-1).values
        dup = torch.zeros_like(valid)
        dup.scatter_(1, idx.sort(dim=-1).indices[:, 1:], srt[:, 1:] == srt[:, :-1])
        true_at = S.gather(1, idx.clamp(0, N - 1))
        kth = tv[:, -1:]
        tie = atol + rtol * kth.abs()
        in_top = (idx[:, :, None] == ti[:, None, :]).any(-1)
        consistent = (true_at - rs[r0:r0 + chunk]).abs() <= atol + rtol * true_at.abs()
        ok = valid & ~dup & consistent & (in_top | (true_at >= kth - tie))
        missing = ~(ti[:, :, None] == idx[:, None, :]).any(-1) & (tv > kth + tie)
        bad_idx += int((~ok).sum()) + int(missing.sum())
        short = ((kth - true_at) * (valid & ~in_top)).clamp(min=0)
        shortfall = max(shortfall, short.max().item())
        short_rel = max(short_rel, (short / kth.abs().clamp(min=1e-30)).max().item())
    scores = compare("scores", rs, torch.cat(vals), rtol, atol,
                     "cosines <= 1, dot products of length dim: rtol 1e-5, atol 1e-6*sqrt(dim)")
    return [scores, {"arg": "index", "elements": Q * k, "max_abs": shortfall, "max_rel": short_rel,
                     "rtol": rtol, "atol": atol, "bad": bad_idx, "passed": bad_idx == 0,
                     "rule": "index sets per query: swaps allowed only for scores tied with the k-th within "
                             "atol+rtol*|kth|; each index's true score must match its reported score; "
                             "max_abs = largest shortfall of a chosen index below the true k-th score"}]


def check_outputs(torch, kernel, b, s):
    F = torch.nn.functional
    fp32 = "fp32 output: rtol 1e-5, atol 1e-6*sqrt(K)*max|term| (K = reduction length)"
    if kernel == "softmax":
        r, c = s["rows"], s["seq_k"]
        want = torch.softmax(expect_len(b, "x", r * c).view(r, c), dim=-1)
        return [compare("y", expect_len(b, "y", r * c), want, 1e-5, 1e-6 / c,
                        "fp32 softmax, error relative per element: rtol 1e-5, atol 1e-6 x mean output (1/seq_k)")]
    if kernel == "rowsum":
        r, c = s["rows"], s["cols"]
        x = expect_len(b, "x", r * c).view(r, c)
        atol = max(1e-6, 1e-6 * math.sqrt(c) * (x.abs().max().item() if x.numel() else 0.0))
        return [compare("y", expect_len(b, "y", r), x.sum(-1), 1e-5, atol, fp32)]
    if kernel == "layernorm":
        r, c = s["rows"], s["cols"]
        x = expect_len(b, "x", r * c).view(r, c)
        g, be = expect_len(b, "gamma", c), expect_len(b, "beta", c)
        want = F.layer_norm(x, (c,), g, be, s["eps"])
        scale = (want - be).abs().max().item() if want.numel() else 0.0  # max |gamma * xhat|
        return [compare("y", expect_len(b, "y", r * c), want, 1e-5, max(1e-6, 1e-6 * math.sqrt(c) * scale),
                        "fp32 output: rtol 1e-5, atol 1e-6*sqrt(cols)*max|gamma*xhat|")]
    if kernel in ("gemv", "gemm"):
        m, k, n = s["m"], s["k"], s["n"]
        an, bn, on = ("A", "X", "Y") if kernel == "gemv" else ("A", "B", "C")
        A, B = expect_len(b, an, m * k).view(m, k), expect_len(b, bn, k * n).view(k, n)
        mx = lambda t: t.abs().max().item() if t.numel() else 0.0
        atol = max(1e-6, 1e-6 * math.sqrt(k) * mx(A) * mx(B))
        return [compare(on, expect_len(b, on, m * n), A @ B, 1e-5, atol, fp32)]
    if kernel == "attention":
        Bz, H, S, D, causal = s["B"], s["H"], s["S"], s["D"], bool(s["causal"])
        shape, n = (Bz * H, S, D), Bz * H * S * D
        q, k, v = (expect_len(b, a, n).view(shape) for a in ("Q", "K", "V"))
        out = torch.empty_like(q)
        rows = max(1, (256 << 20) // (8 * max(S, 1)))
        for i in range(Bz * H):
            for r0 in range(0, S, rows):
                sc = (q[i, r0:r0 + rows] @ k[i].T) / math.sqrt(D)
                if causal:
                    ri = torch.arange(r0, min(r0 + rows, S), device=q.device)[:, None]
                    sc = sc.masked_fill(torch.arange(S, device=q.device)[None, :] > ri, float("-inf"))
                out[i, r0:r0 + rows] = torch.softmax(sc, dim=-1) @ v[i]
        vmax = v.abs().max().item() if v.numel() else 0.0
        atol = max(1e-4, 1e-6 * math.sqrt(S) * vmax)
        return [compare("O", expect_len(b, "O", n), out, 1e-3, atol,
                        "fp16 output (half ulp <= 2^-11 relative): rtol 1e-3, atol max(1e-4, 1e-6*sqrt(S)*max|V|)")]
    if kernel == "conv2d":
        h, w = s["H"], s["W"]
        x = expect_len(b, "in", h * w).view(1, 1, h, w)
        f = expect_len(b, "f", 49).view(1, 1, 7, 7)
        want = F.conv2d(x, f, padding=3).view(-1)
        mx = lambda t: t.abs().max().item() if t.numel() else 0.0
        atol = max(1e-6, 1e-6 * 7 * mx(x) * mx(f))
        return [compare("out", expect_len(b, "out", h * w), want, 1e-5, atol,
                        "fp32 output: rtol 1e-5, atol 1e-6*sqrt(49)*max|in|*max|f|")]
    if kernel == "simsearch":
        return check_simsearch(torch, b, s)
    raise Fail(f"unknown kernel {kernel!r}")


def cmd_check(a):
    d = Path(a.dir)
    path, m = read_manifest(d)
    if sys.byteorder != "little":
        raise Fail("this host is big-endian; the buffers are little-endian")
    torch = load_torch(a.device)
    dev = torch.device(a.device)
    with torch.inference_mode():
        notes = ["expected values computed by PyTorch in float64 from the same inputs (fp16 inputs "
                 "upcast); ok where |ref - expected| <= atol + rtol*|expected|"]
        bufs, scalars = load_args(torch, d, path, m, dev, notes)
        outputs = check_outputs(torch, m["kernel"], bufs, scalars)
    passed = all(o["passed"] for o in outputs)
    emit({"schema": SCHEMA, "kernel": m["kernel"], "problem": m["problem"], "device": device_name(torch, dev),
          "torch": torch.__version__, "outputs": outputs, "passed": passed,
          "notes": notes})
    return 0 if passed else 1


class Parser(argparse.ArgumentParser):
    def error(self, message):  # keep the one-JSON-object contract for usage errors too
        self.print_usage(sys.stderr)
        raise Fail(f"{self.prog}: {message}")


def main(argv=None):
    ap = Parser(prog="torch_baselines.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    t = sub.add_parser("time", help="time the PyTorch equivalent of a bundled kernel",
                       description="Prints {schema, kernel, impl, problem, device, torch, cuda, method "
                                   "(cold|batch), samples_us, median_us, cold_median_us, notes}. Kernels and axes: "
                       + "; ".join(f"{k}: {', '.join(x if isinstance(x, str) else '/'.join(x) for x in v)}"
                                   for k, v in AXES.items()))
    t.add_argument("--kernel", required=True, help=f"one of: {', '.join(AXES)}")
    t.add_argument("--problem", required=True, help="k1=v1,k2=v2,... (integers; every axis, no others)")
    t.add_argument("--samples", type=int, default=100, help="timed samples (default 100)")
    t.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    t.add_argument("--device", default="cuda", help="cuda[:N] (default) or cpu (perf_counter timing)")
    c = sub.add_parser("check", help="check a reference kernel's dumped outputs against PyTorch in float64",
                       description="DIR holds manifest.json ({schema, kernel, problem, args: [{name, dtype "
                                   "(f16|f32|i32), io, len, file} | {name, dtype, value}]}) and raw "
                                   "little-endian buffers; \"out\" files hold the reference kernel's output. "
                                   "Prints {schema, kernel, problem, device, torch, outputs: [{arg, elements, "
                                   "max_abs, max_rel, rtol, atol, bad, passed, rule}], passed, notes}; exit 0 "
                                   "if all passed, 1 if any failed, 2 on bad input.")
    c.add_argument("dir", help="directory with manifest.json")
    c.add_argument("--device", default="cuda", help="cuda[:N] (default) or cpu")
    try:
        a = ap.parse_args(argv)
        return cmd_time(a) if a.cmd == "time" else cmd_check(a)
    except Fail as e:
        log(str(e))
        emit({"schema": SCHEMA, "error": str(e)})
        return e.code
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        emit({"schema": SCHEMA, "error": f"{type(e).__name__}: {e}"})
        return 4


if __name__ == "__main__":
    sys.exit(main())

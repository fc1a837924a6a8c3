#!/usr/bin/env python3
"""The search-efficiency benchmark, step 3: how quickly nightshift's search finds a
kernel's best configuration, against Kernel Tuner's strategies, judged by an
exhaustive table of every configuration measured alone.

    analyze.py RESULTS [--seeds 10] [--json FILE] [--kernels a,b] [--no-kt]

Inputs (a RESULTS directory, as spaces.sh and runs.sh leave it):

  RESULTS/spaces/<kernel>/space.jsonl   `nightshift space`'s table. The first line is
      the header {"kind":"space","kernel","problem","tunables":[...],
      "configurations","device",...}; then one {"kind":"config","config":{NAME: value}
      (keys sorted by name),"outcome","median_us" (null when it failed),"compile_ms",
      "validate_ms","measure_ms","cost_ms",...} per configuration. A last line cut
      short by a crash is ignored.
  RESULTS/runs/<kernel>-<fraction>[-<repeat>]/journal.jsonl   a `nightshift run`'s
      journal, one {"seq","t_ms","event":{"kind",...}} a line. Read here: `evaluated`
      (a candidate; with `rewritten` it is a source rewrite, not a table
      configuration), `commit` (the candidate became the kept best), `charge` (GPU
      seconds spent: their sum is the run's GPU time), `run_started` (budgets.run.
      gpu_hours) and `run_finished`.

What it measures, per kernel:

  * the table: its optimum (least median µs), how many configurations lie within 1%
    and 3% of it, and what measuring all of them cost the GPU (the sum of cost_ms);
  * each nightshift run: the kept best after every candidate and commit, judged by
    the table (kept median / optimum); the evaluations and GPU seconds it took to hold
    a configuration within 3% and within 1% of the optimum (GPU seconds counted up to
    the next candidate, so a candidate's own charges that follow its record are in);
    its total evaluations and GPU time, and its final kept best;
  * Kernel Tuner's random_sample, genetic_algorithm, bayes_opt and dual_annealing,
    replayed in simulation mode on a cache built from the same table, over several
    seeds: evaluations and GPU seconds (the table's cost of each distinct
    configuration) to reach 3% and 1%, and the best found after as many evaluations
    as each nightshift run made.

Markdown goes to stdout; --json FILE writes every number as JSON too. Nothing is
estimated: what was not measured prints as "—" or "not reached".
"""

import argparse
import contextlib
import gzip
import json
import math
import os
import random
import statistics
import sys
import tempfile
import warnings

STRATEGIES = ["random_sample", "genetic_algorithm", "bayes_opt", "dual_annealing"]
TARGETS = {"3%": 0.03, "1%": 0.01}
DASH = "—"
NOT_REACHED = "not reached"
BAYES_POPSIZE = 20  # Kernel Tuner's bayes_opt default initial sample


# ----------------------------------------------------------------------- reading


def stored(path):
    """`path`, or `path`.gz where only the compressed copy is kept; None if neither."""
    for p in (path, path + ".gz"):
        if os.path.isfile(p):
            return p
    return None


def read_jsonl(path):
    """JSON objects, one a line; an unparsable last line (cut short) is left out.
    A `.gz` path is read through gzip."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i + 1 == len(lines):
                break
            raise ValueError(f"{path} line {i + 1}: not JSON")
    return out


def number(v):
    """A finite float, or None (missing, null, or a non-finite marker)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def parse_config(text):
    """`Config`'s display, "A=1 B=2", as {name: value} (ints where they parse)."""
    out = {}
    if not text or text.strip() == "(no tunables)":
        return out
    for part in text.split():
        name, _, value = part.partition("=")
        try:
            out[name] = int(value)
        except ValueError:
            out[name] = value
    return out


class Space:
    """A kernel's exhaustive table: configuration (values in `tunables` order) ->
    median µs (None when it failed) and cost."""

    def __init__(self, path):
        lines = read_jsonl(path)
        if not lines or lines[0].get("kind") != "space":
            raise ValueError(f"{path}: no space header on the first line")
        self.header = lines[0]
        self.kernel = self.header.get("kernel", os.path.basename(os.path.dirname(path)))
        self.tunables = list(self.header.get("tunables", []))
        self.declared = self.header.get("configurations")
        self.rows = {}  # key -> row dict
        self.exhaustive_gpu_s = 0.0
        self.skipped = 0  # rows whose config lacks a tunable
        for row in lines[1:]:
            if row.get("kind") != "config":
                continue
            self.exhaustive_gpu_s += (number(row.get("cost_ms")) or 0.0) / 1e3
            key = self.key_of(row.get("config") or {})
            if key is None:
                self.skipped += 1
                continue
            self.rows[key] = row
        passed = {k: self.median(k) for k in self.rows if self.median(k) is not None}
        self.optimum_key = min(passed, key=passed.get) if passed else None
        self.optimum = passed.get(self.optimum_key)
        self.passed = len(passed)

    def key_of(self, config):
        """The table key of a {name: value} config, or None when a tunable is missing
        or a name is not a tunable."""
        if set(config) != set(self.tunables):
            return None
        return tuple(config[t] for t in self.tunables)

    def key_of_text(self, text):
        """The key of a journal's config string, or None when it is not in the table."""
        key = self.key_of(parse_config(text))
        return key if key in self.rows else None

    def median(self, key):
        row = self.rows.get(key)
        if row is None or row.get("outcome") != "passed":
            return None
        return number(row.get("median_us"))

    def cost_s(self, key):
        return (number(self.rows[key].get("cost_ms")) or 0.0) / 1e3

    def ratio(self, key):
        """Table time / optimum, or None (not in the table, failed, no optimum)."""
        m = self.median(key) if key is not None else None
        return m / self.optimum if m is not None and self.optimum else None

    def within(self, x):
        return sum(1 for k in self.rows if (self.ratio(k) or math.inf) <= 1 + x)


def first_reach(points, target, exhaustive_gpu_s):
    """The first (evals, gpu_s, ratio) point within `target` of the optimum."""
    for evals, gpu_s, ratio in points:
        if ratio is not None and ratio <= 1 + target + 1e-12:
            pct = 100 * gpu_s / exhaustive_gpu_s if exhaustive_gpu_s else None
            return {"evals": evals, "gpu_s": gpu_s, "pct_exhaustive": pct}
    return None


# ---------------------------------------------------------------- nightshift runs


def find_runs(results, kernel):
    """(run id, nominal fraction, journal path) of each runs/<kernel>-<f>[-<r>] dir."""
    base = os.path.join(results, "runs")
    found = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if not name.startswith(kernel + "-"):
            continue
        parts = name[len(kernel) + 1:].split("-")
        try:
            fraction = float(parts[0])
        except ValueError:
            continue  # another kernel whose name starts with this one's
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            continue
        path = stored(os.path.join(base, name, "journal.jsonl"))
        if path:
            found.append((name, fraction, path))
    return found


def budget_gpu_s(event):
    try:
        run = event["budgets"]["run"]
        if run.get("gpu_s") is not None:
            return number(run["gpu_s"])
        return number(run["gpu_hours"]) * 3600
    except (KeyError, TypeError, AttributeError):
        return None


def trajectory(space, records):
    """Walks a run's journal records in order and judges the kept best by the table.

    Returns the run's totals, its baseline and final kept best, the points
    (evals, gpu_s, ratio) after every candidate and commit, and the first points
    within 3% and 1% of the optimum."""
    evals = rewrites = 0
    gpu = 0.0
    gpu_before_eval = []  # cumulative charges at each of the kernel's `evaluated`
    marks = []  # (evals, kept ratio) after each evaluated / commit record
    last_eval = {}  # config string -> was its latest evaluation a rewrite
    kept = baseline = None  # table key of the kept best (the last judgeable one)
    kept_text = None
    final_is_rewrite = rewrite_committed = False
    not_in_table = []
    budget = finished = None

    def keep(text, is_rewrite):
        nonlocal kept, kept_text, final_is_rewrite, rewrite_committed
        kept_text, final_is_rewrite = text, is_rewrite
        if is_rewrite:
            rewrite_committed = True  # still judged by the last table config, flagged
            return
        kept = space.key_of_text(text)
        if kept is None and text not in not_in_table:
            not_in_table.append(text)

    for rec in records:
        ev = rec.get("event", rec) if isinstance(rec, dict) else {}
        kind = ev.get("kind")
        if kind == "charge":
            gpu += number(ev.get("gpu_s")) or 0.0
        elif kind in ("run_started", "resumed"):
            budget = budget_gpu_s(ev) or budget
        elif kind == "run_finished":
            finished = ev.get("reason")
        elif kind in ("evaluated", "commit") and ev.get("kernel", space.kernel) == space.kernel:
            text = ev.get("config", "")
            if kind == "commit":
                keep(text, last_eval.get(text, False))
            else:
                gpu_before_eval.append(gpu)
                evals += 1
                is_rewrite = ev.get("rewritten") is not None
                rewrites += is_rewrite
                last_eval[text] = is_rewrite
                if evals == 1:  # the baseline: the initial kept best
                    keep(text, is_rewrite)
                    baseline = kept
            marks.append((evals, space.ratio(kept)))
    # GPU at a point: every charge up to the next candidate (or the journal's end)
    points = [(n, gpu_before_eval[n] if n < len(gpu_before_eval) else gpu, r) for n, r in marks]
    exh = space.exhaustive_gpu_s
    return {
        "evals": evals,
        "rewrites": rewrites,
        "gpu_s": gpu,
        "pct_exhaustive": 100 * gpu / exh if exh else None,
        "budget_gpu_s": budget,
        "budget_fraction": budget / exh if budget is not None and exh else None,
        "baseline": list(baseline) if baseline is not None else None,
        "baseline_ratio": space.ratio(baseline),
        "final": kept_text,
        "final_table_config": list(kept) if kept is not None else None,
        "final_ratio": space.ratio(kept),
        "final_is_rewrite": final_is_rewrite,
        "rewrite_committed": rewrite_committed,
        "not_in_table": not_in_table,
        "finished": finished,
        "points": points,
        "reach": {name: first_reach(points, x, exh) for name, x in TARGETS.items()},
    }


# ------------------------------------------------------------------ Kernel Tuner


def kt_cache(space):
    """Kernel Tuner's cache file contents for the table (one entry per row)."""
    tune_params = {t: sorted({k[i] for k in space.rows}) for i, t in enumerate(space.tunables)}
    entries = {}
    for key, row in space.rows.items():
        entry = dict(zip(space.tunables, key))
        median = space.median(key)
        if median is not None:
            entry.update(time=median, times=[median])
        else:
            failed = "CompilationFailedConfig" if row.get("outcome") == "compile_failed" else "RuntimeFailedConfig"
            entry["time"] = failed
        entry.update(
            compile_time=number(row.get("compile_ms")) or 0.0,
            verification_time=number(row.get("validate_ms")) or 0.0,
            benchmark_time=number(row.get("measure_ms")) or 0.0,
            strategy_time=0,
            framework_time=0,
            timestamp="1970-01-01 00:00:00+00:00",
        )
        entries[",".join(str(v) for v in key)] = entry
    return {
        "device_name": space.header.get("device", "unknown device"),
        "kernel_name": space.kernel,
        "problem_size": [1],
        "tune_params_keys": list(space.tunables),
        "tune_params": tune_params,
        "objective": "time",
        "cache": entries,
    }


class KernelTunerSim:
    """Replays Kernel Tuner strategies on a table in simulation mode (no GPU)."""

    def __init__(self, space, workdir):
        import kernel_tuner  # noqa: F401  (ImportError: the caller skips KT)
        from constraint import FunctionConstraint

        self.space = space
        self.cache = kt_cache(space)
        self.path = os.path.join(workdir, f"{space.kernel}-cache.json")
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(self.cache, f)
        table = set(space.rows)
        names = list(space.tunables)

        def in_table(*values, **named):
            if named:
                values = tuple(named[n] for n in names)
            return tuple(values) in table

        # python-constraint calls it with the values in tune_params order: KT's space
        # is then exactly the table's configurations (failed ones included).
        self.restrictions = [FunctionConstraint(in_table)]
        self.runs = {}  # (strategy, seed, max_fevals) -> evaluation order

    def run(self, strategy, seed, max_fevals):
        """The distinct table configurations the strategy evaluated, in order."""
        max_fevals = min(max_fevals, len(self.space.rows))
        memo = (strategy, seed, max_fevals)
        if memo not in self.runs:
            self.runs[memo] = self._tune(strategy, seed, max_fevals)
        return self.runs[memo]

    def options(self, strategy, max_fevals):
        """KT's defaults but max_fevals; bayes_opt's initial sample (popsize, 20 by
        default) must fit in the space, so a table smaller than that gets half its size."""
        options = {"max_fevals": max_fevals}
        if strategy == "bayes_opt" and len(self.space.rows) < BAYES_POPSIZE:
            options["popsize"] = max(1, len(self.space.rows) // 2)
        return options

    def _tune(self, strategy, seed, max_fevals):
        import numpy
        from kernel_tuner import tune_kernel

        random.seed(seed)
        numpy.random.seed(seed)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr), seeded_lhs():
            warnings.simplefilter("ignore")
            results, _ = tune_kernel(
                self.space.kernel, "__global__ void k() {}", (1,), [], self.cache["tune_params"],
                restrictions=self.restrictions, cache=self.path, simulation_mode=True,
                strategy=strategy, strategy_options=self.options(strategy, max_fevals),
                objective="time", quiet=True, verbose=False)
        order, seen = [], set()
        for r in results:
            if not r:
                continue
            key = tuple(plain(r[t]) for t in self.space.tunables)
            if key in self.space.rows and key not in seen:
                seen.add(key)
                order.append(key)
        return order


@contextlib.contextmanager
def seeded_lhs():
    """bayes_opt draws its initial Latin hypercube sample from scipy's default, fresh
    OS entropy, so a seed would not reproduce a run: while this is open its sampler
    takes a generator drawn from numpy's (seeded) global state instead."""
    import inspect

    import numpy
    try:
        import kernel_tuner.strategies.bayes_opt as bo
        original = bo.LatinHypercube
        keyword = "rng" if "rng" in inspect.signature(original).parameters else "seed"
    except Exception:  # nothing to seed (or bayes_opt is missing: it reports that)
        yield
        return

    def latin_hypercube(*args, **kwargs):
        if "rng" not in kwargs and "seed" not in kwargs:
            kwargs[keyword] = numpy.random.default_rng(numpy.random.randint(2**31))
        return original(*args, **kwargs)

    bo.LatinHypercube = latin_hypercube
    try:
        yield
    finally:
        bo.LatinHypercube = original


def plain(v):
    """A numpy scalar as the Python value the table keys hold."""
    return v.item() if hasattr(v, "item") else v


def kt_points(space, order):
    """(evals, gpu_s, best ratio) after each distinct evaluation."""
    points, gpu, best = [], 0.0, None
    for n, key in enumerate(order, 1):
        gpu += space.cost_s(key)
        r = space.ratio(key)
        if r is not None and (best is None or r < best):
            best = r
        points.append((n, gpu, best))
    return points


def median_of(values, n):
    """Median over n seeds where missing values did not reach: None when more than
    half did not; the lower middle when the pair straddles the unreached."""
    if not n or len(values) * 2 < n:
        return None
    v = sorted(values) + [math.inf] * (n - len(values))
    if n % 2:
        return v[n // 2]
    lo, hi = v[n // 2 - 1], v[n // 2]
    return lo if math.isinf(hi) else (lo + hi) / 2


def kt_summary(space, sim, strategy, seeds, run_evals):
    """One strategy over the seeds: reach statistics with the whole table as budget,
    and the median best ratio after each nightshift run's number of evaluations."""
    exh = space.exhaustive_gpu_s
    size = len(space.rows)
    per_seed = []
    for s in range(seeds):
        order = sim.run(strategy, s, size)
        points = kt_points(space, order)
        per_seed.append({
            "seed": s,
            "evals": len(order),
            "reach": {name: first_reach(points, x, exh) for name, x in TARGETS.items()},
        })
    # distinct evaluations made: genetic_algorithm and dual_annealing may stop short
    made = statistics.median(p["evals"] for p in per_seed) if per_seed else None
    out = {"strategy": strategy, "options": sim.options(strategy, size), "seeds": per_seed,
           "evals_made_median": made, "reach": {}, "at_evals": {}}
    for name in TARGETS:
        hits = [p["reach"][name] for p in per_seed if p["reach"][name]]
        evals = [h["evals"] for h in hits]
        gpu = [h["gpu_s"] for h in hits]
        med_gpu = median_of(gpu, seeds)
        out["reach"][name] = {
            "reached": len(hits), "of": seeds,
            "evals_median": median_of(evals, seeds),
            "evals_min": min(evals, default=None), "evals_max": max(evals, default=None),
            "gpu_s_median": med_gpu,
            "pct_exhaustive": 100 * med_gpu / exh if med_gpu is not None and exh else None,
        }
    for e in sorted(set(run_evals)):
        ratios, made = [], []
        for s in range(seeds):
            points = kt_points(space, sim.run(strategy, s, e)[:e])
            made.append(len(points))
            if points and points[-1][2] is not None:
                ratios.append(points[-1][2])
        out["at_evals"][e] = {"median_ratio": median_of(ratios, seeds), "of": seeds,
                              "with_result": len(ratios), "evals_made_median": statistics.median(made)}
    return out


# ------------------------------------------------------------------------ report


def analyze_kernel(results, kernel, seeds, use_kt, kt_skip, workdir):
    space = Space(stored(os.path.join(results, "spaces", kernel, "space.jsonl")))
    runs = []
    for run_id, fraction, path in find_runs(results, kernel):
        t = trajectory(space, read_jsonl(path))
        t.update(run=run_id, nominal_fraction=fraction)
        runs.append(t)
    out = {
        "kernel": kernel, "problem": space.header.get("problem"),
        "device": space.header.get("device"), "tunables": space.tunables,
        "configurations": len(space.rows), "declared": space.declared,
        "skipped_rows": space.skipped, "passed": space.passed,
        "optimum": list(space.optimum_key) if space.optimum_key else None,
        "optimum_us": space.optimum, "exhaustive_gpu_s": space.exhaustive_gpu_s,
        "within": {name: space.within(x) for name, x in TARGETS.items()},
        "baseline": next((r["baseline"] for r in runs if r["baseline"] is not None), None),
        "baseline_ratio": next((r["baseline_ratio"] for r in runs if r["baseline"] is not None), None),
        "runs": runs, "kt": None, "kt_skipped": kt_skip,
    }
    if use_kt and not kt_skip and space.optimum is not None:
        sim = KernelTunerSim(space, workdir)
        out["kt"] = []
        for strategy in STRATEGIES:
            print(f"[analyze] {kernel}: Kernel Tuner {strategy} x {seeds} seeds", file=sys.stderr)
            try:
                out["kt"].append(kt_summary(space, sim, strategy, seeds, [r["evals"] for r in runs if r["evals"]]))
            except Exception as e:  # one strategy failing leaves the others
                out["kt"].append({"strategy": strategy, "error": f"{type(e).__name__}: {e}"})
    out["verdict"] = verdict(out)
    return out


def verdict(k):
    reached = [r for r in k["runs"] if r["reach"]["3%"]]
    ns_median = statistics.median(r["reach"]["3%"]["evals"] for r in reached) if reached else None
    largest = max(k["runs"], key=lambda r: (r["budget_gpu_s"] or 0, r["nominal_fraction"]), default=None)
    kt_best = None
    for s in k["kt"] or []:
        m = s.get("reach", {}).get("3%", {}).get("evals_median")
        if m is not None and (kt_best is None or m < kt_best[1]):
            kt_best = (s["strategy"], m)
    exh = k["exhaustive_gpu_s"]
    cheap = [r["run"] for r in reached if exh and r["reach"]["3%"]["gpu_s"] <= 0.10 * exh]
    return {
        "nightshift_evals_to_3pct_median": ns_median,
        "nightshift_runs_reached_3pct": len(reached), "nightshift_runs": len(k["runs"]),
        "largest_budget_run": largest["run"] if largest else None,
        "largest_budget_evals_to_3pct": (largest["reach"]["3%"] or {}).get("evals") if largest else None,
        "kt_best_strategy": kt_best[0] if kt_best else None,
        "kt_best_evals_to_3pct_median": kt_best[1] if kt_best else None,
        "reached_3pct_within_10pct_of_exhaustive": bool(cheap) if k["runs"] else None,
        "runs_reached_3pct_within_10pct": cheap,
    }


def fnum(v, digits=1):
    if v is None:
        return DASH
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.{digits}f}"


def fpct(v):
    return DASH if v is None else f"{v:.1f}%"


def fratio(r):
    return DASH if r is None else f"+{100 * (r - 1):.1f}%"


def freach(hit):
    if not hit:
        return NOT_REACHED
    return f"{hit['evals']} / {hit['gpu_s']:.1f} s / {fpct(hit['pct_exhaustive'])}"


def markdown(k):
    exh = k["exhaustive_gpu_s"]
    show = lambda key: DASH if key is None else " ".join(f"{n}={v}" for n, v in zip(k["tunables"], key))  # noqa: E731
    lines = [f"## {k['kernel']} ({k['problem'] or DASH}, {k['device'] or DASH})", ""]
    size = f"{k['configurations']} configurations"
    if k["declared"] is not None and k["declared"] != k["configurations"]:
        size += f" (of {k['declared']} declared: the table is incomplete)"
    opt = f"`{show(k['optimum'])}` at {k['optimum_us']:.2f} µs" if k["optimum"] is not None else DASH
    base = DASH if k["baseline"] is None else f"`{show(k['baseline'])}` ({fratio(k['baseline_ratio'])})"
    lines.append(f"Space: {size}, {k['passed']} passed; optimum {opt}; baseline {base}; "
                 f"exhaustive {exh:.1f} GPU-s; within 1%: {k['within']['1%']}, within 3%: {k['within']['3%']}.")
    if k["skipped_rows"]:
        lines.append(f"({k['skipped_rows']} rows without every tunable left out.)")
    lines += ["", "| nightshift run | budget | GPU-s spent | evals | final best vs opt | reached 3% (evals / GPU-s / % exh.) | reached 1% |",
              "|---|---|---|---|---|---|---|"]
    notes = []
    for r in k["runs"]:
        frac = r["budget_fraction"] if r["budget_fraction"] is not None else r["nominal_fraction"]
        budget = f"{frac:.2f}" + (f" ({r['budget_gpu_s']:.1f} s)" if r["budget_gpu_s"] is not None else "")
        flag = " †" if r["rewrite_committed"] else ""
        lines.append(f"| {r['run']} | {budget} | {r['gpu_s']:.1f} ({fpct(r['pct_exhaustive'])}) | {r['evals']} "
                     f"| {fratio(r['final_ratio'])}{flag} | {freach(r['reach']['3%'])} | {freach(r['reach']['1%'])} |")
        if r["rewrite_committed"]:
            notes.append(f"† {r['run']}: a source rewrite was committed (final `{r['final']}`); the table judges "
                         "the last kept table configuration.")
        if r["not_in_table"]:
            notes.append(f"{r['run']}: kept configurations not in the table: {', '.join(r['not_in_table'])}.")
        if r["finished"] is None:
            notes.append(f"{r['run']}: no run_finished record (the run was cut short).")
    if not k["runs"]:
        lines.append("| (no runs) | | | | | | |")
    lines += [""] + notes + ([""] if notes else [])
    if k["kt"] is None:
        lines.append(f"Kernel Tuner: skipped ({k['kt_skipped'] or 'no optimum in the table'}).")
    else:
        evals_cols = sorted({r["evals"] for r in k["runs"] if r["evals"]})
        head = ("| KT strategy | evals made | evals to 3% | evals to 1% | GPU-s to 3% |"
                + "".join(f" best @{e} evals |" for e in evals_cols))
        lines += [head, "|---" * (5 + len(evals_cols)) + "|"]
        for s in k["kt"]:
            if "error" in s:
                error = s["error"].splitlines()[0][:160] if s["error"] else DASH
                lines.append(f"| {s['strategy']} | error: {error} |" + " |" * (3 + len(evals_cols)))
                continue
            cells = [f"{fnum(s['evals_made_median'])} of {k['configurations']}"]
            for name in TARGETS:
                st = s["reach"][name]
                m = st["evals_median"]
                cells.append(f"{fnum(m)} ({st['evals_min']}–{st['evals_max']}; {st['reached']}/{st['of']})"
                             if m is not None else f"{NOT_REACHED} ({st['reached']}/{st['of']})")
            g = s["reach"]["3%"]
            cells.append(f"{g['gpu_s_median']:.1f} ({fpct(g['pct_exhaustive'])})" if g["gpu_s_median"] is not None else NOT_REACHED)
            cells += [fratio(s["at_evals"][e]["median_ratio"]) for e in evals_cols]
            lines.append(f"| {s['strategy']} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Medians over seeds (min–max over the seeds that reached; reached/seeds); "
                     "a median is \"not reached\" when more than half of the seeds did not reach. "
                     "Evals made: distinct configurations a strategy evaluated with the whole table as "
                     "its budget (max_fevals); \"best @E\": its best after at most E.")
        adjusted = [s["strategy"] + " " + json.dumps(s["options"]) for s in k["kt"]
                    if set(s.get("options", {})) - {"max_fevals"}]
        if adjusted:
            lines.append("Options other than max_fevals (the table is too small for the default): "
                         + "; ".join(adjusted) + ".")
    v = k["verdict"]
    ns = (f"{fnum(v['nightshift_evals_to_3pct_median'])} evals (median of {v['nightshift_runs_reached_3pct']}/"
          f"{v['nightshift_runs']} runs that reached)" if v["nightshift_evals_to_3pct_median"] is not None
          else f"{NOT_REACHED} ({v['nightshift_runs']} runs)")
    if v["largest_budget_run"]:
        ns += f"; largest budget {v['largest_budget_run']}: {fnum(v['largest_budget_evals_to_3pct']) if v['largest_budget_evals_to_3pct'] is not None else NOT_REACHED}"
    kt = (f"best KT {v['kt_best_strategy']}: {fnum(v['kt_best_evals_to_3pct_median'])} evals"
          if v["kt_best_strategy"] else "KT: " + (NOT_REACHED if k["kt"] else DASH))
    cheap = {True: "yes (" + ", ".join(v["runs_reached_3pct_within_10pct"]) + ")", False: "no", None: DASH}
    lines += ["", f"**Verdict:** evals to 3%: nightshift {ns} vs {kt}. Reached 3% within 10% of the "
              f"exhaustive GPU time: {cheap[v['reached_3pct_within_10pct_of_exhaustive']]}.", ""]
    return "\n".join(lines)


def kt_available():
    """None when Kernel Tuner imports, else why not."""
    try:
        import kernel_tuner  # noqa: F401
        import constraint  # noqa: F401
    except Exception as e:
        return f"kernel_tuner does not import: {type(e).__name__}: {e}"
    return None


def analyze(results, kernels=None, seeds=10, use_kt=True):
    spaces = os.path.join(results, "spaces")
    found = sorted(d for d in os.listdir(spaces) if stored(os.path.join(spaces, d, "space.jsonl")))
    for k in kernels or []:
        if k not in found:
            print(f"[analyze] {k}: no {spaces}/{k}/space.jsonl, left out", file=sys.stderr)
    kernels = [k for k in found if not kernels or k in kernels]
    kt_skip = (kt_available() if use_kt else "--no-kt")
    with tempfile.TemporaryDirectory(prefix="ns-kt-") as work:
        return {"results": results, "seeds": seeds, "kt_skipped": kt_skip,
                "kernels": [analyze_kernel(results, k, seeds, use_kt, kt_skip, work) for k in kernels]}


def jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="the RESULTS directory (spaces/ and runs/)")
    p.add_argument("--seeds", type=int, default=10, help="Kernel Tuner seeds per strategy (default 10)")
    p.add_argument("--json", help="also write everything as JSON to this file")
    p.add_argument("--kernels", help="comma-separated kernels (default: every table)")
    p.add_argument("--no-kt", action="store_true", help="leave Kernel Tuner out")
    a = p.parse_args(argv)
    if a.seeds < 1:
        p.error("--seeds must be at least 1")
    kernels = [k for k in a.kernels.split(",") if k] if a.kernels else None
    report = analyze(a.results, kernels, a.seeds, not a.no_kt)
    print(f"# Search efficiency: {a.results}\n")
    if report["kt_skipped"]:
        print(f"Kernel Tuner skipped: {report['kt_skipped']}.\n")
    for k in report["kernels"]:
        print(markdown(k))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(jsonable(report), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

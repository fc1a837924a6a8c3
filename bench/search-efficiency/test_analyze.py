#!/usr/bin/env python3
"""Tests of analyze.py on a synthetic RESULTS directory.

    python3 bench/search-efficiency/test_analyze.py

Plain unittest; the Kernel Tuner tests skip when kernel_tuner does not import.
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze  # noqa: E402

# WARPS x VEC -> median µs (None: failed). 12 configurations of the 5 x 3 product;
# optimum 20.0 at WARPS=8 VEC=2; within 1%: 20.0, 20.2; within 3%: also 20.5.
TABLE = {
    (1, 1): 100.0, (1, 2): 90.0,
    (2, 1): 60.0, (2, 2): 50.0, (2, 4): 40.0,
    (4, 1): 30.0, (4, 2): 20.5, (4, 4): 20.2,
    (8, 1): 25.0, (8, 2): 20.0, (8, 4): None,
    (16, 1): 35.0,
}
COST_MS = {key: (500.0 if median is None else 1000.0) for key, median in TABLE.items()}
EXHAUSTIVE_S = 11.5


def space_lines(kernel="toy"):
    lines = [{"kind": "space", "kernel": kernel, "problem": "n=1", "tunables": ["WARPS", "VEC"],
              "configurations": len(TABLE), "device": "Test GPU", "command": "x", "nightshift": "0.1.0"}]
    for (w, v), median in TABLE.items():
        cost = COST_MS[(w, v)]
        row = {"kind": "config", "config": {"VEC": v, "WARPS": w},
               "outcome": "passed" if median is not None else "compile_failed",
               "median_us": median, "ci_us": [median, median] if median else None,
               "samples": 20 if median else 0, "method": None,
               "compile_ms": cost / 2, "validate_ms": cost / 4, "measure_ms": cost / 4, "cost_ms": cost}
        if median is None:
            row["reason"] = "does not compile"
        lines.append(row)
    return lines


def ev(kind, **fields):
    return dict(kind=kind, **fields)


def evaluated(config, median, outcome="passed", rewritten=None, kernel="toy"):
    e = ev("evaluated", kernel=kernel, config=config, pattern="p", outcome=outcome,
           median_us=median, evaluation={"big": True})
    if rewritten is not None:
        e["rewritten"] = rewritten
    return e


def charge(s, config=None):
    return ev("charge", kernel="toy", config=config, stage="measure", gpu_s=s, wall_s=s)


# The run: budget half the exhaustive time. Reaches 3% at the 3rd candidate
# (GPU 4.0 s up to the 4th), 1% at the 5th (GPU 6.5 s up to the 6th); 6.75 s in all.
JOURNAL = [
    ev("run_started", run_id="toy-0.50", device="Test GPU",
       budgets={"run": {"gpu_hours": EXHAUSTIVE_S * 0.5 / 3600}}),
    ev("machine", device={}, ceilings={}),
    ev("charge", stage="ceilings", gpu_s=0.5, wall_s=0.5),
    evaluated("VEC=1 WARPS=1", 100.0),  # baseline: +400%
    charge(1.0, "VEC=1 WARPS=1"),
    ev("proposal", kernel="toy", pattern="p", prediction="faster", configs=["VEC=2 WARPS=2"]),
    evaluated("VEC=2 WARPS=2", 50.0),
    charge(1.0, "VEC=2 WARPS=2"),
    ev("verdict", kernel="toy", config="VEC=2 WARPS=2", baseline="VEC=1 WARPS=1"),
    charge(0.25, "VEC=2 WARPS=2"),
    ev("commit", kernel="toy", config="VEC=2 WARPS=2", sha="a"),
    evaluated("VEC=2 WARPS=4", 20.5),
    charge(1.0, "VEC=2 WARPS=4"),
    ev("commit", kernel="toy", config="VEC=2 WARPS=4", sha="b"),  # within 3%
    charge(0.25, "VEC=2 WARPS=4"),
    evaluated("VEC=2 WARPS=4", 19.0, rewritten={"rewrites": ["unroll"]}),  # not committed
    charge(1.0, "VEC=2 WARPS=4"),
    ev("revert", kernel="toy", config="VEC=2 WARPS=4", reason="slower"),
    evaluated("VEC=2 WARPS=8", 20.0),
    charge(1.0, "VEC=2 WARPS=8"),
    ev("commit", kernel="toy", config="VEC=2 WARPS=8", sha="c"),  # the optimum
    charge(0.5, "VEC=2 WARPS=8"),
    evaluated("VEC=3 WARPS=8", None, outcome="compile_failed"),  # not in the table
    charge(0.25, "VEC=3 WARPS=8"),
    ev("run_finished", reason="budget spent", stop="gpu_hours"),
]


def write_jsonl(path, objs, wrap=False, tail=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, o in enumerate(objs):
            f.write(json.dumps({"seq": i, "t_ms": i, "event": o} if wrap else o) + "\n")
        f.write(tail)


class Synthetic(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.results = self.tmp.name
        self.space_path = os.path.join(self.results, "spaces", "toy", "space.jsonl")
        # a last line cut short by a crash
        write_jsonl(self.space_path, space_lines(), tail='{"kind":"config","config":{"VEC":4,"WA')
        write_jsonl(os.path.join(self.results, "runs", "toy-0.50", "journal.jsonl"), JOURNAL, wrap=True)
        self.space = analyze.Space(self.space_path)

    def tearDown(self):
        self.tmp.cleanup()


class TableTests(Synthetic):
    def test_table(self):
        s = self.space
        self.assertEqual(len(s.rows), 12)
        self.assertEqual(s.passed, 11)
        self.assertEqual(s.optimum, 20.0)
        self.assertEqual(s.optimum_key, (8, 2))  # values in the tunables' order
        self.assertEqual(s.within(0.01), 2)
        self.assertEqual(s.within(0.03), 3)
        self.assertAlmostEqual(s.exhaustive_gpu_s, EXHAUSTIVE_S)
        self.assertIsNone(s.median((8, 4)))

    def test_bad_line_not_last_is_an_error(self):
        with open(self.space_path, "a", encoding="utf-8") as f:
            f.write("\n" + json.dumps(space_lines()[1]) + "\n")
        with self.assertRaises(ValueError):
            analyze.Space(self.space_path)

    def test_config_strings(self):
        self.assertEqual(analyze.parse_config("VEC=2 WARPS=8"), {"VEC": 2, "WARPS": 8})
        self.assertEqual(self.space.key_of_text("VEC=2 WARPS=8"), (8, 2))
        self.assertIsNone(self.space.key_of_text("VEC=3 WARPS=8"))  # unknown value
        self.assertIsNone(self.space.key_of_text("VEC=2"))  # a tunable missing
        self.assertIsNone(self.space.key_of_text("VEC=2 WARPS=8 X=1"))  # not a tunable

    def test_find_runs(self):
        for name in ("toy-0.25-2", "toy-big-0.10", "toyx-0.10"):
            write_jsonl(os.path.join(self.results, "runs", name, "journal.jsonl"), JOURNAL, wrap=True)
        found = [(r, f) for r, f, _ in analyze.find_runs(self.results, "toy")]
        self.assertEqual(found, [("toy-0.25-2", 0.25), ("toy-0.50", 0.5)])


class TrajectoryTests(Synthetic):
    def run_journal(self, events):
        return analyze.trajectory(self.space, [{"seq": i, "event": e} for i, e in enumerate(events)])

    def test_trajectory(self):
        t = self.run_journal(JOURNAL)
        self.assertEqual(t["evals"], 6)
        self.assertEqual(t["rewrites"], 1)
        self.assertAlmostEqual(t["gpu_s"], 6.75)
        self.assertAlmostEqual(t["budget_gpu_s"], EXHAUSTIVE_S * 0.5)
        self.assertAlmostEqual(t["budget_fraction"], 0.5)
        self.assertEqual(t["baseline"], [1, 1])
        self.assertAlmostEqual(t["baseline_ratio"], 5.0)
        self.assertEqual(t["final"], "VEC=2 WARPS=8")
        self.assertEqual(t["final_ratio"], 1.0)
        self.assertFalse(t["final_is_rewrite"])
        self.assertFalse(t["rewrite_committed"])
        self.assertEqual(t["not_in_table"], [])
        self.assertEqual(t["finished"], "budget spent")
        r3, r1 = t["reach"]["3%"], t["reach"]["1%"]
        self.assertEqual(r3["evals"], 3)
        self.assertAlmostEqual(r3["gpu_s"], 4.0)
        self.assertAlmostEqual(r3["pct_exhaustive"], 100 * 4.0 / EXHAUSTIVE_S)
        self.assertEqual(r1["evals"], 5)
        self.assertAlmostEqual(r1["gpu_s"], 6.5)

    def test_plain_records_and_other_kernels(self):
        # records without the {"event": ...} wrapper; another kernel's are ignored
        events = [evaluated("VEC=2 WARPS=8", 20.0, kernel="other")] + JOURNAL
        t = analyze.trajectory(self.space, events)
        self.assertEqual(t["evals"], 6)
        self.assertEqual(t["baseline"], [1, 1])

    def test_rewrite_committed(self):
        events = JOURNAL[:16] + [ev("commit", kernel="toy", config="VEC=2 WARPS=4", sha="r"),
                                 ev("run_finished", reason="done")]
        t = self.run_journal(events)
        self.assertTrue(t["final_is_rewrite"])
        self.assertTrue(t["rewrite_committed"])
        self.assertAlmostEqual(t["final_ratio"], 1.025)  # the last table config
        self.assertIsNone(t["reach"]["1%"])

    def test_unknown_kept_config(self):
        events = [evaluated("VEC=3 WARPS=8", 10.0), charge(1.0)]
        t = self.run_journal(events)
        self.assertEqual(t["not_in_table"], ["VEC=3 WARPS=8"])
        self.assertIsNone(t["final_ratio"])
        self.assertIsNone(t["reach"]["3%"])
        self.assertIsNone(t["budget_gpu_s"])
        self.assertIsNone(t["finished"])

    def test_baseline_already_optimal(self):
        t = self.run_journal([charge(2.0), evaluated("VEC=2 WARPS=8", 20.0), charge(1.0)])
        self.assertEqual(t["reach"]["1%"]["evals"], 1)
        self.assertAlmostEqual(t["reach"]["1%"]["gpu_s"], 3.0)  # to the journal's end


class ReportTests(Synthetic):
    def test_markdown_and_json_without_kt(self):
        out = os.path.join(self.results, "report.json")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            self.assertEqual(analyze.main([self.results, "--no-kt", "--json", out]), 0)
        text = buf.getvalue()
        self.assertIn("Kernel Tuner skipped: --no-kt", text)
        self.assertIn("| toy-0.50 | 0.50 (5.8 s) | 6.8 (58.7%) | 6 | +0.0% | 3 / 4.0 s / 34.8% | 5 / 6.5 s / 56.5% |", text)
        self.assertIn("optimum `WARPS=8 VEC=2` at 20.00 µs; baseline `WARPS=1 VEC=1` (+400.0%)", text)
        self.assertIn("within 1%: 2, within 3%: 3", text)
        with open(out, encoding="utf-8") as f:
            report = json.load(f)
        k = report["kernels"][0]
        self.assertEqual(k["verdict"]["nightshift_evals_to_3pct_median"], 3)
        self.assertFalse(k["verdict"]["reached_3pct_within_10pct_of_exhaustive"])
        self.assertIsNone(k["kt"])

    def test_median_of(self):
        self.assertEqual(analyze.median_of([1, 2, 3], 3), 2)
        self.assertEqual(analyze.median_of([1, 3], 4), 3)  # half reached: the lower middle
        self.assertIsNone(analyze.median_of([1], 3))  # more than half did not reach
        self.assertEqual(analyze.median_of([1, 2, 3, 4], 4), 2.5)


KT_MISSING = analyze.kt_available()


@unittest.skipIf(KT_MISSING, f"Kernel Tuner tests skipped: {KT_MISSING}")
class KernelTunerTests(Synthetic):
    def setUp(self):
        super().setUp()
        self.work = tempfile.TemporaryDirectory()
        self.sim = analyze.KernelTunerSim(self.space, self.work.name)

    def tearDown(self):
        self.work.cleanup()
        super().tearDown()

    def test_cache_format(self):
        c = analyze.kt_cache(self.space)
        self.assertEqual(c["tune_params_keys"], ["WARPS", "VEC"])
        self.assertEqual(c["tune_params"], {"WARPS": [1, 2, 4, 8, 16], "VEC": [1, 2, 4]})
        self.assertEqual(c["cache"]["8,2"]["time"], 20.0)
        self.assertEqual(c["cache"]["8,4"]["time"], "CompilationFailedConfig")
        self.assertEqual(c["cache"]["8,4"]["compile_time"], 250.0)
        self.assertEqual(len(c["cache"]), 12)

    def test_each_strategy_stays_in_the_table(self):
        for strategy in analyze.STRATEGIES:
            with self.subTest(strategy=strategy):
                order = self.sim.run(strategy, 0, 6)
                self.assertTrue(order)
                self.assertTrue(all(k in self.space.rows for k in order))
                self.assertEqual(len(order), len(set(order)))
                self.assertLessEqual(len(order), 6)

    def test_a_seed_reproduces_a_run(self):
        for strategy in analyze.STRATEGIES:
            with self.subTest(strategy=strategy):
                self.assertEqual(self.sim._tune(strategy, 5, 8), self.sim._tune(strategy, 5, 8))

    def test_random_sample_whole_table_reaches_the_optimum(self):
        order = self.sim.run("random_sample", 1, len(self.space.rows))
        self.assertEqual(sorted(order), sorted(self.space.rows))
        points = analyze.kt_points(self.space, order)
        self.assertEqual(points[-1][2], 1.0)
        self.assertAlmostEqual(points[-1][1], EXHAUSTIVE_S)

    def test_a_failing_strategy_is_recorded(self):
        strategies = analyze.STRATEGIES
        analyze.STRATEGIES = ["random_sample", "no_such_strategy"]
        try:
            with tempfile.TemporaryDirectory() as work:
                k = analyze.analyze_kernel(self.results, "toy", 2, True, None, work)
        finally:
            analyze.STRATEGIES = strategies
        self.assertIn("reach", k["kt"][0])
        self.assertIn("Unkown strategy no_such_strategy", k["kt"][1]["error"])  # KT's spelling
        self.assertIn("| no_such_strategy | error: ValueError", analyze.markdown(k))

    def test_summary(self):
        s = analyze.kt_summary(self.space, self.sim, "random_sample", 3, [6, 6, 40])
        self.assertEqual(s["reach"]["1%"]["reached"], 3)
        self.assertEqual(s["at_evals"][40]["median_ratio"], 1.0)
        self.assertIn(6, s["at_evals"])
        self.assertEqual(self.sim.run("random_sample", 0, 12), self.sim.runs[("random_sample", 0, 12)])


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""Tests of the example proposer (serve.py): standard library only, no GPU.

Feeds it ProposalRequests built from the bundled spec and kernel, as nightshift would
send them, with histories of 0, 1, 2 and 3 earlier proposals, and checks each answer:
the JSON keys nightshift accepts (its Answer refuses unknown ones), token counts of 0,
the planned file served in order, an explanation that says the proposal was written by
hand, and a source that keeps the entry, its parameters and allowed headers (a light
version of agent/src/propose/check.rs). Past the plan's end, and for a kernel or a
request it cannot serve, it must exit non-zero with the reason on stderr and nothing
on stdout.

    python3 examples/proposer/test_serve.py        (or: python3 -m unittest discover -s examples/proposer -p 'test_*.py')
"""

import json
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SERVE = os.path.join(HERE, "serve.py")
PLAN = os.path.join(HERE, "proposals", "plan.json")

# agent/src/propose/check.rs: ALLOWED_SYSTEM_HEADERS and the cuda/, cooperative_groups/ prefixes.
ALLOWED_HEADERS = {
    "cuda.h", "cuda_runtime.h", "cuda_fp16.h", "cuda_fp16.hpp", "cuda_bf16.h", "cuda_bf16.hpp",
    "cuda_fp8.h", "cuda_fp8.hpp", "cuda_fp4.h", "cuda_fp6.h", "mma.h", "cuda_pipeline.h",
    "cuda_pipeline_primitives.h", "cuda_awbarrier.h", "cuda_awbarrier_primitives.h",
    "cooperative_groups.h", "vector_types.h", "vector_functions.h", "device_functions.h",
    "math_constants.h", "sm_20_intrinsics.h", "sm_30_intrinsics.h", "sm_32_intrinsics.h",
    "sm_35_intrinsics.h", "sm_60_atomic_functions.h", "sm_61_intrinsics.h", "crt/math_functions.h",
    "stdint.h", "cstdint", "stddef.h", "cstddef", "limits.h", "climits", "float.h", "cfloat",
    "type_traits", "utility", "limits",
}


def load_toml(path):
    try:
        import tomllib
    except ImportError:  # pragma: no cover
        return None
    with open(path, "rb") as f:
        return tomllib.load(f)


def request(kernel, history_len, pattern="proposal-tensor-cores"):
    """A ProposalRequest as nightshift serializes it (agent/src/propose/request.rs)."""
    kdir = os.path.join(ROOT, "kernels", kernel)
    spec_path = os.path.join(kdir, "kernel.toml")
    with open(spec_path) as f:
        spec_text = f.read()
    spec = load_toml(spec_path) or {}
    with open(os.path.join(kdir, spec.get("source", kernel + ".cu"))) as f:
        source = f.read()
    tune = {n: t for n, t in spec.get("tune", {}).items() if isinstance(t, dict)}
    args = []
    for a in spec.get("arg", []):
        ptr = a["type"].endswith("*")
        view = {"name": a["name"], "dtype": a["type"].rstrip("*"), "pointer": ptr}
        if ptr:
            view.update(io=a.get("io", "in"), len=a.get("len", ""))
        else:
            view["value"] = a.get("value", "")
        args.append(view)
    outcomes = ["compile_failed", "incorrect", "slower", "kept"]
    history = [{"summary": "earlier proposal %d" % i, "outcome": outcomes[i % len(outcomes)]}
               for i in range(history_len)]
    if history_len:
        history[0]["compile_log"] = 'attention.cu(12): error: identifier "KSTRIDE" is undefined'
    return {
        "kernel": spec.get("name", kernel),
        "entry": spec.get("entry", kernel),
        "source": source,
        "config": {n: t["baseline"] for n, t in tune.items()},
        "spec": {
            "name": spec.get("name", kernel),
            "description": spec.get("description", ""),
            "entry": spec.get("entry", kernel),
            "args": args,
            "tunables": [{"name": n, "values": t["values"], "role": t["role"], "baseline": t["baseline"]}
                         for n, t in tune.items()],
            "launch": {k: [str(x) for x in v] if isinstance(v, list) else str(v)
                       for k, v in spec.get("launch", {}).items()},
            "problem": spec.get("problem", {}),
            "restrictions": tune and spec["tune"].get("restrictions", []) or [],
            "compile_options": spec.get("compile_options", []),
            "cost": dict(spec.get("cost", {})),
            "spec_file": spec_text,
        },
        "signals": {"compute_bound": 1.0, "compute_fraction": 0.2, "ctas": 8192.0, "sms": 132.0},
        "pattern": {"name": pattern, "instruction": "use the tensor cores", "rationale": "compute-bound"},
        "history": history,
    }


def serve(req, *extra, raw=None):
    data = raw if raw is not None else json.dumps(req).encode()
    p = subprocess.run([sys.executable, SERVE] + list(extra), input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def entry_params(source, entry):
    """(extern_c, global, [(name, is_pointer)]) of the entry's definition, read loosely."""
    m = re.search(r'extern\s+"C"\s+__global__\s+(?:void\s+)?(?:__launch_bounds__\s*\([^)]*\)\s*)?(?:void\s+)?'
                  + re.escape(entry) + r'\s*\(', source)
    if not m:
        return False, False, []
    depth, i = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(source[i], 0)
        i += 1
    params = []
    for p in source[m.end():i - 1].split(","):
        p = p.strip()
        name = re.findall(r"[A-Za-z_]\w*", p)[-1]
        params.append((name, "*" in p))
    return True, True, params


def includes(source):
    return re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', source, re.M)


class ServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(PLAN) as f:
            cls.plan = json.load(f)

    def test_plan_files_exist_and_expectations_are_known(self):
        for kernel, items in self.plan["kernels"].items():
            self.assertTrue(os.path.isfile(os.path.join(ROOT, "kernels", kernel, "kernel.toml")), kernel)
            self.assertGreaterEqual(len(items), 1)
            for it in items:
                self.assertTrue(os.path.isfile(os.path.join(HERE, "proposals", kernel, it["file"])), it)
                self.assertIn(it["expect"], {"compile_failed", "incorrect", "slower", "faster"})
                self.assertTrue(re.match(r"^\d\d-[a-z0-9-]+\.cu$", it["file"]), it["file"])
                self.assertTrue(it.get("summary"))

    def test_attention_serves_the_plan_in_order_then_refuses(self):
        items = self.plan["kernels"]["attention"]
        for n in range(len(items) + 1):
            with self.subTest(history=n):
                rc, out, err = serve(request("attention", n))
                if n == len(items):
                    self.assertNotEqual(rc, 0)
                    self.assertEqual(out, "")
                    self.assertIn("no hand-written proposal left for kernel `attention`", err)
                    continue
                self.assertEqual(rc, 0, err)
                answer = json.loads(out)
                # nightshift's Answer (agent/src/propose/command.rs) refuses unknown keys.
                self.assertEqual(set(answer), {"source", "explanation", "input_tokens", "output_tokens"})
                self.assertEqual((answer["input_tokens"], answer["output_tokens"]), (0, 0))
                with open(os.path.join(HERE, "proposals", "attention", items[n]["file"])) as f:
                    self.assertEqual(answer["source"], f.read())
                first = answer["explanation"].splitlines()[0]
                self.assertTrue(first.startswith("Hand-written example proposal %d/%d" % (n + 1, len(items))), first)
                self.assertIn("written by hand", answer["explanation"])
                self.assertIn("example proposer", answer["explanation"])

    def test_every_proposal_keeps_the_entry_parameters_and_allowed_headers(self):
        for kernel, items in self.plan["kernels"].items():
            spec = load_toml(os.path.join(ROOT, "kernels", kernel, "kernel.toml"))
            if spec is None:
                self.skipTest("tomllib needs Python 3.11")
            want = [(a["name"], a["type"].endswith("*")) for a in spec["arg"]]
            for it in items:
                with self.subTest(kernel=kernel, file=it["file"]):
                    with open(os.path.join(HERE, "proposals", kernel, it["file"])) as f:
                        src = f.read()
                    ext, glob_, params = entry_params(src, spec["entry"])
                    self.assertTrue(ext and glob_, "no extern \"C\" __global__ %s" % spec["entry"])
                    self.assertEqual(params, want)
                    for h in includes(src):
                        local = os.path.isfile(os.path.join(ROOT, "kernels", kernel, h)) or any(
                            os.path.isfile(os.path.join(ROOT, "kernels", kernel, d, h))
                            for d in spec.get("include_dirs", []))
                        self.assertTrue(h in ALLOWED_HEADERS or h.startswith(("cuda/", "cooperative_groups/"))
                                        or local, h)
                    self.assertIn("HAND-WRITTEN PROPOSAL", src.splitlines()[0])

    def test_skip_starts_further_on(self):
        rc, out, err = serve(request("attention", 0), "--skip", "2")
        self.assertEqual(rc, 0, err)
        self.assertIn("proposal 3/3", json.loads(out)["explanation"].splitlines()[0])
        rc, out, err = serve(request("attention", 1), "--skip", "2")
        self.assertNotEqual(rc, 0)
        self.assertIn("skip 2", err)

    def test_unknown_kernel_and_bad_requests_are_refused(self):
        req = request("attention", 0)
        req["kernel"] = "no-such-kernel"
        rc, out, err = serve(req)
        self.assertEqual((rc, out), (2, ""))
        self.assertIn("no hand-written proposals for kernel `no-such-kernel`", err)
        rc, out, err = serve(None, raw=b"{not json")
        self.assertEqual((rc, out), (2, ""))
        self.assertIn("not JSON", err)
        rc, out, err = serve(None, raw=b'{"kernel": "attention"}')
        self.assertEqual((rc, out), (2, ""))
        self.assertIn("`history`", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""Compile the example proposer's hand-written proposals with NVRTC, without a GPU.

Each proposal in proposals/plan.json is compiled the way nightshift compiles a
candidate: NVRTC through ctypes, for a virtual architecture (compute_90 by default:
NVRTC needs no device for PTX), with `--std=c++17 -lineinfo`, the spec's
`compile_options`, `-I` for the kernel's directory, its `include_dirs` and the CUDA
headers, and `-DNAME=value` for every tunable at its baseline (or at every
configuration of the space with --all-configs). A proposal the plan expects to fail
(`"expect": "compile_failed"`) must fail; every other one must compile. The log
NVRTC printed is shown for each.

Standard library only. NVRTC is looked for in $NVRTC_LIBRARY, then beside the
`nvidia` Python packages (`pip install nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cuda-crt` for CUDA 13, or `nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12`
for CUDA 12), then in the usual CUDA install places and the loader's path. Without
it the script prints `skipped: no NVRTC` and exits 0.

    python3 examples/proposer/check_compile.py                 # every planned proposal
    python3 examples/proposer/check_compile.py attention       # one kernel's
    python3 examples/proposer/check_compile.py --all-configs   # every tunable combination
    python3 examples/proposer/check_compile.py --source kernels/attention/attention.cu --kernel attention
"""

import argparse
import ctypes
import ctypes.util
import glob
import itertools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PLAN = os.path.join(HERE, "proposals", "plan.json")


def load_toml(path):
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        try:
            import tomli as tomllib
        except ImportError:
            return None
    with open(path, "rb") as f:
        return tomllib.load(f)


def python_site_dirs():
    dirs = []
    for p in sys.path:
        if p and os.path.isdir(os.path.join(p, "nvidia")):
            dirs.append(os.path.join(p, "nvidia"))
    return dirs


def find_nvrtc():
    """(ctypes library, its path) or (None, None)."""
    candidates = []
    env = os.environ.get("NVRTC_LIBRARY")
    if env:
        candidates.append(env)
    for nv in python_site_dirs():
        candidates += sorted(glob.glob(os.path.join(nv, "cu1*", "lib", "libnvrtc.so*")), reverse=True)
        candidates += sorted(glob.glob(os.path.join(nv, "cuda_nvrtc", "lib", "libnvrtc.so*")), reverse=True)
    for base in ["/usr/local/cuda", os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", "")]:
        if base:
            candidates += sorted(glob.glob(os.path.join(base, "lib64", "libnvrtc.so*")), reverse=True)
    candidates += sorted(glob.glob("/usr/local/cuda-*/lib64/libnvrtc.so*"), reverse=True)
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    for c in candidates:
        # The builtins library sits beside it; skip it and static archives.
        if "builtins" in os.path.basename(c) or c.endswith(".a"):
            continue
        try:
            return ctypes.CDLL(c), c
        except OSError:
            continue
    return None, None


def cuda_include_dirs():
    """Directories holding cuda_fp16.h / mma.h etc., best first."""
    dirs = []
    for nv in python_site_dirs():
        dirs += sorted(glob.glob(os.path.join(nv, "cu1*", "include")), reverse=True)
        dirs += [os.path.join(nv, d, "include") for d in ("cuda_runtime", "cuda_nvrtc", "cuda_nvcc")]
    for base in [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]:
        if base:
            dirs.append(os.path.join(base, "include"))
    return [d for d in dirs if os.path.isfile(os.path.join(d, "cuda_runtime.h"))
            or os.path.isfile(os.path.join(d, "cuda_fp16.h"))]


class Nvrtc:
    def __init__(self, lib):
        self.lib = lib
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcGetProgramLogSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcGetPTXSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetPTX.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = (major.value, minor.value)

    def compile(self, source, name, options):
        """(ok, log, ptx)"""
        prog = ctypes.c_void_p()
        rc = self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
        if rc != 0:
            return False, "nvrtcCreateProgram: %s" % self.lib.nvrtcGetErrorString(rc).decode(), ""
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            rc = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace").strip()
            ptx = ""
            if rc == 0:
                self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
                pbuf = ctypes.create_string_buffer(size.value)
                self.lib.nvrtcGetPTX(prog, pbuf)
                ptx = pbuf.value.decode(errors="replace")
            return rc == 0, log, ptx
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def spec_of(kernel):
    path = os.path.join(ROOT, "kernels", kernel, "kernel.toml")
    spec = load_toml(path)
    if spec is None:
        raise SystemExit("skipped: Python 3.11+ (tomllib) or the tomli package is needed to read %s" % path)
    return spec, os.path.dirname(path)


def configs(spec, all_configs):
    tune = spec.get("tune", {})
    names = [n for n, t in tune.items() if isinstance(t, dict)]
    if not all_configs:
        return [{n: tune[n]["baseline"] for n in names}]
    return [dict(zip(names, vals)) for vals in itertools.product(*[tune[n]["values"] for n in names])]


def options(spec, kdir, config, arch, cuda_inc):
    o = ["--gpu-architecture=%s" % arch, "--std=c++17", "-lineinfo"]
    o += list(spec.get("compile_options", []))
    o.append("-I%s" % kdir)
    for d in spec.get("include_dirs", []):
        o.append("-I%s" % os.path.normpath(os.path.join(kdir, d)))
    for d in cuda_inc[:1]:
        o.append("-I%s" % d)
    o += ["-D%s=%d" % (n, v) for n, v in config.items()]
    return o


def shared_bytes(ptx):
    """Static shared memory the PTX declares (.shared arrays), in bytes."""
    total = 0
    for line in ptx.splitlines():
        line = line.strip()
        if line.startswith(".shared") and "[" in line and "extern" not in line:
            try:
                total += int(line.split("[")[-1].split("]")[0])
            except ValueError:
                pass
    return total


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernels", nargs="*", help="kernels of the plan to compile (default: all)")
    ap.add_argument("--arch", default="compute_90")
    ap.add_argument("--all-configs", action="store_true",
                    help="compile at every combination of the tunables' values, not only the baseline")
    ap.add_argument("--source", help="compile this file instead of the plan's proposals (needs --kernel)")
    ap.add_argument("--kernel", help="the kernel whose spec --source is compiled against")
    ap.add_argument("--expect", choices=["compiles", "compile_failed"], default="compiles")
    ap.add_argument("--quiet", action="store_true", help="print logs only for unexpected results")
    ap.add_argument("--log-lines", type=int, default=40, help="lines of each log shown (0: all)")
    args = ap.parse_args(argv)

    lib, path = find_nvrtc()
    if lib is None:
        print("skipped: no NVRTC (set NVRTC_LIBRARY, or pip install nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cuda-crt)")
        return 0
    nvrtc = Nvrtc(lib)
    cuda_inc = cuda_include_dirs()
    print("NVRTC %d.%d from %s; CUDA headers: %s" % (nvrtc.version[0], nvrtc.version[1], path,
                                                     cuda_inc[0] if cuda_inc else "NVRTC's built-in only"))

    jobs = []  # (kernel, file, expect)
    if args.source:
        if not args.kernel:
            ap.error("--source needs --kernel")
        jobs.append((args.kernel, os.path.abspath(args.source), args.expect))
    else:
        with open(PLAN) as f:
            plan = json.load(f)
        for kernel, items in plan["kernels"].items():
            if args.kernels and kernel not in args.kernels:
                continue
            for it in items:
                expect = "compile_failed" if it["expect"] == "compile_failed" else "compiles"
                jobs.append((kernel, os.path.join(HERE, "proposals", kernel, it["file"]), expect))

    bad = good_count = 0
    for kernel, file, expect in jobs:
        spec, kdir = spec_of(kernel)
        with open(file) as f:
            source = f.read()
        rel = os.path.relpath(file, ROOT)
        for config in configs(spec, args.all_configs):
            opts = options(spec, kdir, config, args.arch, cuda_inc)
            ok, log, ptx = nvrtc.compile(source, os.path.basename(file), opts)
            got = "compiles" if ok else "compile_failed"
            good = got == expect
            bad += 0 if good else 1
            good_count += 1 if good else 0
            cfg = " ".join("%s=%d" % kv for kv in config.items())
            extra = ""
            if ok:
                extra = ", %d B static shared" % shared_bytes(ptx)
            print("%s %s [%s]: %s (expected: %s)%s" % ("ok  " if good else "FAIL", rel, cfg, got, expect, extra))
            if log and (not args.quiet or not good):
                lines = log.splitlines()
                if args.log_lines and len(lines) > args.log_lines:
                    lines = lines[:args.log_lines] + ["... (%d more lines)" % (len(lines) - args.log_lines)]
                print("    " + "\n    ".join(lines))
    print("%d passed, %d failed" % (good_count, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""An example `command` proposer for nightshift that serves HAND-WRITTEN proposals.

No model is asked and nothing is generated: every kernel source this program answers
with was written by hand, in advance, and lies in proposals/<kernel>/NN-<name>.cu.
proposals/plan.json says, per kernel, the order they are served in. nightshift starts
this program once per proposal (nightshift.toml: [proposer] kind = "command", argv =
["python3", "examples/proposer/serve.py"]), writes one ProposalRequest as JSON on its
stdin and reads one answer as JSON from its stdout:

    {"source": "...", "explanation": "...", "input_tokens": 0, "output_tokens": 0}

Which proposal: a request whose `history` (the earlier proposals for this kernel,
whatever became of them) holds n entries gets the kernel's n-th proposal of the plan,
counting from 0; --skip N (or $NIGHTSHIFT_EXAMPLE_PROPOSER_SKIP) starts N further on.
Past the end of the list, or for a kernel the plan does not name, it writes why on
stderr and exits 2: nightshift records that as a failed proposal.

Standard library only (Python 3.6+).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLAN = os.path.join(HERE, "proposals", "plan.json")


class Refusal(Exception):
    """Why no proposal is served (written on stderr, exit status 2)."""


def header_comment(source):
    """The leading // comment block of a proposal, as plain lines."""
    lines = []
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("//"):
            lines.append(s[2:].strip())
        elif s == "" and not lines:
            continue
        else:
            break
    return "\n".join(lines).strip()


def choose(request, plan, proposals_dir, skip=0):
    """The answer for `request` as a dict, or Refusal."""
    if not isinstance(request, dict):
        raise Refusal("the request is not a JSON object")
    kernel = request.get("kernel")
    history = request.get("history")
    if not isinstance(kernel, str) or not isinstance(history, list):
        raise Refusal("the request has no `kernel` (a string) and `history` (a list)")
    items = plan.get("kernels", {}).get(kernel)
    if not items:
        known = ", ".join(sorted(plan.get("kernels", {}))) or "none"
        raise Refusal("no hand-written proposals for kernel `%s` (the plan has: %s)" % (kernel, known))
    n = len(history) + skip
    if n >= len(items):
        raise Refusal(
            "no hand-written proposal left for kernel `%s`: the plan has %d and this is request %d "
            "(history holds %d earlier proposal(s)%s)"
            % (kernel, len(items), n + 1, len(history), ", skip %d" % skip if skip else ""))
    item = items[n]
    path = os.path.join(proposals_dir, kernel, item["file"])
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        raise Refusal("cannot read %s: %s" % (path, e))
    pattern = (request.get("pattern") or {}).get("name", "?")
    rel = os.path.relpath(path, os.path.join(HERE, "..", ".."))
    explanation = (
        "Hand-written example proposal %d/%d: %s\n\n"
        "Hand-written proposal %d of %d for `%s` (%s), served by nightshift's example "
        "proposer (examples/proposer/serve.py): it was written by hand in advance, not "
        "generated, and is served in a fixed order whatever the pattern asks (asked by `%s`; "
        "written for `%s`; written to be: %s).\n\n%s"
        % (n + 1, len(items), item.get("summary", item["file"]), n + 1, len(items), kernel, rel, pattern,
           item.get("pattern", "?"), item.get("expect", "?"), header_comment(source)))
    return {"source": source, "explanation": explanation, "input_tokens": 0, "output_tokens": 0}


def main(argv, stdin, stdout, stderr):
    ap = argparse.ArgumentParser(description="Serve hand-written proposals to nightshift.")
    ap.add_argument("--plan", default=DEFAULT_PLAN, help="the plan (default: proposals/plan.json)")
    ap.add_argument("--skip", type=int, default=int(os.environ.get("NIGHTSHIFT_EXAMPLE_PROPOSER_SKIP", "0")),
                    help="serve the (history length + SKIP)-th proposal")
    args = ap.parse_args(argv)
    try:
        try:
            with open(args.plan, encoding="utf-8") as f:
                plan = json.load(f)
        except (OSError, ValueError) as e:
            raise Refusal("cannot read the plan %s: %s" % (args.plan, e))
        try:
            raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
            request = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except ValueError as e:
            raise Refusal("the request on stdin is not JSON: %s" % e)
        answer = choose(request, plan, os.path.dirname(os.path.abspath(args.plan)), args.skip)
    except Refusal as e:
        stderr.write("example proposer: %s\n" % e)
        return 2
    json.dump(answer, stdout)
    stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdin, sys.stdout, sys.stderr))

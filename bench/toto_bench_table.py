#!/usr/bin/env python3
"""The table of run_toto_bench.sh: reads DIR/<case>.<impl>.json (one JSON object
from bench_toto --json or bench_toto_torch.py --json; impl is porta-<backend>,
eager or compile; a missing file is a run that was skipped or failed) and
prints one row per case and porta backend: porta's time per forecast and per
decode step, toto-ts eager and torch.compile on the same input, porta's
speedup over each, and peak memory. --markdown prints it as a Markdown table."""

import argparse
import glob
import json
import os

CASES = [("mean-v1", "mean, 1 variate"), ("mean-v7", "mean, 7 variates"),
         ("s256-v1", "256 samples, 1 variate"), ("s256-v7", "256 samples, 7 variates")]


def load(folder, case, impl):
    path = os.path.join(folder, f"{case}.{impl}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def ms(r, key="forecast_ms"):
    if r is None or r.get(key) is None:
        return "-"
    v = r[key]
    text = f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    return text + ("*" if r.get("extrapolated") and key in ("forecast_ms", "cpu_ms") else "")


def ratio(a, b, key="forecast_ms"):
    if a is None or b is None or not a.get(key) or not b.get(key):
        return "-"
    return f"{b[key] / a[key]:.1f}x"


def mem(r):
    """Peak memory: device memory in use on GPUs, else peak host RSS."""
    if r is None:
        return "-"
    if r.get("device_mb") is not None:
        return f"{r['device_mb'] / 1024:.2f} GiB dev"
    return f"{r['peak_rss_mb'] / 1024:.2f} GiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    backends = sorted({os.path.basename(p).split(".")[1][len("porta-"):]
                       for p in glob.glob(os.path.join(args.folder, "*.porta-*.json"))})
    cpu_side = any((load(args.folder, c, "eager") or {}).get("device") == "cpu" for c, _ in CASES)
    head = ["case", "porta", "ms/forecast", "prefill ms", "ms/decode step", "toto-ts eager ms",
            "torch.compile ms", "vs eager", "vs compile"]
    if cpu_side:
        head += ["porta CPU ms", "eager CPU ms", "vs eager (CPU time)"]
    head += ["porta peak mem", "eager peak mem", "compile peak mem", "compile graphs"]
    rows = []
    for case, label in CASES:
        eager, comp = load(args.folder, case, "eager"), load(args.folder, case, "compile")
        graphs = "-" if comp is None else f"{comp['unique_graphs']} ({comp['recompile_limit_hits']} limit hits)"
        for be in backends:
            p = load(args.folder, case, f"porta-{be}")
            row = [label, be, ms(p), ms(p, "prefill_ms"), ms(p, "decode_step_ms"), ms(eager), ms(comp),
                   ratio(p, eager), ratio(p, comp)]
            if cpu_side:
                row += [ms(p, "cpu_ms"), ms(eager, "cpu_ms"), ratio(p, eager, "cpu_ms")]
            row += [mem(p), mem(eager), mem(comp), graphs]
            rows.append(row)
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
        for r in rows:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    print("* toto-ts time scaled from the sampling batches it ran (run_toto_bench.sh says which)."
          if any("*" in c for r in rows for c in r) else "", end="")


if __name__ == "__main__":
    main()

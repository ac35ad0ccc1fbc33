#!/usr/bin/env python3
"""Live agreement check for large configurations (Toto-Open-Base-1.0's shapes):
runs toto-ts's TotoForecaster on the same kind of fixed inputs as
make_reference.py and writes a reference file with the same tensor names.
With --check FILE (a file with some of those names, e.g. porta's outputs on
the same inputs) it also prints the largest differences per tensor and exits
non-zero when one exceeds --tol."""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toto_common as tc  # noqa: E402


def compare(ref, path, tol):
    from safetensors.torch import load_file

    other = load_file(path)
    worst = 0.0
    print(f"{'tensor':24s} {'max |diff|':>12s} {'max |ref|':>12s} {'rel':>10s}")
    for name in sorted(set(ref) & set(other)):
        a, b = ref[name].double(), other[name].double()
        if a.shape != b.shape:
            print(f"{name:24s} shape {list(b.shape)} != reference {list(a.shape)}")
            worst = float("inf")
            continue
        diff = float((a - b).abs().max()) if a.numel() else 0.0
        mag = float(a.abs().max()) if a.numel() else 0.0
        rel = diff / max(mag, 1e-12)
        worst = max(worst, rel)
        print(f"{name:24s} {diff:12.4g} {mag:12.4g} {rel:10.3g}")
    missing = sorted(set(ref) - set(other))
    if missing:
        print(f"not in {path}: {', '.join(missing)}")
    print(f"worst relative difference {worst:.3g} (tolerance {tol:g})")
    return worst <= tol


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="checkpoint directory (config.json + model.safetensors), "
                    "e.g. one written by make_checkpoint.py --config base")
    ap.add_argument("--out", required=True, help="reference file to write")
    ap.add_argument("--seed", type=int, default=0, help="seed of the input series")
    ap.add_argument("--context-patches", type=int, default=5)
    ap.add_argument("--horizon-patches", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--variates", type=int, default=3)
    ap.add_argument("--check", help="safetensors file to compare against the reference")
    ap.add_argument("--tol", type=float, default=1e-3, help="largest relative difference accepted by --check")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    t0 = time.time()
    tensors, meta = tc.write_reference(args.model, args.out, args.context_patches, args.horizon_patches, args.seed,
                                       batch=args.batch, variates=args.variates)
    print(f"{args.out}: {len(tensors)} tensors, {meta}, {time.time() - t0:.1f} s")
    if args.check and not compare(tensors, args.check, args.tol):
        sys.exit(1)


if __name__ == "__main__":
    main()

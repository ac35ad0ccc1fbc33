#!/usr/bin/env python3
"""Runs toto-ts's TotoForecaster (mean path, KV cache on) on fixed
deterministic inputs and writes its per-step output distributions and the mean
forecast, float32, to a safetensors file (names documented in
tests/data/toto-tiny/README.md)."""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toto_common as tc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="checkpoint directory (config.json + model.safetensors)")
    ap.add_argument("--out", required=True, help="output file, e.g. DIR/reference.safetensors")
    ap.add_argument("--seed", type=int, default=0, help="seed of the input series")
    ap.add_argument("--context-patches", type=int, default=5)
    ap.add_argument("--horizon-patches", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    tensors, meta = tc.write_reference(args.model, args.out, args.context_patches, args.horizon_patches, args.seed)
    for k, v in tensors.items():
        print(f"{k:24s} {str(list(v.shape)):16s} absmax {float(v.abs().max()):.4g}")
    print(f"{args.out}: {meta}")


if __name__ == "__main__":
    main()

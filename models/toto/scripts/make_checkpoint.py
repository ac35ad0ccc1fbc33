#!/usr/bin/env python3
"""Writes a Toto checkpoint with seeded random weights: DIR/config.json (the
constructor arguments, as the Hub's config.json for Toto-Open-Base-1.0 holds
them) and DIR/model.safetensors (the Toto module's state_dict, keys starting
"model."), then reads it back with Toto.load_from_checkpoint and checks that
every tensor is identical."""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toto_common as tc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", choices=sorted(tc.CONFIGS), required=True,
                    help="tiny: committed test fixture; base: Toto-Open-Base-1.0's shapes (~600 MB)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--mlp", choices=["unfused", "fused"], default="unfused",
                    help="MLP tensor naming: unfused mlp.0/mlp.2 (native PyTorch) or fused "
                         "mlp.0.w12/mlp.0.w3 (xFormers SwiGLU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    config = tc.CONFIGS[args.config]
    model = tc.build(config)
    tc.randomize(model, args.seed)
    tc.save_checkpoint(model, config, args.out, args.mlp)
    tc.check_roundtrip(model, args.out)

    n = sum(p.numel() for p in model.parameters())
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    print(f"{args.out}: {args.config} config, {args.mlp} MLP naming, seed {args.seed}: "
          f"{n:,} parameters, {size:,} bytes; Toto.load_from_checkpoint reads it back identically")


if __name__ == "__main__":
    main()

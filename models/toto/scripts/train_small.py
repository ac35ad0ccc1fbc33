#!/usr/bin/env python3
"""Trains a small Toto on synthetic seasonal series (sums of sines with random
periods and phases, a trend, a level and noise, several variates) with
toto-ts's own training loss (CombinedLoss: Student-T-mixture NLL plus a robust
term, on targets scaled by the causal scaler, one patch ahead), then writes
config.json + model.safetensors. Seeded and reproducible on one machine; the
result is a demonstration model, not Toto-Open-Base-1.0."""

import argparse
import csv
import datetime
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toto_common as tc  # noqa: E402


def make_batch(rng, batch, variates, length):
    return torch.from_numpy(np.stack([tc.seasonal_series(rng, variates, length) for _ in range(batch)]))


def loss_on(backbone, loss_fn, series, patch):
    """toto-ts's training objective: the distribution emitted at each patch
    predicts the next patch, scaled by the input's causal loc and scale."""
    inputs, targets = series[..., :-patch], series[..., patch:]
    mask = torch.ones_like(inputs, dtype=torch.bool)
    ids = torch.zeros_like(inputs, dtype=torch.int)
    out = backbone(inputs, mask, ids)
    eps = torch.finfo(series.dtype).eps
    scaled = (targets - out.loc) / (out.scale + eps)
    return loss_fn(out.distribution, scaled).mean()


def write_csv(path, rng, rows, variates):
    values = tc.seasonal_series(rng, variates, rows)
    start = datetime.datetime(2024, 1, 1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp"] + [f"series_{v}" for v in range(variates)])
        for i in range(rows):
            ts = (start + datetime.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S")
            w.writerow([ts] + [f"{values[v, i]:.5f}" for v in range(variates)])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--steps", type=int, default=800, help="optimizer steps")
    ap.add_argument("--batch", type=int, default=16, help="series per step")
    ap.add_argument("--context-patches", type=int, default=16, help="input patches per training series")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (results depend on it)")
    ap.add_argument("--csv", help="also write an example CSV (timestamp + 2 variates, 512 rows) here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = tc.CONFIGS["small"]
    model = tc.build(config)
    tc.randomize(model, args.seed)
    backbone = model.model
    backbone.train()
    patch = config["patch_size"]
    length = (args.context_patches + 1) * patch

    from toto.model.losses import CombinedLoss

    loss_fn = CombinedLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    held_out = make_batch(np.random.default_rng(args.seed + 1), 32, 3, length)
    t0 = time.time()
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {args.steps} steps of "
          f"{args.batch} series x 1-3 variates x {length} points")
    print(f"{'step':>6} {'train loss':>11} {'held-out loss':>14} {'seconds':>8}")
    running = 0.0
    for step in range(args.steps):
        variates = int(rng.integers(1, 4))
        series = make_batch(rng, args.batch, variates, length)
        loss = loss_on(backbone, loss_fn, series, patch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running += float(loss)
        if (step + 1) % 100 == 0 or step == 0:
            backbone.eval()
            with torch.no_grad():
                held = float(loss_on(backbone, loss_fn, held_out, patch))
            backbone.train()
            n = 1 if step == 0 else 100
            print(f"{step + 1:6d} {running / n:11.4f} {held:14.4f} {time.time() - t0:8.1f}", flush=True)
            running = 0.0

    backbone.eval()
    tc.save_checkpoint(model, config, args.out)
    tc.check_roundtrip(model, args.out)
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    print(f"{args.out}: {size:,} bytes; Toto.load_from_checkpoint reads it back identically")
    if args.csv:
        write_csv(args.csv, np.random.default_rng(args.seed + 2), 512, 2)
        print(f"{args.csv}: 512 rows, 2 variates")


if __name__ == "__main__":
    main()

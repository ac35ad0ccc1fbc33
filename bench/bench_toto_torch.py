#!/usr/bin/env python3
"""One Toto forecast with the official toto-ts code (TotoForecaster), timed as
bench_toto times porta's: same checkpoint (Toto.load_from_checkpoint), same
input (bench_series below, the generator of bench_toto.c), same shape, one
warm-up then --repeat timed forecasts. --mode eager runs the model as loaded;
--mode compile calls backbone.compile() (torch.compile on the backbone, in
place, default options) first, as a user would, and reports what dynamo
compiled: unique graphs, graph breaks, recompile-limit hits.

One mode per process, so peak memory is that mode's own. Prints a text report
or, with --json, one JSON object."""

import argparse
import json
import logging
import math
import os
import resource
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def splitmix64(x):
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def bench_series(variates, length):
    """bench_toto.c's bench_series, with the same libm sin through math.sin:
    10 + v + 0.001 t + 3 sin(2 pi t / (24 + 7 v)) + 1.5 sin(2 pi t / (168 + 13 v)) + 0.5 (u - 0.5),
    u = (splitmix64(v * 2^32 + t) >> 11) * 2^-53, in double, rounded to float32."""
    import numpy as np

    two_pi = 6.283185307179586
    out = np.empty((variates, length), dtype=np.float32)
    for v in range(variates):
        for t in range(length):
            u = (splitmix64((v << 32) + t) >> 11) * 2.0 ** -53
            out[v, t] = (10.0 + v + 0.001 * t + 3.0 * math.sin(two_pi * t / (24.0 + 7.0 * v))
                         + 1.5 * math.sin(two_pi * t / (168.0 + 13.0 * v)) + 0.5 * (u - 0.5))
    return out


class DynamoLog(logging.Handler):
    """Counts dynamo's recompile-limit warnings (named cache_size_limit in
    older releases)."""

    def __init__(self):
        super().__init__()
        self.limit_hits = 0

    def emit(self, record):
        msg = record.getMessage()
        if "recompile_limit" in msg or "cache_size_limit" in msg:
            self.limit_hits += 1


def dynamo_counts():
    from torch._dynamo.utils import counters

    return {
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "frames_compiled": int(counters["frames"].get("ok", 0)),
    }


class StepClock:
    """Wraps the backbone's forward (eager mode) to time each call: the first
    call of a forecast is the prefill, every later one a decode step."""

    def __init__(self, backbone, sync):
        self.calls, self.sync = [], sync
        inner = backbone.forward

        def timed(*args, **kwargs):
            out = inner(*args, **kwargs)
            self.sync()
            self.calls.append(time.perf_counter())
            return out

        backbone.forward = timed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory (config.json, model.safetensors)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--variates", type=int, default=7)
    ap.add_argument("--samples", type=int, default=0, help="sample paths; 0: the mean path (num_samples=None)")
    ap.add_argument("--samples-per-batch", type=int, default=0,
                    help="TotoForecaster's samples_per_batch (default: all samples in one batch)")
    ap.add_argument("--horizon", type=int, default=336)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5, help="timed forecasts after the warm-up")
    ap.add_argument("--warmup", type=int, choices=[0, 1], default=1, help="untimed first forecast (default 1)")
    ap.add_argument("--timed-batches", type=int, default=0,
                    help="sample paths: run only this many sampling batches and scale the time to all of them "
                         "(toto-ts runs its batches one after another, each the same work); 0: run all")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch.set_num_threads (default: the CPUs this process may use)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    from toto.data.util.dataset import MaskedTimeseries
    from toto.inference.forecaster import TotoForecaster
    from toto.model.toto import Toto

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    free0 = torch.cuda.mem_get_info(dev)[0] if cuda else None
    t0 = time.perf_counter()
    toto = Toto.load_from_checkpoint(args.model, map_location=str(dev))
    toto.eval()
    backbone = toto.model
    sync()
    load_ms = 1e3 * (time.perf_counter() - t0)

    dlog = DynamoLog()
    if args.mode == "compile":
        logging.getLogger("torch._dynamo").addHandler(dlog)
        backbone.compile()
    clock = StepClock(backbone, sync) if args.mode == "eager" else None
    forecaster = TotoForecaster(backbone)

    V, C = args.variates, args.context
    series = torch.from_numpy(bench_series(V, C)).unsqueeze(0).to(dev)
    ints = torch.zeros((1, V, C), dtype=torch.int, device=dev)
    inputs = MaskedTimeseries(series=series, padding_mask=torch.ones((1, V, C), dtype=torch.bool, device=dev),
                              id_mask=ints, timestamp_seconds=ints,
                              time_interval_seconds=torch.ones((1, V), dtype=torch.int, device=dev))
    spb = args.samples_per_batch or max(args.samples, 1)
    num_samples = args.samples or None
    scale = 1.0
    if args.samples and args.timed_batches and args.timed_batches * spb < args.samples:
        num_samples = args.timed_batches * spb
        scale = args.samples / num_samples

    def forecast():
        torch.manual_seed(0)
        with torch.inference_mode():
            fc = forecaster.forecast(inputs, prediction_length=args.horizon, num_samples=num_samples,
                                     samples_per_batch=spb, use_kv_cache=True)
        sync()
        return fc

    times, cpu, prefill, decode = [], [], [], []
    warmup_ms = None
    for i in range(1 - args.warmup, args.repeat + 1):
        if clock:
            clock.calls.clear()
        c0, a = time.process_time(), time.perf_counter()
        fc = forecast()
        b, c1 = time.perf_counter(), time.process_time()
        if not torch.isfinite(fc.mean).all():
            sys.exit("bench_toto_torch: the forecast is not finite")
        if i == 0:
            warmup_ms = 1e3 * (b - a)
            continue
        times.append(1e3 * (b - a) * scale)
        cpu.append(1e3 * (c1 - c0) * scale)
        # With one sampling batch, all of it timed, the calls are prefill
        # then decode steps.
        if clock and spb >= (num_samples or 1) and scale == 1.0 and len(clock.calls) > 1:
            prefill.append(1e3 * (clock.calls[0] - a))
            decode.append(1e3 * (clock.calls[-1] - clock.calls[0]) / (len(clock.calls) - 1))

    def median(v):
        v = sorted(v)
        n = len(v)
        return None if n == 0 else (v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2]))

    res = {
        "impl": f"toto-ts {args.mode}", "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "context": C, "horizon": args.horizon,
        "variates": V, "samples": args.samples, "samples_per_batch": spb if args.samples else None,
        "timed_samples": num_samples, "extrapolated": scale != 1.0,
        "repeat": args.repeat, "load_ms": load_ms, "warmup_ms": warmup_ms, "forecast_ms": median(times),
        "forecast_min_ms": min(times), "cpu_ms": median(cpu), "prefill_ms": median(prefill),
        "decode_step_ms": median(decode),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if cuda:
        res["device_peak_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
        res["device_mb"] = (free0 - torch.cuda.mem_get_info(dev)[0]) / 2 ** 20
    if args.mode == "compile":
        res.update(dynamo_counts())
        res["recompile_limit_hits"] = dlog.limit_hits

    if args.json:
        print(json.dumps(res))
        return
    print(f"toto-ts {args.mode}: {res['device']}, torch {res['torch']}, {res['threads']} threads, context {C}, "
          f"horizon {args.horizon}, variates {V}, " + (f"{args.samples} samples (batches of {spb})"
                                                        if args.samples else "mean path"))
    print(f"  load weights         {load_ms:10.1f} ms")
    if warmup_ms is not None:
        print(f"  warm-up forecast     {warmup_ms:10.2f} ms")
    if scale != 1.0:
        print(f"  timed {num_samples} of {args.samples} samples ({num_samples // spb} sampling batches), "
              f"times scaled by {scale:g}")
    print(f"  forecast (median {args.repeat}) {res['forecast_ms']:10.2f} ms  (min {res['forecast_min_ms']:.2f}, "
          f"CPU time {res['cpu_ms']:.0f} ms)")
    if prefill:
        print(f"    prefill            {res['prefill_ms']:10.2f} ms")
        print(f"    decode step        {res['decode_step_ms']:10.2f} ms")
    if args.mode == "compile":
        print(f"  dynamo: {res['unique_graphs']} graphs, {res['graph_breaks']} graph breaks, "
              f"{res['frames_compiled']} frames compiled, recompile limit hit {res['recompile_limit_hits']} times")
    mem = f"  memory: host peak RSS {res['peak_rss_mb']:.1f} MB"
    if cuda:
        mem += f"; device peak allocated {res['device_peak_allocated_mb']:.1f} MB, in use {res['device_mb']:.1f} MB"
    print(mem)


if __name__ == "__main__":
    main()

"""Shared pieces of the Toto scripts: configurations in the Hub's config.json
form, construction of a toto-ts model from them, checkpoint writing in either
MLP naming, and the synthetic seasonal series generator."""

import copy
import json
import os
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore", category=ImportWarning)

from safetensors.torch import save_file  # noqa: E402
from toto.model.toto import Toto  # noqa: E402

SCALER = "<class 'model.scaler.CausalPatchStdMeanScaler'>"
MIXTURE = "<class 'model.distribution.MixtureOfStudentTsOutput'>"


def hub_config(patch, embed, layers, heads, mlp, every, k, dropout=0.1):
    """Constructor arguments of Toto, keyed as the Hub's config.json keys them."""
    return {
        "patch_size": patch,
        "stride": patch,
        "embed_dim": embed,
        "num_layers": layers,
        "num_heads": heads,
        "mlp_hidden_dim": mlp,
        "dropout": dropout,
        "spacewise_every_n_layers": every,
        "spacewise_first": False,
        "scaler_cls": SCALER,
        "output_distribution_classes": [MIXTURE],
        "output_distribution_kwargs": {"k_components": k},
        "use_memory_efficient_attention": True,
        "stabilize_with_global": True,
        "scale_factor_exponent": 10.0,
    }


CONFIGS = {
    # Committed test fixture: every tensor kind of the real model, well under 1 MB.
    "tiny": hub_config(patch=8, embed=32, layers=3, heads=4, mlp=64, every=3, k=3),
    # Toto-Open-Base-1.0's values (151,306,080 parameters).
    "base": hub_config(patch=64, embed=768, layers=12, heads=12, mlp=3072, every=12, k=24),
    # The small seasonal model trained by train_small.py.
    "small": hub_config(patch=16, embed=64, layers=4, heads=4, mlp=128, every=4, k=4, dropout=0.0),
}


def build(config):
    """A Toto module for config. xFormers is absent here, so memory-efficient
    attention is switched off for construction only, exactly as
    Toto.load_from_checkpoint does; it changes no parameter."""
    kwargs = copy.deepcopy(config)
    kwargs["use_memory_efficient_attention"] = False
    return Toto(**kwargs)


def randomize(model, seed):
    """Seeded, realistic random weights: PyTorch's default Linear init for
    weights and biases (uniform in +-1/sqrt(fan_in)), and RMSNorm scales drawn
    around 1 instead of exactly 1, so a reader that drops them is caught."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.copy_(1.0 + 0.25 * (2.0 * torch.rand(p.shape, generator=gen) - 1.0))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else model.state_dict()[name[: -len("bias")] + "weight"].shape[-1]
                bound = 1.0 / np.sqrt(fan_in)
                p.copy_(bound * (2.0 * torch.rand(p.shape, generator=gen) - 1.0))


# toto-ts's Toto._map_state_dict_keys, the other way round: xFormers' fused
# SwiGLU holds the first projection as mlp.0.w12 (gate rows first, then the
# value rows, the same layout as the unfused mlp.0) and the second as mlp.0.w3.
FUSED_NAMES = {
    ".mlp.0.weight": ".mlp.0.w12.weight",
    ".mlp.0.bias": ".mlp.0.w12.bias",
    ".mlp.2.weight": ".mlp.0.w3.weight",
    ".mlp.2.bias": ".mlp.0.w3.bias",
}


def state_dict_for(model, mlp):
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if mlp == "unfused":
        return sd
    out = {}
    for k, v in sd.items():
        for a, b in FUSED_NAMES.items():
            if k.endswith(a):
                k = k[: -len(a)] + b
        out[k] = v
    return out


def save_checkpoint(model, config, out_dir, mlp="unfused"):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_file(state_dict_for(model, mlp), os.path.join(out_dir, "model.safetensors"))


def check_roundtrip(model, out_dir):
    """Reads out_dir back with toto-ts's own loader and compares every tensor."""
    loaded = Toto.load_from_checkpoint(out_dir)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return loaded


def seasonal_series(rng, variates, length, start=0):
    """Sums of two sines with random periods and phases, a linear trend, a level
    and Gaussian noise: one row per variate, float32."""
    t = np.arange(start, start + length, dtype=np.float64)
    out = np.empty((variates, length), dtype=np.float64)
    for v in range(variates):
        level = rng.uniform(-5.0, 5.0)
        trend = rng.uniform(-0.02, 0.02)
        y = level + trend * t
        for _ in range(2):
            period = rng.uniform(6.0, 64.0)
            amp = rng.uniform(0.5, 3.0)
            y = y + amp * np.sin(2.0 * np.pi * t / period + rng.uniform(0.0, 2.0 * np.pi))
        out[v] = y + rng.normal(0.0, rng.uniform(0.05, 0.3), size=length)
    return out.astype(np.float32)


def reference_inputs(patch, context_patches, batch=2, variates=3, left_pad=11, seed=0):
    """Deterministic forecaster inputs: smooth seasonal values plus noise; the
    second series is left-padded by left_pad points (padding_mask 0, value 0,
    as toto-ts's pad_array leaves them); id_mask all zeros."""
    rng = np.random.default_rng(seed)
    t = patch * context_patches
    series = np.stack([seasonal_series(rng, variates, t) for _ in range(batch)])
    padding = np.ones_like(series, dtype=bool)
    if batch > 1 and left_pad:
        series[1, :, :left_pad] = 0.0
        padding[1, :, :left_pad] = False
    return (torch.from_numpy(series), torch.from_numpy(padding),
            torch.zeros(series.shape, dtype=torch.int))


@torch.no_grad()
def reference_run(backbone, series, padding, id_mask, horizon_patches):
    """TotoForecaster.generate_mean's mean path with the KV cache, step by step,
    recording what toto-ts computes at each step (see tests/data/toto-tiny/
    README.md for every tensor). Returns (tensors, forecast mean)."""
    from toto.data.util.dataset import replace_extreme_values
    from toto.inference.forecaster import TotoForecaster

    patch = backbone.patch_embed.stride
    inputs, mask, ids = series.clone(), padding.clone(), id_mask.clone()
    kv = backbone.allocate_kv_cache(batch_size=inputs.shape[0], num_variates=inputs.shape[1],
                                    max_time_steps=inputs.shape[2] + horizon_patches * patch,
                                    device=inputs.device, dtype=inputs.dtype)
    prefix = inputs.shape[-1]
    out = {}
    for k in range(horizon_patches):
        base, loc, scale = backbone(inputs=inputs, input_padding_mask=mask, id_mask=ids, kv_cache=kv,
                                    scaling_prefix_length=prefix)
        comp, mix = base.component_distribution, base.mixture_distribution
        out[f"step{k}.df"] = comp.df[:, :, -patch:, :]
        out[f"step{k}.loc"] = comp.loc[:, :, -patch:, :]
        out[f"step{k}.scale"] = comp.scale[:, :, -patch:, :]
        out[f"step{k}.weights_logits"] = mix.logits[:, :, -patch:, :]
        out[f"step{k}.scaler_loc"] = loc[:, :, -patch:]
        out[f"step{k}.scaler_scale"] = scale[:, :, -patch:]
        distr = TotoForecaster.create_affine_transformed(base, loc, scale)
        step_mean = replace_extreme_values(distr.mean[:, :, -patch:])
        out[f"step{k}.mean"] = step_mean
        inputs = torch.cat([inputs, step_mean], dim=-1)
        ids = torch.cat([ids, ids[:, :, -1:].expand(-1, -1, patch)], dim=-1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :, :patch])], dim=-1)
    return out, inputs[:, :, prefix:]


@torch.no_grad()
def forecaster_mean(backbone, series, padding, id_mask, horizon):
    """TotoForecaster.forecast's mean forecast (num_samples None, KV cache on)."""
    from toto.data.util.dataset import MaskedTimeseries
    from toto.inference.forecaster import TotoForecaster

    zeros = torch.zeros(series.shape, dtype=torch.int)
    ts = MaskedTimeseries(series=series, padding_mask=padding, id_mask=id_mask, timestamp_seconds=zeros,
                          time_interval_seconds=torch.ones(series.shape[:2], dtype=torch.int))
    fc = TotoForecaster(backbone).forecast(ts, prediction_length=horizon, num_samples=None, use_kv_cache=True)
    return fc.mean


def write_reference(model_dir, out_path, context_patches, horizon_patches, seed, batch=2, variates=3, left_pad=11):
    from safetensors.torch import save_file as save

    model = Toto.load_from_checkpoint(model_dir)
    backbone = model.model
    backbone.eval()
    patch = backbone.patch_embed.stride
    series, padding, ids = reference_inputs(patch, context_patches, batch, variates, left_pad, seed)
    steps, mean = reference_run(backbone, series, padding, ids, horizon_patches)
    fc = forecaster_mean(backbone, series, padding, ids, horizon_patches * patch)
    # The recorded loop must be the forecaster's own computation.
    assert torch.equal(fc, mean), float((fc - mean).abs().max())
    tensors = {
        "inputs.series": series,
        "inputs.padding_mask": padding.to(torch.float32),
        "inputs.id_mask": ids.to(torch.float32),
        "mean": fc,
    }
    tensors.update(steps)
    tensors = {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}
    meta = {
        "horizon": str(horizon_patches * patch),
        "num_steps": str(horizon_patches),
        "patch_size": str(patch),
        "context": str(context_patches * patch),
        "left_pad": str(left_pad),
        "use_kv_cache": "true",
        "weights_logits": "log_softmax",
        "seed": str(seed),
    }
    save(tensors, out_path, metadata=meta)
    return tensors, meta

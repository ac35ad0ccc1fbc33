#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus: small valid safetensors files covering every
dtype, scalars, empty tensors, metadata and several tensors, as the reference
safetensors writer lays them out."""

import argparse
import os

import numpy as np
from safetensors.numpy import save_file


def seeds():
    rng = np.random.default_rng(0)
    yield "f32_matrix", {"w": rng.standard_normal((3, 4)).astype(np.float32)}, None
    yield "f16_meta", {"h": rng.standard_normal(5).astype(np.float16)}, {"format": "pt", "k": "v"}
    yield "f64_scalar", {"s": np.array(3.5, dtype=np.float64)}, None
    yield "ints_bool", {"i64": np.arange(3, dtype=np.int64), "i32": np.arange(2, dtype=np.int32),
                        "i16": np.arange(2, dtype=np.int16), "i8": np.arange(3, dtype=np.int8),
                        "u8": np.arange(4, dtype=np.uint8), "flag": np.array([True, False])}, None
    yield "empty_tensor", {"e": np.zeros((0, 3), dtype=np.float32), "x": np.ones(2, dtype=np.float32)}, None
    yield "meta_only", {}, {"only": "metadata"}
    yield "many_dims", {"d": np.ones((1, 2, 1, 2, 1, 2, 1, 2), dtype=np.float32)}, None
    yield "names", {"model.layers.0.w": np.ones(1, dtype=np.float32), "a\u00e9": np.ones(1, dtype=np.float32)}, None


def bf16_seed():
    """numpy has no bfloat16: the header is written out by hand, padded with
    spaces to a multiple of 8 as the reference writer does."""
    data = np.array([0x3F80, 0xC040, 0x0001, 0x7F80, 0x7FC1, 0x4049], dtype="<u2").tobytes()
    header = '{"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}}'
    header += " " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header.encode() + data


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus"),
                    help="corpus directory (default: corpus/ beside this script)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, tensors, meta in seeds():
        path = os.path.join(args.out, f"seed_{name}.safetensors")
        save_file(tensors, path, metadata=meta)
        print(path, os.path.getsize(path))
    path = os.path.join(args.out, "seed_bf16.safetensors")
    with open(path, "wb") as f:
        f.write(bf16_seed())
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()

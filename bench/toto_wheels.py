#!/usr/bin/env python3
"""Wheels that toto-ts's inference path imports, for a machine without toto-ts
(the GPU machine has PyTorch, numpy, pandas, scipy, safetensors).

  toto_wheels.py download DIR [--python 3.12]   fetch them (pip download --no-deps)
  toto_wheels.py missing DIR                      print the wheels in DIR whose module
                                                  this Python cannot import

run_toto_bench.sh installs only the missing ones (into a --target folder on
PYTHONPATH), so the machine's own torch, numpy and friends are never
shadowed. The list is the import closure of toto.model.toto,
toto.inference.forecaster and toto.data.util.dataset (gluonts.torch pulls in
lightning and torchmetrics), minus the standard library and what PyTorch
itself needs."""

import argparse
import glob
import importlib.util
import os
import subprocess
import sys

# (distribution, version, module it provides); versions as toto-ts 0.2.0 pins
# them or as installed next to it, lightning the newest gluonts 0.16.2 accepts.
WHEELS = [
    ("toto-ts", "0.2.0", "toto"),
    ("einops", "0.7.0", "einops"),
    ("rotary-embedding-torch", "0.8.6", "rotary_embedding_torch"),
    ("jaxtyping", "0.2.29", "jaxtyping"),
    ("typeguard", "2.13.3", "typeguard"),
    ("gluonts", "0.16.2", "gluonts"),
    ("pydantic", "2.13.4", "pydantic"),
    ("pydantic-core", "2.46.4", "pydantic_core"),
    ("annotated-types", "0.7.0", "annotated_types"),
    ("typing-inspection", "0.4.2", "typing_inspection"),
    ("typing-extensions", "4.16.0", "typing_extensions"),
    ("toolz", "0.12.1", "toolz"),
    ("lightning", "2.4.0", "lightning"),
    ("lightning-utilities", "0.15.3", "lightning_utilities"),
    ("torchmetrics", "1.9.0", "torchmetrics"),
    ("fsspec", "2024.12.0", "fsspec"),
    ("huggingface-hub", "0.36.2", "huggingface_hub"),
    ("requests", "2.32.3", "requests"),
    ("urllib3", "2.3.0", "urllib3"),
    ("idna", "3.10", "idna"),
    ("charset-normalizer", "3.4.1", "charset_normalizer"),
    ("certifi", "2025.1.31", "certifi"),
    ("filelock", "3.17.0", "filelock"),
    ("packaging", "24.2", "packaging"),
    ("pyyaml", "6.0.2", "yaml"),
    ("tqdm", "4.66.3", "tqdm"),
]


def wheel_stem(dist):
    return dist.replace("-", "_").lower()


def download(out, python):
    os.makedirs(out, exist_ok=True)
    abi = "cp" + python.replace(".", "")
    for dist, version, _ in WHEELS:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", python, "--implementation", "cp", "--abi", abi, "--abi", "none",
                        "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                        "--platform", "any", "-d", out, f"{dist}=={version}"], check=True)


def missing(folder):
    for dist, _, module in WHEELS:
        if importlib.util.find_spec(module) is not None:
            continue
        found = [f for f in sorted(glob.glob(os.path.join(folder, "*.whl")))
                 if os.path.basename(f).lower().startswith(wheel_stem(dist) + "-")]
        if not found:
            sys.exit(f"toto_wheels: {module} is not importable and {folder} has no {dist} wheel")
        print(found[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["download", "missing"])
    ap.add_argument("folder")
    ap.add_argument("--python", default="3.12", help="target Python version for download (default 3.12)")
    args = ap.parse_args()
    if args.action == "download":
        download(args.folder, args.python)
    else:
        missing(args.folder)


if __name__ == "__main__":
    main()

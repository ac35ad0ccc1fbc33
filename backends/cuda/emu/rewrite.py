"""Turns the CUDA op files into C++ for the kernel emulation test (simt.h):
kernel<<<grid, block, smem, stream>>>(args) becomes a simt launch, dynamic
shared memory a per-block buffer. Usage: rewrite.py SRC_DIR OUT_DIR"""
import os
import re
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for name in sorted(os.listdir(src)):
    if not name.endswith(('.cu', '.cuh', '.h')):
        continue
    with open(os.path.join(src, name)) as f:
        text = f.read()
    text = text.replace('extern __shared__ float sh[];', 'float *sh = simt_shared();')
    text = re.sub(r'(\w+(?:<[^<>()]*>)?)<<<(.*?)>>>\(', r'simt::launch(simt::cfg(\2), \1)(', text, flags=re.S)
    if name == 'common.cuh':
        text = text.replace('#include "cuda_backend.h"', '#include "cuda_backend.h"\n#include "simt.h"')
    target = name[:-3] + '.cpp' if name.endswith('.cu') else name
    with open(os.path.join(out, target), 'w') as f:
        f.write(text)

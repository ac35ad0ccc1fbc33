#version 450
// out (dense) = in0 read through up to 6 dims of shape and element strides.
// P(0) numel, P(1..6) shape (outermost first, padded with 1), P(7..12) strides.
#include "common.glsl"
layout(local_size_x = 256) in;

void main()
{
    uint n = P(0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += GRID_THREADS) {
        uint r = i, src = A_OFF;
        for (int k = 5; k >= 0; k--) {
            uint s = P(1 + k);
            src += (r % s) * P(7 + k);
            r /= s;
        }
        o[O_OFF + i] = in0(src);
    }
}

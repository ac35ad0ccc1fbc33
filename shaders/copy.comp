#version 450
#ifdef WORDS
// Device-to-device copy of 32-bit words (porta_buffer_copy of f32 buffers),
// bits unchanged. p[0], p[1]: word offsets of destination and source inside
// their bound ranges; P(0): words.
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Out { uint o[]; };
layout(std430, binding = 1) readonly buffer In0 { uint a[]; };
layout(std140, binding = 7) uniform Params { uvec4 pv[64]; };

void main()
{
    uint n = pv[2].x, d = pv[0].x, s = pv[0].y;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * gl_WorkGroupSize.x) o[d + i] = a[s + i];
}
#else
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
#endif

#version 450
// One workgroup per row of x[M, E]. P(0) M, P(1) E.
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"

void main()
{
    uint rows = P(0), e = P(1);
    uint t = gl_LocalInvocationID.x;
    for (uint row = gl_WorkGroupID.x; row < rows; row += gl_NumWorkGroups.x) {
        uint x0 = A_OFF + row * e, y0 = O_OFF + row * e;
        float m = -1.0 / 0.0;
        for (uint i = t; i < e; i += 256u) m = max(m, in0(x0 + i));
        m = wg_max(m);
        float s = 0.0;
        for (uint i = t; i < e; i += 256u) s += exp(in0(x0 + i) - m);
        float inv = 1.0 / wg_sum(s);
        for (uint i = t; i < e; i += 256u) o[y0 + i] = exp(in0(x0 + i) - m) * inv;
    }
}

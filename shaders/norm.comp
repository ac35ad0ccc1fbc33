#version 450
// One workgroup per row of x[M, E]. P(0) mode (0 rmsnorm, 1 layernorm), P(1) M,
// P(2) E, PF(3) eps, P(4) scale/weight present (in1), P(5) bias present (in2).
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"

void main()
{
    uint mode = P(0), rows = P(1), e = P(2), has_w = P(4), has_b = P(5);
    float eps = PF(3);
    uint t = gl_LocalInvocationID.x;
    for (uint row = gl_WorkGroupID.x; row < rows; row += gl_NumWorkGroups.x) {
        uint x0 = A_OFF + row * e;
        float mean = 0.0;
        if (mode == 1u) {
            float s = 0.0;
            for (uint i = t; i < e; i += 256u) s += in0(x0 + i);
            mean = wg_sum(s) / float(e);
        }
        float q = 0.0;
        for (uint i = t; i < e; i += 256u) {
            float v = in0(x0 + i) - mean;
            q += v * v;
        }
        float inv = inversesqrt(wg_sum(q) / float(e) + eps);
        for (uint i = t; i < e; i += 256u) {
            float y = (in0(x0 + i) - mean) * inv;
            if (has_w != 0u) y *= in1(B_OFF + i);
            if (has_b != 0u) y += in2(C_OFF + i);
            o[O_OFF + row * e + i] = y;
        }
    }
}

#version 450
// P(0) op (0 add, 1 mul, 2 silu, 3 swiglu), P(1) numel of out, P(2) numel of b
// (add, mul: b repeats) or F (swiglu: x rows are [gate F | up F]).
#include "common.glsl"
layout(local_size_x = 256) in;

float silu(float x) { return x / (1.0 + exp(-x)); }

void main()
{
    uint op = P(0), n = P(1), m = P(2);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += GRID_THREADS) {
        float y;
        if (op == 0u) y = in0(A_OFF + i) + in1(B_OFF + i % m);
        else if (op == 1u) y = in0(A_OFF + i) * in1(B_OFF + i % m);
        else if (op == 2u) y = silu(in0(A_OFF + i));
        else {
            uint row = i / m, col = i % m, src = A_OFF + row * 2u * m + col;
            y = silu(in0(src)) * in0(src + m);
        }
        o[O_OFF + i] = y;
    }
}

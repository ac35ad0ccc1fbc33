#version 450
// Writes rows t < n[b] of x[B, T, H, D] (strided) into the cache layer
// out[B, H, L, D] (strided) at position pos[b] + t. P(0..3) B, T, H, D;
// P(4..7) strides of x; P(8..11) strides of out; P(12) L. The CHAIN build
// (PORTA_VK_CHAIN) runs without the barrier before it and waits for the
// dispatches before it in chain_wait.
#include "common.glsl"
layout(local_size_x = 256) in;

void main()
{
    uint B = P(0), T = P(1), H = P(2), D = P(3);
    uint n_items = B * T * H * D;
#ifdef CHAIN
    chain_wait();
#endif
    for (uint i = gl_GlobalInvocationID.x; i < n_items; i += GRID_THREADS) {
        uint dd = i % D, r = i / D;
        uint h = r % H; r /= H;
        uint t = r % T, bi = r / T;
        if (int(t) >= step[STEP_ROWS + bi]) continue;
        uint l = uint(step[bi]) + t;
        if (l >= P(12)) continue; // a bad step block writes nothing outside the cache
        o[O_OFF + bi * P(8) + h * P(9) + l * P(10) + dd * P(11)] =
            in0(A_OFF + bi * P(4) + t * P(5) + h * P(6) + dd * P(7));
    }
}

#version 450
// x[B, T, H, D] strided -> out dense, one thread per (b, t, h, pair j).
// P(0..3) B, T, H, D; P(4..7) strides of x; PF(8) scale_base; P(9) xpos;
// P(10) is_key; P(11) cache mode (KV_APPEND_ROPE): rows t < n[b] go to the
// cache layer out[B, H, L, D] at pos[b] + t through strides P(12..15), L
// P(16), nothing else is written; from P(17): the pair frequency table
// (rope.glsl).
#include "common.glsl"
#include "rope.glsl"
layout(local_size_x = 256) in;

void main()
{
    uint B = P(0), T = P(1), H = P(2), D = P(3), half_d = D / 2u;
    uint n_items = B * T * H * half_d;
    for (uint i = gl_GlobalInvocationID.x; i < n_items; i += GRID_THREADS) {
        uint j = i % half_d, r = i / half_d;
        uint h = r % H; r /= H;
        uint t = r % T, bi = r / T;
        int pos = 0, n = int(T);
        if (STEP_ROWS != 0u) {
            pos = step[bi];
            n = step[STEP_ROWS + bi];
        }
        bool cache = P(11) != 0u;
        uint y = O_OFF + ((bi * T + t) * H + h) * D + 2u * j, ys = 1u;
        if (cache) {
            // The host refuses steps past the cache's end; the bound keeps a
            // bad step block from writing outside it.
            if (int(t) >= n || uint(pos) + t >= P(16)) continue;
            y = O_OFF + bi * P(12) + h * P(13) + (uint(pos) + t) * P(14) + 2u * j * P(15);
            ys = P(15);
        } else if (int(t) >= n) {
            o[y] = 0.0;
            o[y + 1u] = 0.0;
            continue;
        }
        int pi = pos + int(t);
        vec2 cs = rope_cos_sin(pi, 17u + 2u * j);
        uint x = A_OFF + bi * P(4) + t * P(5) + h * P(6) + 2u * j * P(7);
        vec2 s = vec2(1.0);
        if (P(9) != 0u) {
            float e = float(pi - rope_centre(pos, n)) / PF(8);
            s = rope_xpos(P(10) != 0u ? -e : e, j, D);
        }
        vec2 xr = rope_rotate(vec2(in0(x), in0(x + P(7))), cs, s);
        o[y] = xr.x;
        o[y + ys] = xr.y;
    }
}

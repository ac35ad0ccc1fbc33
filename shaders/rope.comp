#version 450
// x[B, T, H, D] strided -> out dense, one thread per (b, t, h, pair j).
// P(0..3) B, T, H, D; P(4..7) strides of x; PF(8) scale_base; P(9) xpos;
// P(10) is_key; P(11) cache mode (KV_APPEND_ROPE): rows t < n[b] go to the
// cache layer out[B, H, L, D] at pos[b] + t through strides P(12..15), L
// P(16), nothing else is written; from P(17): per pair j, the frequency theta^(-2j/D) as a float
// and the float remainder of its float64 value (the angle is formed in
// double-float precision and reduced to [-pi, pi] before sin and cos, which
// GPUs evaluate accurately only there). The CHAIN build (PORTA_VK_CHAIN)
// runs without the barrier before it: each thread forms the factors of its
// first item, which depend only on the step block, then waits (chain_wait)
// for the dispatches before it, then reads x.
#include "common.glsl"
layout(local_size_x = 256) in;

const float TWO_PI_HI = 6.28318548202514648;     // float(2 pi)
const float TWO_PI_LO = -1.74845553146951715e-7; // 2 pi - TWO_PI_HI

// Item i: pair j of head h of row t of batch row bi, whose step starts at
// position pos with n new rows.
struct Item {
    uint j, h, t, bi;
    int pos, n;
};

Item item(uint i)
{
    uint T = P(1), H = P(2), half_d = P(3) / 2u;
    Item it;
    it.j = i % half_d;
    uint r = i / half_d;
    it.h = r % H;
    r /= H;
    it.t = r % T;
    it.bi = r / T;
    it.pos = STEP_ROWS != 0u ? step[it.bi] : 0;
    it.n = STEP_ROWS != 0u ? step[STEP_ROWS + it.bi] : int(T);
    return it;
}

// cos and sin of an item's angle, and the xPos factors of its two elements.
vec4 factors(Item it)
{
    uint D = P(3), half_d = D / 2u, j = it.j;
    int pos = it.pos, n = it.n;
    int pi = pos + int(it.t);
    float pf = float(pi);
    float f_hi = uintBitsToFloat(P(17 + 2 * j)), f_lo = uintBitsToFloat(P(18 + 2 * j));
    // precise: fma must stay fused and nothing may be reassociated, or
    // the low-order parts vanish.
    precise float hi = pf * f_hi;
    precise float lo = fma(pf, f_hi, -hi) + pf * f_lo;
    float k = round(hi * 0.159154943091895336);
    precise float ang = fma(-k, TWO_PI_LO, fma(-k, TWO_PI_HI, hi)) + lo;
    float s0 = 1.0, s1 = 1.0;
    if (P(9) != 0u) {
        int c = (pos + n - 1) >> 1;
        float e = float(pi - c) / PF(8);
        if (P(10) != 0u) e = -e;
        uint k0 = (2u * j) % half_d, k1 = (2u * j + 1u) % half_d;
        float u0 = (2.0 * float(k0) + 0.4 * float(D)) / (1.4 * float(D));
        float u1 = (2.0 * float(k1) + 0.4 * float(D)) / (1.4 * float(D));
        s0 = exp2(e * log2(u0));
        s1 = exp2(e * log2(u1));
    }
    return vec4(cos(ang), sin(ang), s0, s1);
}

void main()
{
    uint B = P(0), T = P(1), H = P(2), D = P(3), half_d = D / 2u;
    uint n_items = B * T * H * half_d;
#ifdef CHAIN
    uint first = gl_GlobalInvocationID.x;
    vec4 f_first = first < n_items ? factors(item(first)) : vec4(0.0);
    chain_wait();
#endif
    for (uint i = gl_GlobalInvocationID.x; i < n_items; i += GRID_THREADS) {
        Item it = item(i);
        uint j = it.j, h = it.h, t = it.t, bi = it.bi;
        int pos = it.pos, n = it.n;
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
#ifdef CHAIN
        vec4 f = i == first ? f_first : factors(it);
#else
        vec4 f = factors(it);
#endif
        uint x = A_OFF + bi * P(4) + t * P(5) + h * P(6) + 2u * j * P(7);
        float x0 = in0(x), x1 = in0(x + P(7));
        o[y] = (x0 * f.x - x1 * f.y) * f.z;
        o[y + ys] = (x1 * f.x + x0 * f.y) * f.w;
    }
}

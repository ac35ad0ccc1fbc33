#version 450
// One workgroup of 64 threads per query row (b, t, h); keys in tiles of 64
// with an online softmax. Out is dense [B, Tq, H, D].
// P(0..3) B, Tq, H, D; P(4) Tk; P(5) cached (keys from the cache, counts from
// the step block); P(6) causal; P(7) mask present (in3); PF(8) scale;
// P(9..12) q strides (b, t, h, d); P(13..16) k strides and P(17..20) v strides
// as (b, key, h, d); P(21..23) mask strides (batch, query, key); P(24) Bm;
// P(25) splits, P(26) keys per split; P(27) keys are f32 with d stride 1 and
// 4-aligned key strides and D (read as vec4 when their offset is 4-aligned).
//
// Split (flash-decoding) variant, -DSPLIT: workgroup (x, y) covers keys
// [y * P(26), (y + 1) * P(26)) of query row x and writes its running max,
// sum and unnormalised output to scratch (binding 4) at
// (row * splits + y) * (D + 2); slices past the row's key count exit at once.
// -DCOMBINE: one workgroup per query row merges the slices into out.
#ifdef SPLIT
#define IN3_WRITABLE
#endif
#include "common.glsl"
// Keys (in1) as 16-byte words: one thread reads a whole key row, so scalar
// loads would touch a cache line per thread per element.
layout(std430, binding = 2) readonly buffer In1v { uvec4 b4[]; };
#define TILE 64u
#define MAX_D 256u
layout(local_size_x = 64) in;

shared float qs[MAX_D];
shared float ps[TILE];

uint key_count(uint bi, uint t, uint Tk)
{
    if (P(5) != 0u) {
        int n = step[STEP_ROWS + bi];
        return int(t) < n ? uint(step[bi]) + t + 1u : 0u;
    }
    return P(6) != 0u ? t + 1u : Tk;
}

#ifdef COMBINE
void main()
{
    uint B = P(0), Tq = P(1), H = P(2), D = P(3), splits = P(25), chunk = P(26);
    uint tid = gl_LocalInvocationID.x;
    uint n_items = B * Tq * H;
    for (uint item = gl_WorkGroupID.x; item < n_items; item += gl_NumWorkGroups.x) {
        uint r = item / H;
        uint n_keys = key_count(r / Tq, r % Tq, P(4));
        uint y = O_OFF + item * D;
        uint used = (n_keys + chunk - 1u) / chunk;
        uint base = D_OFF + item * splits * (D + 2u);
        float m = -1.0 / 0.0;
        for (uint s = 0u; s < used; s++) m = max(m, uintBitsToFloat(d[base + s * (D + 2u)]));
        float l = 0.0;
        for (uint s = 0u; s < used; s++) {
            float ms = uintBitsToFloat(d[base + s * (D + 2u)]);
            if (ms != -1.0 / 0.0) l += exp(ms - m) * uintBitsToFloat(d[base + s * (D + 2u) + 1u]);
        }
        float inv = l > 0.0 ? 1.0 / l : 0.0;
        for (uint dd = tid; dd < D; dd += TILE) {
            float acc = 0.0;
            for (uint s = 0u; s < used; s++) {
                uint sb = base + s * (D + 2u);
                float ms = uintBitsToFloat(d[sb]);
                if (ms != -1.0 / 0.0) acc += exp(ms - m) * uintBitsToFloat(d[sb + 2u + dd]);
            }
            o[y + dd] = acc * inv;
        }
    }
}
#else
void main()
{
    uint B = P(0), Tq = P(1), H = P(2), D = P(3), Tk = P(4);
    uint tid = gl_LocalInvocationID.x;
    float scale = PF(8);
    bool k_vec4 = P(27) != 0u && (B_OFF & 3u) == 0u;
    uint n_items = B * Tq * H;
    for (uint item = gl_WorkGroupID.x; item < n_items; item += gl_NumWorkGroups.x) {
        uint h = item % H, r = item / H;
        uint t = r % Tq, bi = r / Tq;
        uint n_keys = key_count(bi, t, Tk);
#ifdef SPLIT
        uint lo = gl_WorkGroupID.y * P(26);
        uint hi = min(n_keys, lo + P(26));
        if (lo >= hi) continue;
        uint y = D_OFF + (item * P(25) + gl_WorkGroupID.y) * (D + 2u);
#else
        uint lo = 0u, hi = n_keys;
        uint y = O_OFF + item * D;
        if (n_keys == 0u) {
            for (uint dd = tid; dd < D; dd += TILE) o[y + dd] = 0.0;
            continue;
        }
#endif
        barrier();
        uint q0 = A_OFF + bi * P(9) + t * P(10) + h * P(11);
        for (uint dd = tid; dd < D; dd += TILE) qs[dd] = in0(q0 + dd * P(12)) * scale;
        barrier();
        uint k0 = B_OFF + bi * P(13) + h * P(15), v0 = C_OFF + bi * P(17) + h * P(19);
        uint m0 = D_OFF + (bi / (B / max(P(24), 1u))) * P(21) + t * P(22);
        float m = -1.0 / 0.0, l = 0.0;
        float acc[MAX_D / TILE];
        for (uint i = 0u; i < MAX_D / TILE; i++) acc[i] = 0.0;
        for (uint j0 = lo; j0 < hi; j0 += TILE) {
            uint j = j0 + tid;
            float s = -1.0 / 0.0;
            if (j < hi) {
                uint kr = k0 + j * P(14);
                s = 0.0;
                if (k_vec4) {
                    for (uint d4 = 0u; d4 < D / 4u; d4++) {
                        vec4 kv = uintBitsToFloat(b4[kr / 4u + d4]);
                        s += dot(vec4(qs[4u * d4], qs[4u * d4 + 1u], qs[4u * d4 + 2u], qs[4u * d4 + 3u]), kv);
                    }
                } else {
                    for (uint dd = 0u; dd < D; dd++) s += qs[dd] * in1(kr + dd * P(16));
                }
#ifndef SPLIT
                if (P(7) != 0u) s += in3(m0 + j * P(23));
#endif
            }
            ps[tid] = s;
            barrier();
            float mt = m;
            for (uint jj = 0u; jj < TILE; jj++) mt = max(mt, ps[jj]);
            barrier();
            // A tile whose keys are all excluded so far leaves the state as it is.
            if (mt != -1.0 / 0.0) {
                float alpha = exp(m - mt);
                ps[tid] = exp(s - mt);
                barrier();
                uint cnt = min(TILE, hi - j0);
                float lt = 0.0;
                for (uint jj = 0u; jj < cnt; jj++) lt += ps[jj];
                l = l * alpha + lt;
                for (uint i = 0u; i * TILE + tid < D; i++) {
                    uint dd = i * TILE + tid;
                    float v = 0.0;
                    for (uint jj = 0u; jj < cnt; jj++) v += ps[jj] * in2(v0 + (j0 + jj) * P(18) + dd * P(20));
                    acc[i] = acc[i] * alpha + v;
                }
                m = mt;
                barrier();
            }
        }
#ifdef SPLIT
        if (tid == 0u) {
            d[y] = floatBitsToUint(m);
            d[y + 1u] = floatBitsToUint(l);
        }
        for (uint i = 0u; i * TILE + tid < D; i++) d[y + 2u + i * TILE + tid] = floatBitsToUint(acc[i]);
#else
        float inv = l > 0.0 ? 1.0 / l : 0.0;
        for (uint i = 0u; i * TILE + tid < D; i++) o[y + i * TILE + tid] = acc[i] * inv;
#endif
    }
}
#endif

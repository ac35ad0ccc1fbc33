#version 450
// One workgroup of 64 threads per query row (b, t, h); keys in tiles of P(28)
// with an online softmax. Each tile of K and V rows is first copied into
// shared memory by the whole workgroup, every thread issuing its loads
// before it stores any (a tile costs a memory round trip or two, not one per
// key or value row); a thread then scores one key and accumulates head dims,
// the tile's max and sum taken by subgroup operations.
// Out is dense [B, Tq, H, D].
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
//
// Cached rows variant, -DROWS (cached attention that does not split: many
// query rows, or a cache of at most 256 positions): keys in blocks of 128, two per thread, each thread reading its
// keys' rows straight from the cache (16-byte pieces when P(27) allows, RK
// of each key in flight) and scoring them against q in shared memory; then
// every thread takes head dims and reads the block's value rows straight
// from the cache (coalesced across threads, RV rows in flight). No K or V
// tile passes through shared memory: a workgroup needs little more than q,
// and a block of keys costs a few memory round trips, not one per tile and
// loop step.
#ifdef SPLIT
#define IN3_WRITABLE
#endif
#include "common.glsl"
#extension GL_EXT_control_flow_attributes : require
// Keys (in1) and values (in2) as 16-byte words for staging.
layout(std430, binding = 2) readonly buffer In1v { uvec4 b4[]; };
layout(std430, binding = 3) readonly buffer In2v { uvec4 c4[]; };
#define THREADS 64u
#define MAX_D 256u
// A K tile then a V tile, rows of D + 1 floats (odd for even D: threads
// reading different rows at one dim hit different banks): 64 keys up to head
// dim 32, 32 up to 64, 16 up to 128, 8 up to 256.
#define KV_FLOATS 4224u
// Loads in flight per thread while staging, of K and of V each.
#define STAGE_LOADS 8u
layout(local_size_x = 64) in;

shared float qs[MAX_D];
#ifdef ROWS
shared float ps[2u * THREADS];
#else
shared float ps[THREADS];
#endif
#ifndef ROWS
shared float kvs[KV_FLOATS];
#endif
#include "reduce.glsl"

uint key_count(uint bi, uint t, uint Tk)
{
    if (P(5) != 0u) {
        int n = step[STEP_ROWS + bi];
        return int(t) < n ? uint(step[bi]) + t + 1u : 0u;
    }
    return P(6) != 0u ? t + 1u : Tk;
}

// A query row's setup, the same in every kernel: q times the scale into qs,
// and where its keys and values start, and those of the shared prefix (the
// cached keys below nsh, in row src of the step block).
struct row_bases {
    uint k0, v0, ks0, vs0, nsh;
};

row_bases row_setup(uint bi, uint t, uint h, uint D, float scale)
{
    uint q0 = A_OFF + bi * P(9) + t * P(10) + h * P(11);
    for (uint dd = gl_LocalInvocationID.x; dd < D; dd += THREADS) qs[dd] = in0(q0 + dd * P(12)) * scale;
    row_bases r;
    r.k0 = B_OFF + bi * P(13) + h * P(15);
    r.v0 = C_OFF + bi * P(17) + h * P(19);
    r.nsh = 0u;
    r.ks0 = r.k0;
    r.vs0 = r.v0;
    if (P(5) != 0u) {
        uint src = uint(step[2u * STEP_ROWS + bi]);
        r.nsh = uint(step[3u * STEP_ROWS + bi]);
        r.ks0 = B_OFF + src * P(13) + h * P(15);
        r.vs0 = C_OFF + src * P(17) + h * P(19);
    }
    return r;
}

#ifdef ROWS
#define KB (2u * THREADS)
// Loads in flight per thread: key pieces (of each of its two keys) and value rows.
#define RK 8u
#define RV 16u
float qdot(uint dd, vec4 k)
{
    return qs[dd] * k.x + qs[dd + 1u] * k.y + qs[dd + 2u] * k.z + qs[dd + 3u] * k.w;
}

void main()
{
    uint B = P(0), Tq = P(1), H = P(2), D = P(3), Tk = P(4);
    uint tid = gl_LocalInvocationID.x;
    float scale = PF(8);
    bool vec = P(27) != 0u && ((B_OFF | C_OFF) & 3u) == 0u;
    uint n_items = B * Tq * H;
    for (uint item = gl_WorkGroupID.x; item < n_items; item += gl_NumWorkGroups.x) {
        uint h = item % H, r = item / H;
        uint t = r % Tq, bi = r / Tq;
        uint n_keys = key_count(bi, t, Tk);
        uint y = O_OFF + item * D;
        if (n_keys == 0u) {
            for (uint dd = tid; dd < D; dd += THREADS) o[y + dd] = 0.0;
            continue;
        }
        barrier(); // the previous row's readers of qs are done
        row_bases rb0 = row_setup(bi, t, h, D, scale);
        uint k0 = rb0.k0, v0 = rb0.v0, ks0 = rb0.ks0, vs0 = rb0.vs0, nsh = rb0.nsh;
        barrier();
        float m = -1.0 / 0.0, l = 0.0;
        float acc[MAX_D / THREADS];
        [[unroll]] for (uint i = 0u; i < MAX_D / THREADS; i++) acc[i] = 0.0;
        for (uint j0 = 0u; j0 < n_keys; j0 += KB) {
            // Scores of this thread's keys j0 + tid and j0 + THREADS + tid,
            // RK pieces of each in flight at once.
            uint ja = j0 + tid, jb = ja + THREADS;
            bool va = ja < n_keys, vb = jb < n_keys;
            uint ra = (ja < nsh ? ks0 : k0) + ja * P(14), rb = (jb < nsh ? ks0 : k0) + jb * P(14);
            float sa = 0.0, sb = 0.0;
            if (vec) {
                for (uint d4 = 0u; d4 < D / 4u; d4 += RK) {
                    vec4 ka[RK], kb[RK];
                    [[unroll]] for (uint c = 0u; c < RK; c++) {
                        bool ok = d4 + c < D / 4u;
                        ka[c] = va && ok ? uintBitsToFloat(b4[ra / 4u + d4 + c]) : vec4(0.0);
                        kb[c] = vb && ok ? uintBitsToFloat(b4[rb / 4u + d4 + c]) : vec4(0.0);
                    }
                    [[unroll]] for (uint c = 0u; c < RK; c++) {
                        if (d4 + c < D / 4u) {
                            sa += qdot(4u * (d4 + c), ka[c]);
                            sb += qdot(4u * (d4 + c), kb[c]);
                        }
                    }
                }
            } else {
                for (uint dd = 0u; dd < D; dd++) {
                    if (va) sa = fma(qs[dd], in1(ra + dd * P(16)), sa);
                    if (vb) sb = fma(qs[dd], in1(rb + dd * P(16)), sb);
                }
            }
            sa = va ? sa : -1.0 / 0.0;
            sb = vb ? sb : -1.0 / 0.0;
            // The block holds a key, so mt is finite.
            float mt = max(m, wg_max(max(sa, sb)));
            float alpha = exp(m - mt);
            float pa = exp(sa - mt), pb = exp(sb - mt);
            ps[tid] = pa;
            ps[THREADS + tid] = pb;
            l = l * alpha + wg_sum(pa + pb); // its barrier also publishes ps (0 past the keys)
            uint cnt = min(KB, n_keys - j0);
            [[unroll]] for (uint i = 0u; i < MAX_D / THREADS; i++) {
                uint dd = i * THREADS + tid;
                if (dd >= D) break;
                float a4[4] = float[4](0.0, 0.0, 0.0, 0.0);
                // RV value rows in flight at once.
                for (uint jj = 0u; jj < cnt; jj += RV) {
                    float vv[RV];
                    [[unroll]] for (uint c = 0u; c < RV; c++) {
                        uint j = j0 + jj + c;
                        vv[c] = jj + c < cnt ? in2((j < nsh ? vs0 : v0) + j * P(18) + dd * P(20)) : 0.0;
                    }
                    [[unroll]] for (uint c = 0u; c < RV; c++) a4[c % 4u] = fma(ps[jj + c], vv[c], a4[c % 4u]);
                }
                acc[i] = acc[i] * alpha + ((a4[0] + a4[1]) + (a4[2] + a4[3]));
            }
            m = mt;
            barrier(); // the block's readers of ps are done
        }
        float inv = l > 0.0 ? 1.0 / l : 0.0;
        [[unroll]] for (uint i = 0u; i < MAX_D / THREADS; i++) {
            uint dd = i * THREADS + tid;
            if (dd < D) o[y + dd] = acc[i] * inv;
        }
    }
}
#elif defined(COMBINE)
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
        for (uint dd = tid; dd < D; dd += THREADS) {
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
// Copies rows [0, nk) of a K tile (rows from kr, P(14) apart) and of a V tile
// (from vr, P(18) apart) into kvs: K row j at (js + j) (D + 1), V row j at
// TK (D + 1) + (js + j) (D + 1).
void stage(uint kr, uint vr, uint nk, uint D, uint TK, bool vec, uint js)
{
    uint tid = gl_LocalInvocationID.x, DP = D + 1u, voff = TK * DP + js * DP;
    if (vec) {
        uint per = D / 4u, total = nk * per;
        for (uint e0 = 0u; e0 < total; e0 += THREADS * STAGE_LOADS) {
            vec4 tk[STAGE_LOADS], tv[STAGE_LOADS];
            for (uint u = 0u; u < STAGE_LOADS; u++) {
                uint e = e0 + u * THREADS + tid, j = e / per, d4 = e % per;
                tk[u] = tv[u] = vec4(0.0);
                if (e < total) {
                    tk[u] = uintBitsToFloat(b4[(kr + j * P(14)) / 4u + d4]);
                    tv[u] = uintBitsToFloat(c4[(vr + j * P(18)) / 4u + d4]);
                }
            }
            for (uint u = 0u; u < STAGE_LOADS; u++) {
                uint e = e0 + u * THREADS + tid, j = e / per, d = 4u * (e % per);
                if (e >= total) break;
                for (uint i = 0u; i < 4u; i++) {
                    kvs[(js + j) * DP + d + i] = tk[u][i];
                    kvs[voff + j * DP + d + i] = tv[u][i];
                }
            }
        }
        return;
    }
    uint total = nk * D;
    for (uint e0 = 0u; e0 < total; e0 += THREADS * STAGE_LOADS) {
        float tk[STAGE_LOADS], tv[STAGE_LOADS];
        for (uint u = 0u; u < STAGE_LOADS; u++) {
            uint e = e0 + u * THREADS + tid, j = e / D, d = e % D;
            tk[u] = tv[u] = 0.0;
            if (e < total) {
                tk[u] = in1(kr + j * P(14) + d * P(16));
                tv[u] = in2(vr + j * P(18) + d * P(20));
            }
        }
        for (uint u = 0u; u < STAGE_LOADS; u++) {
            uint e = e0 + u * THREADS + tid, j = e / D, d = e % D;
            if (e >= total) break;
            kvs[(js + j) * DP + d] = tk[u];
            kvs[voff + j * DP + d] = tv[u];
        }
    }
}

void main()
{
    uint B = P(0), Tq = P(1), H = P(2), D = P(3), Tk = P(4), TK = P(28), DP = D + 1u;
    uint tid = gl_LocalInvocationID.x;
    float scale = PF(8);
    bool vec = P(27) != 0u && ((B_OFF | C_OFF) & 3u) == 0u;
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
            for (uint dd = tid; dd < D; dd += THREADS) o[y + dd] = 0.0;
            continue;
        }
#endif
        barrier();
        row_bases rb0 = row_setup(bi, t, h, D, scale);
        uint k0 = rb0.k0, v0 = rb0.v0, ks0 = rb0.ks0, vs0 = rb0.vs0, nsh = rb0.nsh;
        uint m0 = D_OFF + (bi / (B / max(P(24), 1u))) * P(21) + t * P(22);
        float m = -1.0 / 0.0, l = 0.0;
        float acc[MAX_D / THREADS];
        for (uint i = 0u; i < MAX_D / THREADS; i++) acc[i] = 0.0;
        for (uint j0 = lo; j0 < hi; j0 += TK) {
            uint cnt = min(TK, hi - j0);
            uint np = j0 < nsh ? min(cnt, nsh - j0) : 0u;
            if (np > 0u) stage(ks0 + j0 * P(14), vs0 + j0 * P(18), np, D, TK, vec, 0u);
            if (cnt > np) stage(k0 + (j0 + np) * P(14), v0 + (j0 + np) * P(18), cnt - np, D, TK, vec, np);
            barrier();
            float s = -1.0 / 0.0;
            if (tid < cnt) {
                // Four partial sums: no chain of D dependent fmas.
                float s4[4] = float[4](0.0, 0.0, 0.0, 0.0);
                uint kb = tid * DP, dd = 0u;
                for (; dd + 4u <= D; dd += 4u)
                    [[unroll]] for (uint c = 0u; c < 4u; c++) s4[c] = fma(qs[dd + c], kvs[kb + dd + c], s4[c]);
                for (; dd < D; dd++) s4[0] = fma(qs[dd], kvs[kb + dd], s4[0]);
                s = (s4[0] + s4[1]) + (s4[2] + s4[3]);
#ifndef SPLIT
                if (P(7) != 0u) s += in3(m0 + (j0 + tid) * P(23));
#endif
            }
            float mt = max(m, wg_max(s));
            // A tile whose keys are all excluded so far leaves the state as it is.
            if (mt != -1.0 / 0.0) {
                float alpha = exp(m - mt);
                float pe = exp(s - mt);
                ps[tid] = pe;
                l = l * alpha + wg_sum(pe); // its barrier also publishes ps
                for (uint i = 0u; i * THREADS + tid < D; i++) {
                    uint dd = i * THREADS + tid, vb = TK * DP + dd;
                    float v2[2] = float[2](0.0, 0.0);
                    uint jj = 0u;
                    for (; jj + 2u <= cnt; jj += 2u) {
                        v2[0] = fma(ps[jj], kvs[vb + jj * DP], v2[0]);
                        v2[1] = fma(ps[jj + 1u], kvs[vb + (jj + 1u) * DP], v2[1]);
                    }
                    if (jj < cnt) v2[0] = fma(ps[jj], kvs[vb + jj * DP], v2[0]);
                    acc[i] = acc[i] * alpha + (v2[0] + v2[1]);
                }
                m = mt;
            }
            barrier();
        }
#ifdef SPLIT
        if (tid == 0u) {
            d[y] = floatBitsToUint(m);
            d[y + 1u] = floatBitsToUint(l);
        }
        for (uint i = 0u; i * THREADS + tid < D; i++) d[y + 2u + i * THREADS + tid] = floatBitsToUint(acc[i]);
#else
        float inv = l > 0.0 ? 1.0 / l : 0.0;
        for (uint i = 0u; i * THREADS + tid < D; i++) o[y + i * THREADS + tid] = acc[i] * inv;
#endif
    }
}
#endif

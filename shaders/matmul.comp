#version 450
// C[z][m, n] = sum_k A[z][m, k] B[z](k, n) (+ bias[n]), f32 accumulate.
// A = in0, B = in1 read through strides (LINEAR passes w[N, K] as B with
// k stride 1), bias = in2, C = out dense [z][M, Nout].
// P(0) M, P(1) N, P(2) K, P(3) batches, P(4..6) batch strides of A, B, C,
// P(7) A row stride, P(8) A k stride, P(9) B k stride, P(10) B n stride,
// P(11) bias present; P(12) (GEMV) A, B and the norm scale are f32 with unit
// k stride, A and B with 4-aligned row and batch strides and K (read as vec4
// when their offsets are 4-aligned); P(13) Nout, the output columns (N, or
// N / 2 with SwiGLU); P(14) bias stride; P(15) fused-linear flags (bit 0
// RMSNorm of the A rows, 1 SwiGLU, 2 residual in3, 3 norm scale in4);
// PF(16) eps; P(17) norm scale stride.
//
// Fused linear (PORTA_OP_LINEAR_FUSED): y = rmsnorm(x) w^T + bias, the norm's
// 1 / rms applied to the finished dot products and its scale folded into the
// weights' k; with SwiGLU out[:, j] = silu(y[:, j]) * y[:, j + Nout], the gate
// and value rows computed side by side; then + residual. Everything happens
// in the one dispatch of either build: the GEMV, or the tiled build with FUSED.
//
// Default build: square tiles through shared memory, 256 threads of TM x TM
// outputs (TM 2: 32 x 32 tiles for products too small to fill a GPU with larger
// ones; TM 4: 64 x 64; TM 8: 128 x 128 for large products). Without FUSED it
// is a plain product (bias stride 1, P(13..17) unread) that carries none of
// the fused parts' registers, loads or branches. Every loop over a thread's
// TM x TM accumulators (or its loads) is unrolled by glslc, so the SPIR-V has
// no indexed arrays: the accumulators stay in registers whatever the driver's
// own unrolling decides (an array it leaves indexed lives in local memory).
// GEMV (M <= 8 rows, B contiguous along k, the decode case; built for 1, 2,
// 4 and 8 rows): a workgroup takes R weight rows and splits K among its
// threads, so that each load of x serves R rows and each weight element is
// read once, in 16-byte pieces, U pieces of every row in flight per thread;
// the partial sums meet by subgroup sums, then in shared memory. Its CHAIN
// build (PORTA_VK_CHAIN) runs without a barrier before it: each workgroup
// loads its first weight pieces, waits in chain_wait (common.glsl) for the
// dispatches before it, then reads x and the residual through coherent
// bindings.
#include "common.glsl"
#extension GL_EXT_control_flow_attributes : require

#define FL_NORM 1u
#define FL_SWIGLU 2u
#define FL_RES 4u
#define FL_SCALE 8u

float silu(float x) { return x / (1.0 + exp(-x)); }

#ifdef GEMV
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// MM: the most x rows of this build (1, 2, 4 or 8; M <= MM).
#define R 4u
#define T 128u
// Pieces of 4 k per thread and weight row loaded before any is used (4 for
// one or two rows made the 12 x 768 batch-1 step on an H200 0.69 ms, against
// 0.64 to 0.67 with 2: the registers of pieces a 768-deep row never fills
// cost workgroups in flight).
#define U 2u
// Per thread: R x MM dot products, then MM sums of squares (for the norm).
#define NV (R * MM + MM)
// Subgroups of 4 lanes or more (the host checks): at most T / 4 of them.
#define MAX_SG (T / 4u)
layout(local_size_x = 128) in;
shared float part[MAX_SG * NV];
layout(std430, binding = 1) ACT readonly buffer In0v { uvec4 a4[]; };
layout(std430, binding = 2) readonly buffer In1v { uvec4 b4[]; };
layout(std430, binding = 5) readonly buffer In4v { uvec4 e4[]; };

// Weight row of slot r of row group grp, or ~0u past the end: R consecutive
// rows, or with SwiGLU R / 2 gate rows and the value rows Nout further.
uint weight_row(uint grp, uint r, bool swiglu, uint N, uint Nout)
{
    if (swiglu) {
        uint j = grp * (R / 2u) + r % (R / 2u);
        return j < Nout ? j + (r < R / 2u ? 0u : Nout) : ~0u;
    }
    uint j = grp * R + r;
    return j < N ? j : ~0u;
}

// The U pieces of every weight row a thread takes at k0 (in 16-byte words).
#define LOAD_W(k0)                                                                                 \
    [[unroll]] for (uint u = 0u; u < U; u++)                                                      \
        [[unroll]] for (uint r = 0u; r < R; r++) {                                                \
            uint k = (k0) + u * T;                                                                 \
            w[u * R + r] = row[r] != ~0u && k < K4 ? uintBitsToFloat(b4[wr[r] + k]) : vec4(0.0);   \
        }

void main()
{
    uint M = P(0), N = P(1), K = P(2), Nout = P(13), flags = P(15);
#ifdef CHAIN
    // Recorded without the barrier before it: the first weight pieces are
    // loaded (weights no node writes), then the dispatches before it are
    // waited for, then x is read.
    bool waited = false;
#endif
    bool norm = (flags & FL_NORM) != 0u, swiglu = (flags & FL_SWIGLU) != 0u;
    bool scale = (flags & FL_SCALE) != 0u;
    uint tid = gl_LocalInvocationID.x;
    bool vec = P(12) != 0u && ((A_OFF | B_OFF | E_OFF) & 3u) == 0u;
    uint outs = swiglu ? R / 2u : R, groups = (Nout + outs - 1u) / outs;
    for (uint z = gl_WorkGroupID.y; z < P(3); z += gl_NumWorkGroups.y) {
        uint a0 = A_OFF + z * P(4), b0 = B_OFF + z * P(5);
        for (uint grp = gl_WorkGroupID.x; grp < groups; grp += gl_NumWorkGroups.x) {
            uint row[R];
            [[unroll]] for (uint r = 0u; r < R; r++) row[r] = weight_row(grp, r, swiglu, N, Nout);
            float acc[R * MM], ss[MM];
            [[unroll]] for (uint m = 0u; m < MM; m++) {
                ss[m] = 0.0;
                [[unroll]] for (uint r = 0u; r < R; r++) acc[r * MM + m] = 0.0;
            }
            if (vec) {
                uint K4 = K / 4u;
                uint wr[R];
                [[unroll]] for (uint r = 0u; r < R; r++) wr[r] = row[r] != ~0u ? (b0 + row[r] * P(10)) / 4u : 0u;
#ifdef CHAIN
                vec4 w[U * R];
                LOAD_W(tid);
                if (!waited) {
                    chain_wait();
                    waited = true;
                }
#endif
                for (uint k0 = tid; k0 < K4; k0 += U * T) {
                    // Every weight load of the U pieces is in flight before
                    // the first is used.
#ifdef CHAIN
                    if (k0 != tid) LOAD_W(k0);
#else
                    vec4 w[U * R];
                    LOAD_W(k0);
#endif
                    [[unroll]] for (uint u = 0u; u < U; u++) {
                        uint k = k0 + u * T;
                        if (k >= K4) break;
                        vec4 g = scale ? uintBitsToFloat(e4[E_OFF / 4u + k]) : vec4(1.0);
                        [[unroll]] for (uint m = 0u; m < MM; m++) {
                            if (m >= M) break;
                            vec4 x = uintBitsToFloat(a4[(a0 + m * P(7)) / 4u + k]);
                            ss[m] += dot(x, x);
                            x *= g;
                            [[unroll]] for (uint r = 0u; r < R; r++) acc[r * MM + m] += dot(w[u * R + r], x);
                        }
                    }
                }
            } else {
#ifdef CHAIN
                if (!waited) {
                    chain_wait();
                    waited = true;
                }
#endif
                for (uint k = tid; k < K; k += T) {
                    float w[R];
                    [[unroll]] for (uint r = 0u; r < R; r++)
                        w[r] = row[r] != ~0u ? in1(b0 + row[r] * P(10) + k * P(9)) : 0.0;
                    float g = scale ? in4(E_OFF + k * P(17)) : 1.0;
                    [[unroll]] for (uint m = 0u; m < MM; m++) {
                        if (m >= M) break;
                        float x = in0(a0 + m * P(7) + k * P(8));
                        ss[m] += x * x;
                        x *= g;
                        [[unroll]] for (uint r = 0u; r < R; r++) acc[r * MM + m] += w[r] * x;
                    }
                }
            }
            // Sums over each subgroup, then over the workgroup's subgroups.
            [[unroll]] for (uint v = 0u; v < R * MM; v++) acc[v] = subgroupAdd(acc[v]);
            if (norm) {
                [[unroll]] for (uint m = 0u; m < MM; m++) ss[m] = subgroupAdd(ss[m]);
            }
            if (subgroupElect()) {
                uint base = gl_SubgroupID * NV;
                [[unroll]] for (uint v = 0u; v < R * MM; v++) part[base + v] = acc[v];
                [[unroll]] for (uint m = 0u; m < MM; m++) part[base + R * MM + m] = ss[m];
            }
            barrier();
            // One thread per output: (row slot r, input row m).
            uint r = tid / MM, m = tid % MM;
            uint col = r < outs ? weight_row(grp, r, swiglu, N, Nout) : ~0u;
            if (m < M && col != ~0u) {
                float y = 0.0, y2 = 0.0, q2 = 0.0;
                for (uint sgi = 0u; sgi < gl_NumSubgroups; sgi++) {
                    uint base = sgi * NV;
                    y += part[base + r * MM + m];
                    if (swiglu) y2 += part[base + (r + R / 2u) * MM + m];
                    q2 += part[base + R * MM + m];
                }
                if (norm) {
                    float inv = inversesqrt(q2 / float(K) + PF(16));
                    y *= inv;
                    y2 *= inv;
                }
                if (P(11) != 0u) {
                    y += in2(C_OFF + col * P(14));
                    if (swiglu) y2 += in2(C_OFF + (col + Nout) * P(14));
                }
                if (swiglu) y = silu(y) * y2;
                if ((flags & FL_RES) != 0u) y += in3(D_OFF + m * Nout + col);
                o[O_OFF + z * P(6) + m * Nout + col] = y;
            }
            barrier();
        }
    }
}

#else
// TM x TM outputs per thread, 16 x 16 threads: tiles of 16 TM square.
#ifndef TM
#define TM 4u
#endif
#define BM (16u * TM)
#define BK 16u
#define LOADS (BM * BK / 256u)
layout(local_size_x = 256) in;
shared float As[BK][BM + 1u];
shared float Bs[BK][BM + 1u];

#ifdef FUSED
// B column (weight row) of tile column nn of the tile at output column tn,
// or ~0u past the end: with SwiGLU the tile's first half holds gate rows and
// its second half the value rows Nout further, so that thread (tx, j) holds
// a gate column in acc[.][j] and its value column in acc[.][j + TM / 2].
uint tile_col(uint tn, uint nn, bool swiglu, uint N, uint Nout)
{
    if (swiglu) {
        uint j = tn + nn % (BM / 2u);
        return j < Nout ? j + (nn < BM / 2u ? 0u : Nout) : ~0u;
    }
    return tn + nn < N ? tn + nn : ~0u;
}
#endif

void main()
{
#ifdef FUSED
    uint M = P(0), N = P(1), K = P(2), Nout = P(13), flags = P(15);
    bool swiglu = (flags & FL_SWIGLU) != 0u, scale = (flags & FL_SCALE) != 0u;
    uint cols = swiglu ? BM / 2u : BM;
#else
    uint M = P(0), N = P(1), K = P(2);
#endif
    uint tid = gl_LocalInvocationID.x, tx = tid % 16u, ty = tid / 16u;
    bool b_kcontig = P(9) == 1u;
    for (uint z = gl_WorkGroupID.z; z < P(3); z += gl_NumWorkGroups.z) {
        for (uint tm = gl_WorkGroupID.y * BM; tm < M; tm += gl_NumWorkGroups.y * BM) {
#ifdef FUSED
            for (uint tn = gl_WorkGroupID.x * cols; tn < Nout; tn += gl_NumWorkGroups.x * cols) {
                float acc[TM][TM], ss[TM];
                [[unroll]] for (uint i = 0u; i < TM; i++) {
                    ss[i] = 0.0;
                    [[unroll]] for (uint j = 0u; j < TM; j++) acc[i][j] = 0.0;
                }
#else
            for (uint tn = gl_WorkGroupID.x * BM; tn < N; tn += gl_NumWorkGroups.x * BM) {
                float acc[TM][TM];
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    [[unroll]] for (uint j = 0u; j < TM; j++) acc[i][j] = 0.0;
#endif
                uint a0 = A_OFF + z * P(4), b0 = B_OFF + z * P(5);
                for (uint k0 = 0u; k0 < K; k0 += BK) {
                    // Consecutive threads walk the contiguous dim of each
                    // operand. A's load r lands in row ty + 16 r (BK 16, 256
                    // threads), the row whose sum of squares ss[r] gathers
                    // (FUSED).
                    [[unroll]] for (uint r = 0u; r < LOADS; r++) {
                        uint e = tid + 256u * r;
                        uint row = e / BK, kk = e % BK;
                        uint gm = tm + row, gk = k0 + kk;
#ifdef FUSED
                        float x = gm < M && gk < K ? in0(a0 + gm * P(7) + gk * P(8)) : 0.0;
                        As[kk][row] = x;
                        ss[r] += x * x;
                        uint nn = b_kcontig ? e / BK : e % BM;
                        kk = b_kcontig ? e % BK : e / BM;
                        uint gn = tile_col(tn, nn, swiglu, N, Nout);
                        gk = k0 + kk;
                        float w = gn != ~0u && gk < K ? in1(b0 + gk * P(9) + gn * P(10)) : 0.0;
                        if (scale && gk < K) w *= in4(E_OFF + gk * P(17));
                        Bs[kk][nn] = w;
#else
                        As[kk][row] = gm < M && gk < K ? in0(a0 + gm * P(7) + gk * P(8)) : 0.0;
                        uint nn = b_kcontig ? e / BK : e % BM;
                        kk = b_kcontig ? e % BK : e / BM;
                        uint gn = tn + nn;
                        gk = k0 + kk;
                        Bs[kk][nn] = gn < N && gk < K ? in1(b0 + gk * P(9) + gn * P(10)) : 0.0;
#endif
                    }
                    barrier();
                    for (uint kk = 0u; kk < BK; kk++) {
                        float av[TM], bv[TM];
                        [[unroll]] for (uint i = 0u; i < TM; i++) av[i] = As[kk][ty + 16u * i];
                        [[unroll]] for (uint j = 0u; j < TM; j++) bv[j] = Bs[kk][tx + 16u * j];
                        [[unroll]] for (uint i = 0u; i < TM; i++)
                            [[unroll]] for (uint j = 0u; j < TM; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                    }
                    barrier();
                }
#ifdef FUSED
                float inv[TM];
                [[unroll]] for (uint i = 0u; i < TM; i++) inv[i] = 1.0;
                if ((flags & FL_NORM) != 0u) {
                    // Row ty + 16 i's squares are spread over the 16 threads tx.
                    [[unroll]] for (uint i = 0u; i < TM; i++) As[tx][ty + 16u * i] = ss[i];
                    barrier();
                    [[unroll]] for (uint i = 0u; i < TM; i++) {
                        float q = 0.0;
                        [[unroll]] for (uint t = 0u; t < 16u; t++) q += As[t][ty + 16u * i];
                        inv[i] = inversesqrt(q / float(K) + PF(16));
                    }
                    barrier();
                }
                [[unroll]] for (uint i = 0u; i < TM; i++) {
                    uint gm = tm + ty + 16u * i;
                    [[unroll]] for (uint j = 0u; j < TM; j++) {
                        uint gn = tn + tx + 16u * j;
                        if (gm < M && gn < Nout && !(swiglu && j >= TM / 2u)) {
                            float y = acc[i][j] * inv[i];
                            if (P(11) != 0u) y += in2(C_OFF + gn * P(14));
                            if (swiglu) {
                                float v = acc[i][(j + TM / 2u) % TM] * inv[i];
                                if (P(11) != 0u) v += in2(C_OFF + (gn + Nout) * P(14));
                                y = silu(y) * v;
                            }
                            if ((flags & FL_RES) != 0u) y += in3(D_OFF + gm * Nout + gn);
                            o[O_OFF + z * P(6) + gm * Nout + gn] = y;
                        }
                    }
                }
#else
                [[unroll]] for (uint i = 0u; i < TM; i++) {
                    uint gm = tm + ty + 16u * i;
                    [[unroll]] for (uint j = 0u; j < TM; j++) {
                        uint gn = tn + tx + 16u * j;
                        if (gm < M && gn < N) {
                            float y = acc[i][j];
                            if (P(11) != 0u) y += in2(C_OFF + gn);
                            o[O_OFF + z * P(6) + gm * N + gn] = y;
                        }
                    }
                }
#endif
            }
        }
    }
}
#endif

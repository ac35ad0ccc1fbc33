#version 450
// C[z][m, n] = sum_k A[z][m, k] B[z](k, n) (+ bias[n]), f32 accumulate.
// A = in0, B = in1 read through strides (LINEAR passes w[N, K] as B with
// k stride 1), bias = in2, C = out dense [z][M, N].
// P(0) M, P(1) N, P(2) K, P(3) batches, P(4..6) batch strides of A, B, C,
// P(7) A row stride, P(8) A k stride, P(9) B k stride, P(10) B n stride,
// P(11) bias present; P(12) (GEMV) A and B are f32 with unit k stride and
// 4-aligned row strides and K (read as vec4 when their offsets are 4-aligned).
// Default build: square tiles through shared memory, 256 threads of TM x TM
// outputs (TM 2: 32 x 32 tiles for products too small to fill a GPU with larger
// ones; TM 4: 64 x 64; TM 8: 128 x 128 for large products). With GEMV (M <= 8 rows, B contiguous along k, the decode case):
// 64 threads per output column split K and reduce through shared memory.
#include "common.glsl"

#ifdef GEMV
#define MAX_M 8u
#define COLS 4u
layout(local_size_x = 256) in;
shared float red[MAX_M][256];
// A (in0) and B (in1) as 16-byte words: each weight row is streamed once.
layout(std430, binding = 1) readonly buffer In0v { uvec4 a4[]; };
layout(std430, binding = 2) readonly buffer In1v { uvec4 b4[]; };

void main()
{
    uint M = P(0), N = P(1), K = P(2);
    uint tid = gl_LocalInvocationID.x, lane = tid % 64u;
    bool vec = P(12) != 0u && ((A_OFF | B_OFF) & 3u) == 0u;
    for (uint z = gl_WorkGroupID.y; z < P(3); z += gl_NumWorkGroups.y) {
        for (uint n0 = gl_WorkGroupID.x * COLS; n0 < N; n0 += gl_NumWorkGroups.x * COLS) {
            uint n = n0 + tid / 64u;
            float acc[MAX_M];
            for (uint m = 0u; m < MAX_M; m++) acc[m] = 0.0;
            if (n < N) {
                uint bcol = B_OFF + z * P(5) + n * P(10);
                uint arow = A_OFF + z * P(4);
                if (vec) {
                    for (uint k4 = lane; k4 < K / 4u; k4 += 64u) {
                        vec4 w = uintBitsToFloat(b4[bcol / 4u + k4]);
                        for (uint m = 0u; m < M; m++)
                            acc[m] += dot(uintBitsToFloat(a4[(arow + m * P(7)) / 4u + k4]), w);
                    }
                } else {
                    for (uint k = lane; k < K; k += 64u) {
                        float w = in1(bcol + k);
                        for (uint m = 0u; m < M; m++) acc[m] += in0(arow + m * P(7) + k * P(8)) * w;
                    }
                }
            }
            for (uint m = 0u; m < M; m++) red[m][tid] = acc[m];
            barrier();
            for (uint s = 32u; s > 0u; s >>= 1) {
                if (lane < s)
                    for (uint m = 0u; m < M; m++) red[m][tid] += red[m][tid + s];
                barrier();
            }
            if (lane < M && n < N) {
                float y = red[lane][tid - lane];
                if (P(11) != 0u) y += in2(C_OFF + n);
                o[O_OFF + z * P(6) + lane * N + n] = y;
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

void main()
{
    uint M = P(0), N = P(1), K = P(2);
    uint tid = gl_LocalInvocationID.x, tx = tid % 16u, ty = tid / 16u;
    bool b_kcontig = P(9) == 1u;
    for (uint z = gl_WorkGroupID.z; z < P(3); z += gl_NumWorkGroups.z) {
        for (uint tm = gl_WorkGroupID.y * BM; tm < M; tm += gl_NumWorkGroups.y * BM) {
            for (uint tn = gl_WorkGroupID.x * BM; tn < N; tn += gl_NumWorkGroups.x * BM) {
                float acc[TM][TM];
                for (uint i = 0u; i < TM; i++)
                    for (uint j = 0u; j < TM; j++) acc[i][j] = 0.0;
                uint a0 = A_OFF + z * P(4), b0 = B_OFF + z * P(5);
                for (uint k0 = 0u; k0 < K; k0 += BK) {
                    // Consecutive threads walk the contiguous dim of each operand.
                    for (uint r = 0u; r < LOADS; r++) {
                        uint e = tid + 256u * r;
                        uint row = e / BK, kk = e % BK;
                        uint gm = tm + row, gk = k0 + kk;
                        As[kk][row] = gm < M && gk < K ? in0(a0 + gm * P(7) + gk * P(8)) : 0.0;
                        uint nn = b_kcontig ? e / BK : e % BM;
                        kk = b_kcontig ? e % BK : e / BM;
                        uint gn = tn + nn;
                        gk = k0 + kk;
                        Bs[kk][nn] = gn < N && gk < K ? in1(b0 + gk * P(9) + gn * P(10)) : 0.0;
                    }
                    barrier();
                    for (uint kk = 0u; kk < BK; kk++) {
                        float av[TM], bv[TM];
                        for (uint i = 0u; i < TM; i++) av[i] = As[kk][ty + 16u * i];
                        for (uint j = 0u; j < TM; j++) bv[j] = Bs[kk][tx + 16u * j];
                        for (uint i = 0u; i < TM; i++)
                            for (uint j = 0u; j < TM; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                    }
                    barrier();
                }
                for (uint i = 0u; i < TM; i++) {
                    uint gm = tm + ty + 16u * i;
                    if (gm >= M) continue;
                    for (uint j = 0u; j < TM; j++) {
                        uint gn = tn + tx + 16u * j;
                        if (gn >= N) continue;
                        float y = acc[i][j];
                        if (P(11) != 0u) y += in2(C_OFF + gn);
                        o[O_OFF + z * P(6) + gm * N + gn] = y;
                    }
                }
            }
        }
    }
}
#endif

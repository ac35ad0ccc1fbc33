#version 450
// C[z][m, n] = sum_k A[z][m, k] B[z][n, k] (+ bias[n]) for f32 A and B that
// are both contiguous along k (a linear's x and w[N, K]), f32 accumulate.
// Same parameter words as matmul.comp: P(0) M, P(1) N, P(2) K, P(3) batches,
// P(4..6) batch strides of A, B, C, P(7) A row stride, P(10) B row stride,
// P(11) bias present, P(14) bias stride; and P(18) splits of K, P(19) k per
// split (a multiple of BK). P(12): row strides, batch strides and K are
// multiples of 4 (loads are 16-byte pieces when the offsets are too).
// P(15) bit 2: a fused linear's residual (dense, like C) is added to C: in3,
// or after a K split in4 (binding 4 then holds the scratch).
//
// Tiles of 64 x 64 outputs over 128 threads, each thread 8 x 4 of them:
// rows ty * 8 + i and columns tx * 4 + j. Shared tiles are k-major, so a
// thread reads its 8-row and 4-column pieces as three 16-byte words for 32
// products (shared-memory reads, not the FMAs, bound a 4 x 4 thread), and
// the next k tile is loaded into registers while the current one is
// multiplied.
//
// Split K (P(18) > 1): workgroup z' = z * splits + s covers k in
// [s * P(19), (s + 1) * P(19)) and writes its partial tile to scratch
// (binding 4) at ((z * splits + s) * M + m) * N + n; -DREDUCE then sums the
// splits in order, adds the bias and writes C (the same sums every replay).
#define IN3_WRITABLE
#include "common.glsl"
#extension GL_EXT_control_flow_attributes : require

#ifdef REDUCE
layout(local_size_x = 256) in;
void main()
{
    uint M = P(0), N = P(1), S = P(18);
    uint per = M * N, total = P(3) * per;
    for (uint i = gl_GlobalInvocationID.x; i < total; i += GRID_THREADS) {
        uint z = i / per, e = i % per, n = e % N;
        float y = 0.0;
        for (uint s = 0u; s < S; s++) y += uintBitsToFloat(d[(z * S + s) * per + e]);
        if (P(11) != 0u) y += in2(C_OFF + n * P(14));
        if ((P(15) & 4u) != 0u) y += in4(E_OFF + z * P(6) + e); // the residual, moved to binding 5
        o[O_OFF + z * P(6) + e] = y;
    }
}
#else

// Each of THREADS threads holds TR x TC outputs: rows ty * TR + i, columns
// tx * TC + j of the BM x BM tile.
#define TR 8
#define TC 4
#define BM 64
#define THREADS (BM / TR * (BM / TC))
#define BK 16
// 16-byte pieces of one operand's tile per thread: BM rows x BK / 4.
#define PIECES (BM * BK / 4 / THREADS)
#define LDS (BM + 4)
layout(local_size_x = THREADS) in;
shared vec4 As4[BK * LDS / 4];
shared vec4 Bs4[BK * LDS / 4];
layout(std430, binding = 1) readonly buffer In0v { uvec4 a4[]; };
layout(std430, binding = 2) readonly buffer In1v { uvec4 b4[]; };

// This thread's pieces of the k tile at k0 into registers (zeros past the
// edges): piece e of a tile is row e / (BK / 4), k piece e % (BK / 4).
void load_tile(out vec4 ra[PIECES], out vec4 rb[PIECES], uint tid, uint tm, uint tn, uint k0, uint k_hi, uint M,
               uint N, uint a0, uint b0, bool vec)
{
    [[unroll]] for (uint r = 0u; r < PIECES; r++) {
        uint e = tid + THREADS * r, row = e / (BK / 4u), kk = k0 + (e % (BK / 4u)) * 4u;
        uint gm = tm + row, gn = tn + row;
        ra[r] = vec4(0.0);
        rb[r] = vec4(0.0);
        if (vec) {
            if (gm < M && kk < k_hi) ra[r] = uintBitsToFloat(a4[(a0 + gm * P(7) + kk) / 4u]);
            if (gn < N && kk < k_hi) rb[r] = uintBitsToFloat(b4[(b0 + gn * P(10) + kk) / 4u]);
        } else {
            [[unroll]] for (uint c = 0u; c < 4u; c++) {
                if (gm < M && kk + c < k_hi) ra[r][c] = in0(a0 + gm * P(7) + kk + c);
                if (gn < N && kk + c < k_hi) rb[r][c] = in1(b0 + gn * P(10) + kk + c);
            }
        }
    }
}

void main()
{
    uint M = P(0), N = P(1), K = P(2), S = P(18), kper = P(19);
    uint tid = gl_LocalInvocationID.x, tx = tid % (BM / TC), ty = tid / (BM / TC);
    bool vec = P(12) != 0u && ((A_OFF | B_OFF) & 3u) == 0u;
    for (uint zs = gl_WorkGroupID.z; zs < P(3) * S; zs += gl_NumWorkGroups.z) {
        uint z = zs / S, s = zs % S;
        uint k_lo = s * kper, k_hi = min(K, k_lo + kper);
        uint a0 = A_OFF + z * P(4), b0 = B_OFF + z * P(5);
        for (uint tm = gl_WorkGroupID.y * BM; tm < M; tm += gl_NumWorkGroups.y * BM) {
            for (uint tn = gl_WorkGroupID.x * BM; tn < N; tn += gl_NumWorkGroups.x * BM) {
                float acc[TR][TC];
                [[unroll]] for (uint i = 0u; i < TR; i++)
                    [[unroll]] for (uint j = 0u; j < TC; j++) acc[i][j] = 0.0;
                vec4 ra[PIECES], rb[PIECES];
                uint k0 = k_lo;
                load_tile(ra, rb, tid, tm, tn, k0, k_hi, M, N, a0, b0, vec);
                for (; k0 < k_hi; k0 += BK) {
                    // Registers -> shared, transposed to k-major.
                    [[unroll]] for (uint r = 0u; r < PIECES; r++) {
                        uint e = tid + THREADS * r, row = e / (BK / 4u), kq = (e % (BK / 4u)) * 4u;
                        [[unroll]] for (uint c = 0u; c < 4u; c++) {
                            uint at = (kq + c) * LDS + row;
                            As4[at / 4u][at % 4u] = ra[r][c];
                            Bs4[at / 4u][at % 4u] = rb[r][c];
                        }
                    }
                    barrier();
                    // The next tile's loads are in flight during the products.
                    if (k0 + BK < k_hi) load_tile(ra, rb, tid, tm, tn, k0 + BK, k_hi, M, N, a0, b0, vec);
                    [[unroll]] for (uint kk = 0u; kk < BK; kk++) {
                        // This thread's TR rows as TR / 4 words, its TC columns as one.
                        vec4 av[TR / 4];
                        [[unroll]] for (uint q = 0u; q < TR / 4; q++) av[q] = As4[(kk * LDS + ty * TR) / 4u + q];
                        vec4 bv = Bs4[(kk * LDS + tx * TC) / 4u];
                        [[unroll]] for (uint j = 0u; j < TC; j++)
                            [[unroll]] for (uint i = 0u; i < 4u; i++)
                                [[unroll]] for (uint q = 0u; q < TR / 4; q++)
                                    acc[4u * q + i][j] = fma(av[q][i], bv[j], acc[4u * q + i][j]);
                    }
                    barrier();
                }
                [[unroll]] for (uint i = 0u; i < TR; i++) {
                    uint gm = tm + ty * TR + i;
                    if (gm >= M) continue;
                    [[unroll]] for (uint j = 0u; j < TC; j++) {
                        uint gn = tn + tx * TC + j;
                        if (gn >= N) continue;
                        float y = acc[i][j];
                        if (S > 1u) {
                            d[(zs * M + gm) * N + gn] = floatBitsToUint(y);
                        } else {
                            if (P(11) != 0u) y += in2(C_OFF + gn * P(14));
                            if ((P(15) & 4u) != 0u) y += in3(D_OFF + z * P(6) + gm * N + gn);
                            o[O_OFF + z * P(6) + gm * N + gn] = y;
                        }
                    }
                }
            }
        }
    }
}
#endif

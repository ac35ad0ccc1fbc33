#version 450
// C[z][m, n] = sum_k A[z][m, k] B[z][n, k] (+ bias[n]) for f32 A and B that
// are both contiguous along k (a linear's x and w[N, K]), f32 accumulate.
// Same parameter words as matmul.comp: P(0) M, P(1) N, P(2) K, P(3) batches,
// P(4..6) batch strides of A, B, C, P(7) A row stride, P(10) B row stride,
// P(11) bias present, P(14) bias stride; and P(18) splits of K, P(19) k per
// split (a multiple of BK). P(12): row strides, batch strides and K are
// multiples of 4 (loads are 16-byte pieces when the offsets are too).
//
// Tiles of BM x BM outputs (BM = 16 TM) over 256 threads, each thread TM x TM
// of them: rows {ty * 4 + i, BM / 2 + ty * 4 + i} and the same for columns
// (TM 8), or ty * 4 + i (TM 4). Shared tiles are k-major, so a thread reads
// its 4-row and 4-column pieces as single 16-byte words. Each thread loads a
// block of 4 rows x 4 k of one operand (16-byte loads along k), transposes
// it in registers and stores it as 4 words; the next k tile's block is in
// flight while the current tile is multiplied.
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
        o[O_OFF + z * P(6) + e] = y;
    }
}
#else

#ifndef TM
#define TM 4
#endif
#define BM (16 * TM)
// k per shared tile: 32 for 64 x 64 tiles, 16 for 128 x 128, so that each
// operand's tile is 128 blocks of 4 rows x 4 k, one per thread of a half.
#if TM == 4
#define BK 32
#else
#define BK 16
#endif
#define LDS (BM + 4)
layout(local_size_x = 256) in;
shared vec4 As4[BK * LDS / 4];
shared vec4 Bs4[BK * LDS / 4];
layout(std430, binding = 1) readonly buffer In0v { uvec4 a4[]; };
layout(std430, binding = 2) readonly buffer In1v { uvec4 b4[]; };

// Row (or column) of slot i of a thread's TM: pieces of 4 at ty * 4 and,
// for TM 8, BM / 2 further.
uint slot(uint t, uint i)
{
    return (i / 4u) * (BM / 2u) + t * 4u + i % 4u;
}

// A block of the k tile at k0 into registers: rows r0..r0 + 3 (of A for the
// first 128 threads, of B for the others) at k0 + kq .. + 3; zeros past the
// edges.
void load_block(out vec4 v[4], bool isb, uint r0, uint kk, uint lim, uint k_hi, uint base, uint rs, bool vec)
{
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        v[i] = vec4(0.0);
        uint row = r0 + i;
        if (row >= lim) continue;
        if (vec) {
            if (kk < k_hi) v[i] = uintBitsToFloat(isb ? b4[(base + row * rs + kk) / 4u] : a4[(base + row * rs + kk) / 4u]);
        } else {
            [[unroll]] for (uint c = 0u; c < 4u; c++)
                if (kk + c < k_hi) v[i][c] = isb ? in1(base + row * rs + kk + c) : in0(base + row * rs + kk + c);
        }
    }
}

void main()
{
    uint M = P(0), N = P(1), K = P(2), S = P(18), kper = P(19);
    uint tid = gl_LocalInvocationID.x, tx = tid % 16u, ty = tid / 16u;
    bool vec = P(12) != 0u && ((A_OFF | B_OFF) & 3u) == 0u;
    // This thread's block: rows rg * 4 .. + 3 of its operand at k piece kq
    // (consecutive threads take consecutive row groups: conflict-free stores).
    bool isb = tid >= 128u;
    uint blk = tid % 128u, rg = blk % (BM / 4u), kq = (blk / (BM / 4u)) * 4u;
    for (uint zs = gl_WorkGroupID.z; zs < P(3) * S; zs += gl_NumWorkGroups.z) {
        uint z = zs / S, s = zs % S;
        uint k_lo = s * kper, k_hi = min(K, k_lo + kper);
        uint base = isb ? B_OFF + z * P(5) : A_OFF + z * P(4), rs = isb ? P(10) : P(7);
        for (uint tm = gl_WorkGroupID.y * BM; tm < M; tm += gl_NumWorkGroups.y * BM) {
            for (uint tn = gl_WorkGroupID.x * BM; tn < N; tn += gl_NumWorkGroups.x * BM) {
                float acc[TM][TM];
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    [[unroll]] for (uint j = 0u; j < TM; j++) acc[i][j] = 0.0;
                uint r0 = (isb ? tn : tm) + rg * 4u, lim = isb ? N : M;
                vec4 v[4];
                load_block(v, isb, r0, k_lo + kq, lim, k_hi, base, rs, vec);
                for (uint k0 = k_lo; k0 < k_hi; k0 += BK) {
                    // Registers -> shared, transposed to k-major: column c of
                    // the block is k row kq + c.
                    [[unroll]] for (uint c = 0u; c < 4u; c++) {
                        vec4 t = vec4(v[0][c], v[1][c], v[2][c], v[3][c]);
                        uint at = ((kq + c) * LDS + rg * 4u) / 4u;
                        if (isb) Bs4[at] = t;
                        else As4[at] = t;
                    }
                    barrier();
                    // The next tile's loads are in flight during the products.
                    if (k0 + BK < k_hi) load_block(v, isb, r0, k0 + BK + kq, lim, k_hi, base, rs, vec);
                    [[unroll]] for (uint kk = 0u; kk < BK; kk++) {
                        vec4 av[TM / 4], bv[TM / 4];
                        [[unroll]] for (uint q = 0u; q < TM / 4u; q++) {
                            av[q] = As4[(kk * LDS + q * (BM / 2u) + ty * 4u) / 4u];
                            bv[q] = Bs4[(kk * LDS + q * (BM / 2u) + tx * 4u) / 4u];
                        }
                        [[unroll]] for (uint i = 0u; i < TM; i++)
                            [[unroll]] for (uint j = 0u; j < TM; j++)
                                acc[i][j] = fma(av[i / 4u][i % 4u], bv[j / 4u][j % 4u], acc[i][j]);
                    }
                    barrier();
                }
                [[unroll]] for (uint i = 0u; i < TM; i++) {
                    uint gm = tm + slot(ty, i);
                    if (gm >= M) continue;
                    [[unroll]] for (uint j = 0u; j < TM; j++) {
                        uint gn = tn + slot(tx, j);
                        if (gn >= N) continue;
                        float y = acc[i][j];
                        if (S > 1u) {
                            d[(zs * M + gm) * N + gn] = floatBitsToUint(y);
                        } else {
                            if (P(11) != 0u) y += in2(C_OFF + gn * P(14));
                            o[O_OFF + z * P(6) + gm * N + gn] = y;
                        }
                    }
                }
            }
        }
    }
}
#endif

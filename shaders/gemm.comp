#version 450
// C[z][m, n] = sum_k A[z][m, k] B[z][n, k] for f32 A and B that are both
// contiguous along k (a linear's x and w[N, K]), f32 accumulate, with the
// fused linear's forms (PORTA_OP_LINEAR_FUSED, see matmul.comp): the RMSNorm
// of the A rows (its scale in4 folded into A's k, 1 / rms applied to the
// finished dot products), bias, SwiGLU and a residual (in3).
// Same parameter words as matmul.comp: P(0) M, P(1) N, P(2) K, P(3) batches,
// P(4..6) batch strides of A, B, C, P(7) A row stride, P(10) B row stride,
// P(11) bias present, P(13) Nout (N, or N / 2 with SwiGLU), P(14) bias
// stride, P(15) fused flags, PF(16) eps, P(17) norm scale stride; and P(18)
// splits of K, P(19) k per split (a multiple of BK). P(12): row strides,
// batch strides and K are multiples of 4 (loads are 16-byte pieces when the
// offsets are too).
//
// Tiles of BM x BM dot products (BM = 16 TM) over 256 threads, each thread TM
// x TM of them: rows {ty * 4 + i, BM / 2 + ty * 4 + i} and the same for
// columns (TM 8), or ty * 4 + i (TM 4). Shared tiles are k-major, so a thread
// reads its 4-row and 4-column pieces as single 16-byte words. Each thread
// loads a block of 4 rows x 4 k of one operand (16-byte loads along k),
// transposes it in registers and stores it as 4 words; the next k tile's
// block is in flight while the current tile is multiplied. With SwiGLU a
// tile covers BM / 2 outputs: in every 4 tile columns, 2 gate rows and their
// 2 value rows Nout further, so a thread holds both of each of its outputs.
//
// Split K (P(18) > 1): workgroup z' = z * splits + s covers k in
// [s * P(19), (s + 1) * P(19)) and writes its dot products to scratch
// (binding 8) at (z' * M + m) * N + n (n the weight row), and with the norm
// its rows' sums of squares at SS + z' * M + m (SS = batches * splits * M *
// N); -DREDUCE then sums the splits in order and finishes each output (the
// same sums every replay).
#define SCRATCH
#include "common.glsl"
#extension GL_EXT_control_flow_attributes : require

#define FL_NORM 1u
#define FL_SWIGLU 2u
#define FL_RES 4u
#define FL_SCALE 8u

float silu(float x) { return x / (1.0 + exp(-x)); }

// Output (z, m, col) from its dot products y (and with SwiGLU the value
// row's y2) and the row's 1 / rms (1 without the norm).
void finish(uint z, uint m, uint col, float y, float y2, float inv)
{
    uint Nout = P(13), flags = P(15);
    bool swiglu = (flags & FL_SWIGLU) != 0u;
    y *= inv;
    y2 *= inv;
    if (P(11) != 0u) {
        y += in2(C_OFF + col * P(14));
        if (swiglu) y2 += in2(C_OFF + (col + Nout) * P(14));
    }
    if (swiglu) y = silu(y) * y2;
    uint at = z * P(6) + m * Nout + col;
    if ((flags & FL_RES) != 0u) y += in3(D_OFF + at);
    o[O_OFF + at] = y;
}

#ifdef REDUCE
layout(local_size_x = 256) in;
void main()
{
    uint M = P(0), N = P(1), K = P(2), Nout = P(13), S = P(18), flags = P(15);
    bool swiglu = (flags & FL_SWIGLU) != 0u, norm = (flags & FL_NORM) != 0u;
    uint per = M * Nout, total = P(3) * per, ss0 = P(3) * S * M * N;
    for (uint i = gl_GlobalInvocationID.x; i < total; i += GRID_THREADS) {
        uint z = i / per, e = i % per, m = e / Nout, col = e % Nout;
        float y = 0.0, y2 = 0.0, q = 0.0;
        for (uint s = 0u; s < S; s++) {
            uint r = ((z * S + s) * M + m) * N;
            y += uintBitsToFloat(sc[r + col]);
            if (swiglu) y2 += uintBitsToFloat(sc[r + col + Nout]);
            if (norm) q += uintBitsToFloat(sc[ss0 + (z * S + s) * M + m]);
        }
        finish(z, m, col, y, y2, norm ? inversesqrt(q / float(K) + PF(16)) : 1.0);
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
// Partial sums of squares of the A rows: [k piece group][row].
shared float ssq[BK / 4 * BM];
layout(std430, binding = 1) readonly buffer In0v { uvec4 a4[]; };
layout(std430, binding = 2) readonly buffer In1v { uvec4 b4[]; };

// Row (or column) of slot i of a thread's TM: pieces of 4 at ty * 4 and,
// for TM 8, BM / 2 further.
uint slot(uint t, uint i)
{
    return (i / 4u) * (BM / 2u) + t * 4u + i % 4u;
}

// Weight row of tile column nn of the tile at tn (its first output column),
// or ~0u past the end: tn + nn, or with SwiGLU gate rows 2 (nn / 4) +
// nn % 2 past tn and, for nn % 4 >= 2, their value rows Nout further.
uint weight_row(uint tn, uint nn, bool swiglu, uint N, uint Nout)
{
    if (!swiglu) return tn + nn < N ? tn + nn : ~0u;
    uint c = tn + (nn / 4u) * 2u + nn % 2u;
    return c < Nout ? c + (nn % 4u >= 2u ? Nout : 0u) : ~0u;
}

// A block of the k tile into registers: rows row[0..3] (~0u: none) of A or
// B at kk .. kk + 3, zeros past the edges. A rows also add their squares to
// ss and take the norm scale.
void load_block(out vec4 v[4], inout float ss[4], bool isb, uint row[4], uint kk, uint k_hi, uint base, uint rs,
                bool vec, bool scale)
{
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        v[i] = vec4(0.0);
        if (row[i] == ~0u) continue;
        uint at = base + row[i] * rs + kk;
        if (vec) {
            if (kk < k_hi) v[i] = uintBitsToFloat(isb ? b4[at / 4u] : a4[at / 4u]);
        } else {
            [[unroll]] for (uint c = 0u; c < 4u; c++)
                if (kk + c < k_hi) v[i][c] = isb ? in1(at + c) : in0(at + c);
        }
    }
    if (isb) return;
    [[unroll]] for (uint i = 0u; i < 4u; i++) ss[i] += dot(v[i], v[i]);
    if (scale) {
        vec4 g = vec4(0.0);
        [[unroll]] for (uint c = 0u; c < 4u; c++)
            if (kk + c < k_hi) g[c] = in4(E_OFF + (kk + c) * P(17));
        [[unroll]] for (uint i = 0u; i < 4u; i++) v[i] *= g;
    }
}

void main()
{
    uint M = P(0), N = P(1), K = P(2), Nout = P(13), S = P(18), kper = P(19), flags = P(15);
    bool swiglu = (flags & FL_SWIGLU) != 0u, norm = (flags & FL_NORM) != 0u, scale = (flags & FL_SCALE) != 0u;
    uint cols = swiglu ? BM / 2u : BM, ss0 = P(3) * S * M * N;
    uint tid = gl_LocalInvocationID.x, tx = tid % 16u, ty = tid / 16u;
    bool vec = P(12) != 0u && ((A_OFF | B_OFF) & 3u) == 0u;
    // This thread's block: rows rg * 4 .. + 3 of its operand at k piece kq
    // (consecutive threads take consecutive row groups: conflict-free stores).
    bool isb = tid >= 128u;
    uint blk = tid % 128u, rg = blk % (BM / 4u), kg = blk / (BM / 4u), kq = kg * 4u;
    for (uint zs = gl_WorkGroupID.z; zs < P(3) * S; zs += gl_NumWorkGroups.z) {
        uint z = zs / S, s = zs % S;
        uint k_lo = s * kper, k_hi = min(K, k_lo + kper);
        uint base = isb ? B_OFF + z * P(5) : A_OFF + z * P(4), rs = isb ? P(10) : P(7);
        for (uint tm = gl_WorkGroupID.y * BM; tm < M; tm += gl_NumWorkGroups.y * BM) {
            for (uint tn = gl_WorkGroupID.x * cols; tn < Nout; tn += gl_NumWorkGroups.x * cols) {
                float acc[TM][TM];
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    [[unroll]] for (uint j = 0u; j < TM; j++) acc[i][j] = 0.0;
                uint row[4];
                [[unroll]] for (uint i = 0u; i < 4u; i++) {
                    uint r = rg * 4u + i;
                    row[i] = isb ? weight_row(tn, r, swiglu, N, Nout) : (tm + r < M ? tm + r : ~0u);
                }
                float ss[4] = float[4](0.0, 0.0, 0.0, 0.0);
                vec4 v[4];
                load_block(v, ss, isb, row, k_lo + kq, k_hi, base, rs, vec, scale);
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
                    if (k0 + BK < k_hi) load_block(v, ss, isb, row, k0 + BK + kq, k_hi, base, rs, vec, scale);
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
                // Each A row's sum of squares over this workgroup's k: the
                // partial sums of its BK / 4 loading threads.
                float inv[TM];
                [[unroll]] for (uint i = 0u; i < TM; i++) inv[i] = 1.0;
                if (norm) {
                    if (!isb) {
                        [[unroll]] for (uint i = 0u; i < 4u; i++) ssq[kg * BM + rg * 4u + i] = ss[i];
                    }
                    barrier();
                    if (S > 1u) {
                        if (tn == 0u && tid < BM && tm + tid < M) {
                            float q = 0.0;
                            for (uint g = 0u; g < BK / 4u; g++) q += ssq[g * BM + tid];
                            sc[ss0 + zs * M + tm + tid] = floatBitsToUint(q);
                        }
                    } else {
                        [[unroll]] for (uint i = 0u; i < TM; i++) {
                            float q = 0.0;
                            for (uint g = 0u; g < BK / 4u; g++) q += ssq[g * BM + slot(ty, i)];
                            inv[i] = inversesqrt(q / float(K) + PF(16));
                        }
                    }
                    barrier();
                }
                [[unroll]] for (uint i = 0u; i < TM; i++) {
                    uint gm = tm + slot(ty, i);
                    if (gm >= M) continue;
                    [[unroll]] for (uint j = 0u; j < TM; j++) {
                        uint nn = slot(tx, j);
                        if (S > 1u) {
                            uint w = weight_row(tn, nn, swiglu, N, Nout);
                            if (w != ~0u) sc[(zs * M + gm) * N + w] = floatBitsToUint(acc[i][j]);
                        } else if (!swiglu) {
                            if (tn + nn < N) finish(z, gm, tn + nn, acc[i][j], 0.0, inv[i]);
                        } else if (j % 4u < 2u) {
                            // Gate column j, its value column j + 2.
                            uint col = tn + (nn / 4u) * 2u + nn % 2u;
                            if (col < Nout) finish(z, gm, col, acc[i][j], acc[i][(j + 2u) % TM], inv[i]);
                        }
                    }
                }
            }
        }
    }
}
#endif

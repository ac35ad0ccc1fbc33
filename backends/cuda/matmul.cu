/* LINEAR and MATMUL through cuBLAS.
 *
 * cuBLAS is column-major: a row-major R x C matrix with unit column stride is,
 * in memory, its own transpose as a column-major C x R matrix. Each product is
 * therefore computed transposed (out^T = ...), which needs no data movement. */
#include <limits.h>
#include "common.cuh"

/* A row-major R x C operand as cuBLAS sees it: the memory holds X^T (trans 0,
 * unit column stride) or X itself (trans 1, unit row stride), with leading
 * dimension ld. */
typedef struct gemm_operand {
    const float *p;
    int trans;
    int64_t ld;
} gemm_operand;

static int operand(const float *p, int64_t R, int64_t C, int64_t rs, int64_t cs, gemm_operand *o)
{
    o->p = p;
    if (cs == 1) {
        o->trans = 0;
        o->ld = R == 1 ? C : rs;
        return o->ld >= C && o->ld <= INT_MAX;
    }
    if (rs == 1 || R == 1) {
        o->trans = 1;
        o->ld = C == 1 ? R : cs;
        return o->ld >= R && o->ld <= INT_MAX;
    }
    return 0;
}

static int fits_int(int64_t a, int64_t b, int64_t c)
{
    return a > 0 && b > 0 && c > 0 && a <= INT_MAX && b <= INT_MAX && c <= INT_MAX;
}

static __global__ void fill_bias(float *out, int64_t ldo, const float *bias, int64_t bs, int64_t M, int64_t N)
{
    PC_GRID_STRIDE(i, M * N)
    {
        int64_t m = i / N, c = i - m * N;
        out[m * ldo + c] = bias[c * bs];
    }
}

/* Decode-sized products (a few rows) are bound by reading the weights once:
 * one warp per weight row streams it with 16-byte loads and keeps one
 * accumulator per input row; cuBLAS's GEMM kernels leave most of the memory
 * bandwidth unused at these shapes. */
#define GEMV_MAX_ROWS 8
#define GEMV_WARPS 4

template <int MM>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_rows(const float *__restrict__ x, int64_t xrs, const float *__restrict__ w, int64_t wrs,
              const float *__restrict__ bias, int64_t bs, float *__restrict__ out, int64_t ors, int M, int N, int K4)
{
    int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return; /* whole warps leave together */
    const float4 *wr = reinterpret_cast<const float4 *>(w + (int64_t)row * wrs);
    float acc[MM];
#pragma unroll
    for (int m = 0; m < MM; m++) acc[m] = 0.0f;
#pragma unroll 4
    for (int k = lane; k < K4; k += 32) {
        float4 wv = __ldcs(wr + k); /* read once: keep it out of the caches */
#pragma unroll
        for (int m = 0; m < MM; m++) {
            if (m < M) {
                float4 xv = __ldg(reinterpret_cast<const float4 *>(x + m * xrs) + k);
                acc[m] = fmaf(wv.x, xv.x, fmaf(wv.y, xv.y, fmaf(wv.z, xv.z, fmaf(wv.w, xv.w, acc[m]))));
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MM; m++) acc[m] = pc_warp_sum(acc[m]);
    if (lane == 0) {
        float b = bias ? bias[(int64_t)row * bs] : 0.0f;
#pragma unroll
        for (int m = 0; m < MM; m++)
            if (m < M) out[m * ors + row] = acc[m] + b;
    }
}

static int aligned16(const void *p, int64_t stride) { return ((uintptr_t)p & 15u) == 0 && stride % 4 == 0; }

/* Launches the GEMV path when the shapes and alignment allow; 0 when not. */
static int try_gemv(pc_rec *r, const porta_node *n, int64_t M, int64_t N, int64_t K, int64_t xrs, int64_t xcs,
                    int64_t wrs, int64_t wcs, int64_t ors, int64_t ocs)
{
    const float *x = pc_ptr(r, &n->in[0]), *w = pc_ptr(r, &n->in[1]);
    if (M > GEMV_MAX_ROWS || xcs != 1 || wcs != 1 || ocs != 1 || K % 4 || n->in[1].dtype != PORTA_F32 ||
        !aligned16(x, M > 1 ? xrs : 0) || !aligned16(w, wrs))
        return 0;
    const float *bias = pc_has(n, 2) ? pc_ptr(r, &n->in[2]) : NULL;
    int64_t bs = pc_has(n, 2) ? n->in[2].stride[n->in[2].ndim - 1] : 0;
    unsigned grid = (unsigned)((N + GEMV_WARPS - 1) / GEMV_WARPS);
    float *out = pc_ptr(r, &n->out);
    cudaStream_t st = r->be->stream;
    int m = (int)M, nn = (int)N, k4 = (int)(K / 4);
    if (M == 1) gemv_rows<1><<<grid, GEMV_WARPS * 32, 0, st>>>(x, xrs, w, wrs, bias, bs, out, ors, m, nn, k4);
    else if (M == 2) gemv_rows<2><<<grid, GEMV_WARPS * 32, 0, st>>>(x, xrs, w, wrs, bias, bs, out, ors, m, nn, k4);
    else if (M <= 4) gemv_rows<4><<<grid, GEMV_WARPS * 32, 0, st>>>(x, xrs, w, wrs, bias, bs, out, ors, m, nn, k4);
    else gemv_rows<8><<<grid, GEMV_WARPS * 32, 0, st>>>(x, xrs, w, wrs, bias, bs, out, ors, m, nn, k4);
    return 1;
}

/* out[M,N] = x[M,K] w[N,K]^T (+ bias): out^T = w x^T, i.e. A = w, B = x. */
static porta_status linear(pc_rec *r, const porta_node *n)
{
    int64_t M, K, N, K2, Mo, No, xrs, xcs, wrs, wcs, ors, ocs;
    if (!pc_matrix(&n->in[0], &M, &K, &xrs, &xcs) || !pc_matrix(&n->in[1], &N, &K2, &wrs, &wcs) ||
        !pc_matrix(&n->out, &Mo, &No, &ors, &ocs))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: linear operands do not collapse to matrices", n->name);
    if (K != K2 || Mo != M || No != N || !fits_int(M, N, K))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: linear x[%lld,%lld] w[%lld,%lld] -> out[%lld,%lld]", n->name,
                       (long long)M, (long long)K, (long long)N, (long long)K2, (long long)Mo, (long long)No);
    gemm_operand a, b;
    if (!operand(pc_ptr(r, &n->in[1]), N, K, wrs, wcs, &a) || !operand(pc_ptr(r, &n->in[0]), M, K, xrs, xcs, &b) ||
        !(ocs == 1 && ors >= N && ors <= INT_MAX))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: linear operand strides cuBLAS cannot take", n->name);
    int bias = pc_has(n, 2);
    if (bias && porta_ref_numel(&n->in[2]) != N)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: bias has %lld elements, want %lld", n->name,
                       (long long)porta_ref_numel(&n->in[2]), (long long)N);
    if (r->dry) return PORTA_OK;
    if (try_gemv(r, n, M, N, K, xrs, xcs, wrs, wcs, ors, ocs)) {
        PC_CK(r->be, cudaGetLastError());
        return PORTA_OK;
    }

    float *out = pc_ptr(r, &n->out);
    if (bias) {
        const porta_ref *bref = &n->in[2];
        fill_bias<<<pc_blocks(M * N, PC_THREADS), PC_THREADS, 0, r->be->stream>>>(
            out, ors, pc_ptr(r, bref), bref->stride[bref->ndim - 1], M, N);
        PC_CK(r->be, cudaGetLastError());
    }
    const float one = 1.0f, zero = 0.0f;
    PC_BLAS(r->be, cublasSgemm(r->be->blas, a.trans ? CUBLAS_OP_N : CUBLAS_OP_T, b.trans ? CUBLAS_OP_T : CUBLAS_OP_N,
                               (int)N, (int)M, (int)K, &one, a.p, (int)a.ld, b.p, (int)b.ld, bias ? &one : &zero, out,
                               (int)ors));
    return PORTA_OK;
}

/* out[Bt,M,N] = a[Bt,M,K] b[Bt or 1,K,N]: out^T = b^T a^T, i.e. A = b, B = a. */
static porta_status matmul(pc_rec *r, const porta_node *n)
{
    const porta_ref *ra = &n->in[0], *rb = &n->in[1], *ro = &n->out;
    if (ra->ndim < 2 || rb->ndim < 2 || ro->ndim != ra->ndim)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: matmul wants matrices", n->name);
    int da = ra->ndim, db = rb->ndim, dout = ro->ndim;
    int64_t M = ra->shape[da - 2], K = ra->shape[da - 1], N = rb->shape[db - 1];
    if (rb->shape[db - 2] != K || ro->shape[dout - 2] != M || ro->shape[dout - 1] != N || !fits_int(M, N, K))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: matmul [%lld,%lld] x [%lld,%lld]", n->name, (long long)M,
                       (long long)K, (long long)rb->shape[db - 2], (long long)N);
    int64_t bt, sa, bb, sb, bo, so;
    if (!pc_collapse(ra, 0, da - 2, &bt, &sa) || !pc_collapse(rb, 0, db - 2, &bb, &sb) ||
        !pc_collapse(ro, 0, dout - 2, &bo, &so))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: matmul batch dims are not evenly strided", n->name);
    if (bo != bt || (bb != bt && bb != 1) || bt > INT_MAX)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: matmul batches a %lld, b %lld, out %lld", n->name, (long long)bt,
                       (long long)bb, (long long)bo);
    if (bb == 1) sb = 0;
    gemm_operand a, b;
    int64_t ors = ro->stride[dout - 2], ocs = ro->stride[dout - 1];
    if (M == 1) ors = N;
    if (N == 1) ocs = 1;
    if (!operand(pc_ptr(r, rb), K, N, rb->stride[db - 2], rb->stride[db - 1], &a) ||
        !operand(pc_ptr(r, ra), M, K, ra->stride[da - 2], ra->stride[da - 1], &b) ||
        !(ocs == 1 && ors >= N && ors <= INT_MAX))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: matmul operand strides cuBLAS cannot take", n->name);
    if (r->dry) return PORTA_OK;

    const float one = 1.0f, zero = 0.0f;
    PC_BLAS(r->be, cublasSgemmStridedBatched(r->be->blas, a.trans ? CUBLAS_OP_T : CUBLAS_OP_N,
                                             b.trans ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, a.p,
                                             (int)a.ld, sb, b.p, (int)b.ld, sa, &zero, pc_ptr(r, ro), (int)ors, so,
                                             (int)bt));
    return PORTA_OK;
}

extern "C" porta_status pc_matmul(pc_rec *r, const porta_node *n)
{
    return n->op == PORTA_OP_LINEAR ? linear(r, n) : matmul(r, n);
}

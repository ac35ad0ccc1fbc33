/* LINEAR and MATMUL through cuBLAS.
 *
 * cuBLAS is column-major: a row-major R x C matrix with unit column stride is,
 * in memory, its own transpose as a column-major C x R matrix. Each product is
 * therefore computed transposed (out^T = ...), which needs no data movement. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
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

/* Decode-sized products (a few rows) are bound by reading the weights once.
 * A block of GV_WARPS warps takes GV_R weight rows and splits K between its
 * threads: each thread streams its 16-byte pieces of the GV_R rows (each
 * weight byte is read once, past the caches) and reuses every x load for
 * GV_R rows, so the x rows (L1 hits) cost 1/GV_R of a load per weight load.
 * Each warp's GV_R x MM partial sums are reduce-scattered (each exchange
 * carries a value another lane needs: GV_R MM - 1 shuffles, not 5 per value)
 * and meet across warps in shared memory. The same kernel carries the fused
 * forms: an RMSNorm of x (its sum of squares gathered from the x loads the
 * product makes anyway, the scale folded into x), bias, SwiGLU (the block's
 * rows are gate rows j and value rows j + F) and a residual.
 *
 * Weights no kernel of the program writes are read before the
 * programmatic-launch wait (a.prefetch): a thread's first two pieces of each
 * row (all of them for K up to 1024) are in flight while the kernel before
 * it drains, and only the x loads (L2 hits) wait for it. The threads that
 * finish outputs load their bias there too, and their residual right after
 * the wait. */
#define GEMV_MAX_ROWS 8
#define GV_WARPS 4
#define GV_R 4

typedef struct gemv_args {
    const float *x, *w, *bias, *res, *g; /* bias, res, g may be NULL */
    float *out;
    int64_t xrs, wrs, bs;
    int M, N2, Nout, K4;                 /* N2 weight rows; Nout = N2 or N2 / 2 (swiglu) */
    int norm, swiglu;
    int prefetch;                        /* w may be read before the wait */
    int bias_early;                      /* so may the bias */
    float eps;
} gemv_args;

static __device__ __forceinline__ float gv_dot(float4 a, float4 b, float acc)
{
    return fmaf(a.x, b.x, fmaf(a.y, b.y, fmaf(a.z, b.z, fmaf(a.w, b.w, acc))));
}

static __device__ __forceinline__ float gv_silu(float x) { return x / (1.0f + expf(-x)); }

/* Sums N values (a power of two up to 32) over the warp's lanes: lane l ends
 * with the total of value l / (32 / N). At each halving a lane keeps half of
 * its values and receives its partner's partial sums of that half. */
template <int H, int N>
static __device__ __forceinline__ void gv_halve(float (&v)[N], int lane)
{
    if constexpr (H >= 1) {
        constexpr int o = 16 * H * 2 / N; /* the lane bit that picks the half kept */
        const bool up = (lane & o) != 0;
#pragma unroll
        for (int i = 0; i < H; i++) {
            float send = up ? v[i] : v[i + H], keep = up ? v[i + H] : v[i];
            v[i] = keep + __shfl_xor_sync(PC_FULL_MASK, send, o);
        }
        gv_halve<H / 2, N>(v, lane);
    }
}

template <int N>
static __device__ __forceinline__ float gv_reduce_scatter(float (&v)[N], int lane)
{
    gv_halve<N / 2, N>(v, lane);
    float r = v[0];
#pragma unroll
    for (int o = 16 / N; o >= 1; o /= 2) r += __shfl_xor_sync(PC_FULL_MASK, r, o);
    return r;
}

/* Piece k of each of the block's weight rows (zeros past K or N). */
static __device__ __forceinline__ void gv_load_w(float4 (&wv)[GV_R], const float4 *w, const int (&row)[GV_R],
                                                 int64_t wr4, int k, int K4)
{
#pragma unroll
    for (int r = 0; r < GV_R; r++)
        wv[r] = row[r] >= 0 && k < K4 ? __ldcs(w + row[r] * wr4 + k) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

template <int MM>
static __global__ void __launch_bounds__(GV_WARPS * 32) gemv_fused(gemv_args a)
{
    extern __shared__ float sh[]; /* [GV_WARPS][GV_R * MM + MM]: partial sums, sums of squares */
    const int RW = GV_R * MM + MM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    /* The block's weight rows: GV_R consecutive ones, or GV_R / 2 gate rows
     * and the value rows F further. */
    int row[GV_R];
#pragma unroll
    for (int r = 0; r < GV_R; r++) {
        if (a.swiglu) {
            int j = blockIdx.x * (GV_R / 2) + (r % (GV_R / 2));
            row[r] = j < a.Nout ? j + (r < GV_R / 2 ? 0 : a.Nout) : -1;
        } else {
            int j = blockIdx.x * GV_R + r;
            row[r] = j < a.N2 ? j : -1;
        }
    }
    const int64_t xr4 = a.xrs / 4, wr4 = a.wrs / 4;
    const float4 *w4 = reinterpret_cast<const float4 *>(a.w);
    const int T = GV_WARPS * 32;
    float4 wa[GV_R], wb[GV_R];
    /* One thread per output (row slot ro, input row mo) finishes it; its
     * bias and residual are loaded now, so that no memory round trip is
     * left between the block's sums and its stores. */
    const int outs = a.swiglu ? GV_R / 2 : GV_R, ro = tid / MM, mo = tid % MM;
    int col = -1;
    if (tid < outs * MM && mo < a.M) {
        col = blockIdx.x * outs + ro;
        if (col >= a.Nout) col = -1;
    }
    float b1 = 0.0f, b2 = 0.0f, rv = 0.0f;
    auto load_bias = [&]() {
        if (col < 0 || !a.bias) return;
        b1 = a.bias[(int64_t)col * a.bs];
        if (a.swiglu) b2 = a.bias[(int64_t)(col + a.Nout) * a.bs];
    };
    if (a.prefetch) {
        gv_load_w(wa, w4, row, wr4, tid, a.K4);
        gv_load_w(wb, w4, row, wr4, tid + T, a.K4);
    }
    if (a.bias_early) load_bias();
    pc_dep_wait();
    if (!a.prefetch) {
        gv_load_w(wa, w4, row, wr4, tid, a.K4);
        gv_load_w(wb, w4, row, wr4, tid + T, a.K4);
    }
    if (!a.bias_early) load_bias();
    if (col >= 0 && a.res) rv = a.res[(int64_t)mo * a.Nout + col];
    float acc[GV_R * MM], ss[MM];
#pragma unroll
    for (int m = 0; m < MM; m++) {
        ss[m] = 0.0f;
#pragma unroll
        for (int r = 0; r < GV_R; r++) acc[r * MM + m] = 0.0f;
    }
    const float4 *x4 = reinterpret_cast<const float4 *>(a.x), *g4 = reinterpret_cast<const float4 *>(a.g);
    /* Pieces tid and tid + T come from wa and wb; later ones (K past 1024)
     * are loaded two at a time into them. */
    auto piece = [&](const float4(&wv)[GV_R], int k) {
        float4 gv = g4 ? __ldg(g4 + k) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
#pragma unroll
        for (int m = 0; m < MM; m++) {
            if (m >= a.M) break;
            float4 xv = __ldg(x4 + m * xr4 + k);
            if (a.norm) {
                ss[m] = gv_dot(xv, xv, ss[m]);
                xv = make_float4(xv.x * gv.x, xv.y * gv.y, xv.z * gv.z, xv.w * gv.w);
            }
#pragma unroll
            for (int r = 0; r < GV_R; r++) acc[r * MM + m] = gv_dot(wv[r], xv, acc[r * MM + m]);
        }
    };
    for (int k = tid; k < a.K4; k += 2 * T) {
        if (k != tid) {
            gv_load_w(wa, w4, row, wr4, k, a.K4);
            gv_load_w(wb, w4, row, wr4, k + T, a.K4);
        }
        piece(wa, k);
        if (k + T < a.K4) piece(wb, k + T);
    }
    /* Lane l holds value l / (32 / N) summed over the warp; the first lane
     * of each group writes it. */
    {
        const int N = GV_R * MM, per = 32 / N;
        float v = gv_reduce_scatter<GV_R * MM>(acc, lane);
        if (lane % per == 0) sh[warp * RW + lane / per] = v;
    }
    if (a.norm) {
        const int per = 32 / MM;
        float v = gv_reduce_scatter<MM>(ss, lane);
        if (lane % per == 0) sh[warp * RW + GV_R * MM + lane / per] = v;
    }
    __syncthreads();
    if (col < 0) return;
    float y = 0.0f, y2 = 0.0f, q = 0.0f;
    for (int w = 0; w < GV_WARPS; w++) {
        y += sh[w * RW + ro * MM + mo];
        if (a.swiglu) y2 += sh[w * RW + (ro + GV_R / 2) * MM + mo];
        if (a.norm) q += sh[w * RW + GV_R * MM + mo];
    }
    if (a.norm) {
        float inv = 1.0f / sqrtf(q / (float)(4 * a.K4) + a.eps);
        y *= inv;
        y2 *= inv;
    }
    if (a.bias) {
        y += b1;
        y2 += b2;
    }
    if (a.swiglu) y = gv_silu(y) * y2;
    a.out[(int64_t)mo * a.Nout + col] = y + rv;
}

static int aligned16(const void *p, int64_t stride) { return ((uintptr_t)p & 15u) == 0 && stride % 4 == 0; }

/* The GEMV path when the shapes and alignment allow; 0 when not. Output and
 * residual are dense [M, Nout]. */
static int gemv_ok(const float *x, int64_t M, int64_t K, int64_t xrs, int64_t xcs, const porta_ref *w, int64_t wrs,
                   int64_t wcs, const float *wp, const float *g, int64_t gs)
{
    return M <= GEMV_MAX_ROWS && xcs == 1 && wcs == 1 && K % 4 == 0 && K / 4 <= INT_MAX && w->dtype == PORTA_F32 &&
           aligned16(x, M > 1 ? xrs : 0) && aligned16(wp, wrs) && (!g || aligned16(g, 0)) && (!g || gs == 1);
}

static porta_status launch_gemv(pc_rec *r, const gemv_args *a)
{
    unsigned grid = (unsigned)(a->swiglu ? (a->Nout + GV_R / 2 - 1) / (GV_R / 2) : (a->N2 + GV_R - 1) / GV_R);
#define GV_SMEM(MM) (GV_WARPS * (GV_R * (MM) + (MM)) * sizeof(float))
    if (a->M == 1) PC_CK(r->be, pc_launch(r, gemv_fused<1>, dim3(grid), dim3(GV_WARPS * 32), GV_SMEM(1), *a));
    else if (a->M == 2) PC_CK(r->be, pc_launch(r, gemv_fused<2>, dim3(grid), dim3(GV_WARPS * 32), GV_SMEM(2), *a));
    else if (a->M <= 4) PC_CK(r->be, pc_launch(r, gemv_fused<4>, dim3(grid), dim3(GV_WARPS * 32), GV_SMEM(4), *a));
    else PC_CK(r->be, pc_launch(r, gemv_fused<8>, dim3(grid), dim3(GV_WARPS * 32), GV_SMEM(8), *a));
#undef GV_SMEM
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

/* The GEMM path's pieces around cuBLAS. */
static __global__ void fill_res_bias(float *out, const float *res, const float *bias, int64_t bs, int64_t M,
                                     int64_t N)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, M * N)
    {
        int64_t c = i % N;
        out[i] = (res ? res[i] : 0.0f) + (bias ? bias[c * bs] : 0.0f);
    }
}

static __global__ void swiglu_res(float *out, const float *y, const float *res, int64_t M, int64_t F)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, M * F)
    {
        int64_t m = i / F, f = i - m * F;
        float v = gv_silu(y[m * 2 * F + f]) * y[m * 2 * F + F + f];
        out[i] = res ? v + res[i] : v;
    }
}

/* ---- tuned GEMMs ----------------------------------------------------------
 * Products of more than GEMV_MAX_ROWS rows go to cuBLASLt. Each distinct
 * shape is tuned once, in the dry pass before capture: the heuristic's
 * candidates (tile shapes, split-K) are timed on scratch matrices of that
 * shape and the fastest is kept in the backend. At the 256-row decode and
 * 448-row prefill shapes of a 768-wide model, cuBLAS' default choice leaves
 * most multiprocessors idle (a 256 x 768 output is 12 tiles of 128 x 128).
 * The emulated build, and any shape without a tuned choice, use cublasSgemm. */
#define PC_TUNE_CANDIDATES 16
#define PC_TUNE_RUNS 3

typedef struct pc_gemm_shape {
    int ta, tb, m, n, k, lda, ldb, ldc, beta;
} pc_gemm_shape;

#ifndef PORTA_SIMT
#include <cublasLt.h>

/* Descriptors of one shape for cuBLASLt. */
typedef struct lt_desc {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
} lt_desc;

static void lt_desc_free(lt_desc *d)
{
    if (d->op) cublasLtMatmulDescDestroy(d->op);
    if (d->a) cublasLtMatrixLayoutDestroy(d->a);
    if (d->b) cublasLtMatrixLayoutDestroy(d->b);
    if (d->c) cublasLtMatrixLayoutDestroy(d->c);
}

static cublasStatus_t lt_desc_make(const pc_backend *be, const pc_gemm_shape *s, lt_desc *d)
{
    memset(d, 0, sizeof *d);
    cublasOperation_t ta = s->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = s->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st = cublasLtMatmulDescCreate(&d->op, be->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                                 CUDA_R_32F);
    if (!st) st = cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (!st) st = cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (!st) st = cublasLtMatrixLayoutCreate(&d->a, CUDA_R_32F, s->ta ? s->k : s->m, s->ta ? s->m : s->k, s->lda);
    if (!st) st = cublasLtMatrixLayoutCreate(&d->b, CUDA_R_32F, s->tb ? s->n : s->k, s->tb ? s->k : s->n, s->ldb);
    if (!st) st = cublasLtMatrixLayoutCreate(&d->c, CUDA_R_32F, s->m, s->n, s->ldc);
    return st;
}

typedef struct pc_tuned {
    pc_gemm_shape s;
    lt_desc d;           /* made once, when the shape is tuned */
    cublasLtMatmulAlgo_t algo;
    int ok;              /* 0: keep cublasSgemm for this shape */
} pc_tuned;

struct pc_tuner {
    cublasLtHandle_t lt;
    int n, cap;
    pc_tuned *t;
};

extern "C" void pc_tuner_free(pc_backend *be)
{
    pc_tuner *t = be->tuner;
    if (!t) return;
    for (int i = 0; i < t->n; i++) lt_desc_free(&t->t[i].d);
    if (t->lt) cublasLtDestroy(t->lt);
    free(t->t);
    free(t);
    be->tuner = NULL;
}

static int same_shape(const pc_gemm_shape *a, const pc_gemm_shape *b) { return !memcmp(a, b, sizeof *a); }

static const pc_tuned *find_tuned(const pc_backend *be, const pc_gemm_shape *s)
{
    const pc_tuner *t = be->tuner;
    for (int i = 0; t && i < t->n; i++)
        if (same_shape(&t->t[i].s, s)) return &t->t[i];
    return NULL;
}

/* Times the heuristic's candidates for s on scratch matrices; records the
 * fastest (or, when none runs, that s stays with cublasSgemm). */
static porta_status tune(pc_backend *be, const pc_gemm_shape *s)
{
    if (find_tuned(be, s)) return PORTA_OK;
    pc_tuner *t = be->tuner;
    if (!t) {
        if (!(t = (pc_tuner *)calloc(1, sizeof *t))) return be->host->fail(PORTA_ERR_NOMEM, "cuda: no host memory");
        be->tuner = t;
        PC_BLAS(be, cublasLtCreate(&t->lt));
    }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        pc_tuned *nt = (pc_tuned *)realloc(t->t, (size_t)cap * sizeof *nt);
        if (!nt) return be->host->fail(PORTA_ERR_NOMEM, "cuda: no host memory");
        t->t = nt;
        t->cap = cap;
    }
    pc_tuned *e = &t->t[t->n];
    memset(e, 0, sizeof *e);
    e->s = *s;
    lt_desc &d = e->d;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res[PC_TUNE_CANDIDATES];
    int nres = 0;
    size_t ws = be->blas_ws_bytes;
    cublasStatus_t bs = lt_desc_make(be, s, &d);
    if (!bs) bs = cublasLtMatmulPreferenceCreate(&pref);
    if (!bs)
        bs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (!bs)
        bs = cublasLtMatmulAlgoGetHeuristic(t->lt, d.op, d.a, d.b, d.c, d.c, pref, PC_TUNE_CANDIDATES, res, &nres);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    float *A = NULL, *B = NULL, *C = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    size_t na = (size_t)s->lda * (s->ta ? s->m : s->k), nb = (size_t)s->ldb * (s->tb ? s->k : s->n),
           nc = (size_t)s->ldc * s->n;
    cudaError_t ce = bs ? cudaSuccess : cudaMalloc((void **)&A, na * sizeof(float));
    if (!bs && !ce) ce = cudaMalloc((void **)&B, nb * sizeof(float));
    if (!bs && !ce) ce = cudaMalloc((void **)&C, nc * sizeof(float));
    if (!bs && !ce) ce = cudaMemsetAsync(A, 0, na * sizeof(float), be->stream);
    if (!bs && !ce) ce = cudaMemsetAsync(B, 0, nb * sizeof(float), be->stream);
    if (!bs && !ce) ce = cudaMemsetAsync(C, 0, nc * sizeof(float), be->stream);
    if (!bs && !ce) ce = cudaEventCreate(&e0);
    if (!bs && !ce) ce = cudaEventCreate(&e1);
    float best = 0.0f;
    const float one = 1.0f, zero = 0.0f;
    for (int i = 0; !bs && !ce && i < nres; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        /* One untimed run, then the best of PC_TUNE_RUNS. */
        float fastest = 0.0f;
        for (int run = 0; run <= PC_TUNE_RUNS && !ce; run++) {
            ce = cudaEventRecord(e0, be->stream);
            cublasStatus_t ms = cublasLtMatmul(t->lt, d.op, &one, A, d.a, B, d.b, s->beta ? &one : &zero, C, d.c, C,
                                               d.c, &res[i].algo, be->blas_ws, ws, be->stream);
            if (!ce) ce = cudaEventRecord(e1, be->stream);
            if (!ce) ce = cudaEventSynchronize(e1);
            float ms_t = 0.0f;
            if (!ce) ce = cudaEventElapsedTime(&ms_t, e0, e1);
            if (ms != CUBLAS_STATUS_SUCCESS) {
                fastest = 0.0f;
                break;
            }
            if (run > 0 && (fastest == 0.0f || ms_t < fastest)) fastest = ms_t;
        }
        if (fastest > 0.0f && (!e->ok || fastest < best)) {
            best = fastest;
            e->algo = res[i].algo;
            e->ok = 1;
        }
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    if (ce) {
        lt_desc_free(&d);
        return pc_cuda_fail(be, ce, "tuning a GEMM");
    }
    t->n++; /* a shape cuBLASLt refused stays recorded, with ok 0 */
    return PORTA_OK;
}
#else
extern "C" void pc_tuner_free(pc_backend *be) { be->tuner = NULL; }
static porta_status tune(pc_backend *, const pc_gemm_shape *) { return PORTA_OK; }
#endif

/* C[m,n] (column-major, ldc) = op(A) op(B) (+ C when beta). Dry pass: tunes. */
static porta_status pc_sgemm(pc_rec *r, int ta, int tb, int m, int n, int k, const float *A, int lda, const float *B,
                             int ldb, int beta, float *C, int ldc)
{
    pc_gemm_shape s = { ta, tb, m, n, k, lda, ldb, ldc, beta };
    if (r->dry) return tune(r->be, &s);
    const float one = 1.0f, zero = 0.0f;
#ifndef PORTA_SIMT
    const pc_tuned *e = find_tuned(r->be, &s);
    if (e && e->ok) {
        const lt_desc *d = &e->d;
        PC_BLAS(r->be, cublasLtMatmul(r->be->tuner->lt, d->op, &one, A, d->a, B, d->b, beta ? &one : &zero, C, d->c,
                                      C, d->c, &e->algo, r->be->blas_ws, r->be->blas_ws_bytes, r->be->stream));
        return PORTA_OK;
    }
#endif
    PC_BLAS(r->be, cublasSgemm(r->be->blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
                               &one, A, lda, B, ldb, beta ? &one : &zero, C, ldc));
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

/* LINEAR, and LINEAR_FUSED (a plain linear is one with none of the fused
 * parts): out[M,N] = x[M,K] w[N,K]^T (+ bias), out^T = w x^T, i.e. A = w,
 * B = x. The GEMV kernel does everything for a few rows; otherwise norm into
 * scratch, cuBLAS, then SwiGLU, with the residual and bias folded into the
 * GEMM's accumulator (beta = 1) or the SwiGLU kernel. */
static porta_status linear(pc_rec *r, const porta_node *n)
{
    int64_t M, K, N2, K2, Mo, No, xrs, xcs, wrs, wcs, ors, ocs;
    if (!pc_matrix(&n->in[0], &M, &K, &xrs, &xcs) || !pc_matrix(&n->in[1], &N2, &K2, &wrs, &wcs) ||
        !pc_matrix(&n->out, &Mo, &No, &ors, &ocs))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: linear operands do not collapse to matrices", n->name);
    int fused = n->op == PORTA_OP_LINEAR_FUSED;
    int swiglu = fused && n->p.lin.swiglu, norm = fused && n->p.lin.norm;
    int64_t Nout = swiglu ? N2 / 2 : N2;
    int bias = pc_has(n, 2), res = pc_has(n, 3), scale = pc_has(n, 4);
    if (K != K2 || Mo != M || No != Nout || (swiglu && N2 % 2) || !fits_int(M, N2, K) || !porta_ref_dense(&n->out) ||
        (bias && porta_ref_numel(&n->in[2]) != N2) || (res && porta_ref_numel(&n->in[3]) != M * Nout) ||
        (res && !porta_ref_dense(&n->in[3])) || (scale && porta_ref_numel(&n->in[4]) != K))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: linear x[%lld,%lld] w[%lld,%lld] -> out[%lld,%lld] (dense)",
                       n->name, (long long)M, (long long)K, (long long)N2, (long long)K2, (long long)Mo, (long long)No);
    const float *xp = pc_ptr(r, &n->in[0]), *wp = pc_ptr(r, &n->in[1]);
    const float *bp = bias ? pc_ptr(r, &n->in[2]) : NULL, *rp = res ? pc_ptr(r, &n->in[3]) : NULL;
    const float *gp = scale ? pc_ptr(r, &n->in[4]) : NULL;
    int64_t bs = bias ? n->in[2].stride[n->in[2].ndim - 1] : 0, gs = scale ? n->in[4].stride[n->in[4].ndim - 1] : 0;
    float *out = pc_ptr(r, &n->out);
    if (gemv_ok(xp, M, K, xrs, xcs, &n->in[1], wrs, wcs, wp, gp, gs)) {
        if (r->dry) return PORTA_OK;
        gemv_args g = { xp, wp, bp, rp, gp, out, xrs, wrs, bs, (int)M, (int)N2, (int)Nout, (int)(K / 4), norm, swiglu,
                        pc_stable(r, &n->in[1]), bias && pc_stable(r, &n->in[2]), norm ? n->p.lin.eps : 0.0f };
        return launch_gemv(r, &g);
    }
    /* GEMM path: scratch holds the normed x [M, K], then y [M, N2] for SwiGLU. */
    gemm_operand a, b;
    int64_t need = (norm ? M * K : 0) + (swiglu ? M * N2 : 0);
    if (!operand(wp, N2, K, wrs, wcs, &a) || (!norm && !operand(xp, M, K, xrs, xcs, &b)))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: linear operand strides cuBLAS cannot take", n->name);
    const float *fill_res = swiglu ? NULL : rp;
    int beta = bias || fill_res;
    if (r->dry) {
        if (need > r->scratch_elems) r->scratch_elems = need;
        /* The GEMM as it will run: on the normed copy when norm, into y. */
        return pc_sgemm(r, !a.trans, norm ? 0 : b.trans, (int)N2, (int)M, (int)K, a.p, (int)a.ld, NULL,
                        norm ? (int)K : (int)b.ld, beta, NULL, (int)N2);
    }
    float *xn = r->scratch, *y = swiglu ? r->scratch + (norm ? M * K : 0) : out;
    if (norm) {
        porta_status st = pc_rmsnorm_rows(r, xn, xp, M, K, xrs, xcs, gp, gs, n->p.lin.eps);
        if (st) return st;
        operand(xn, M, K, K, 1, &b);
    }
    if (beta) {
        PC_CK(r->be, pc_launch(r, fill_res_bias, dim3(pc_blocks(M * N2, PC_THREADS)), dim3(PC_THREADS), 0, y,
                               fill_res, bp, bs, M, N2));
        PC_CK(r->be, cudaGetLastError());
    }
    porta_status gs2 = pc_sgemm(r, !a.trans, b.trans, (int)N2, (int)M, (int)K, a.p, (int)a.ld, b.p, (int)b.ld, beta,
                                y, (int)N2);
    if (gs2) return gs2;
    if (swiglu) {
        PC_CK(r->be, pc_launch(r, swiglu_res, dim3(pc_blocks(M * Nout, PC_THREADS)), dim3(PC_THREADS), 0, out, y, rp,
                               M, Nout));
        PC_CK(r->be, cudaGetLastError());
    }
    return PORTA_OK;
}

extern "C" porta_status pc_matmul(pc_rec *r, const porta_node *n)
{
    return n->op == PORTA_OP_MATMUL ? matmul(r, n) : linear(r, n);
}

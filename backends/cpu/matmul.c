/* LINEAR and MATMUL: OpenBLAS sgemm for large products, AVX2 row kernels for
 * the small-M products of decode steps, which are bound by streaming the
 * weights once from memory and parallelise over output columns. */
#include <cblas.h>
#include <string.h>

#include "cpu.h"
#include "simd.h"

/* Rows up to which the AVX2 kernels beat sgemm. The NT kernel streams the
 * weights once per pair of rows, so it wins while the product is bound by
 * reading them (decode steps); past 16 rows OpenBLAS's packed, cache-blocked
 * sgemm wins or ties at every size measured (17x32x32 to 448x3072x768, one
 * core), so no M*N*K floor is needed. The NN kernel re-reads its right operand per row and wins for one
 * or two rows only. */
#define NT_MAX_M 16
#define NN_MAX_M 2

/* OpenBLAS runs sgemm on one thread up to M*N*K = 65536 * 4 (its
 * GEMM_MULTITHREAD_THRESHOLD); above that its threads need the cores that
 * the pool's workers would be spinning on. */
#define BLAS_THREADED_MNK (65536 * 4)

/* Output columns (weight rows) per task of the NT kernel. */
#define NT_ROWS 8

static void blas_prepare(const cpu_exec *ex, int64_t M, int64_t N, int64_t K)
{
    if (M * N * K > BLAS_THREADED_MNK) cpu_pool_park(ex->pool);
}

/* ---- c = a w^T (+ bias), w [N, K] ---------------------------------------- */

/* A load of the K tail under the lane mask m in scope. */
#define MLOAD(p) _mm256_maskload_ps((p), m)

/* One x row against eight weight rows: out[0..7]. */
static void nt_1x8(const float *x, const float *w, int64_t K, float *out)
{
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    int64_t k = 0;
#define NT_STEP(LOADX, LOADW)                                     \
    do {                                                          \
        __m256 xv = LOADX(x + k);                                 \
        c0 = _mm256_fmadd_ps(xv, LOADW(w + 0 * K + k), c0);       \
        c1 = _mm256_fmadd_ps(xv, LOADW(w + 1 * K + k), c1);       \
        c2 = _mm256_fmadd_ps(xv, LOADW(w + 2 * K + k), c2);       \
        c3 = _mm256_fmadd_ps(xv, LOADW(w + 3 * K + k), c3);       \
        c4 = _mm256_fmadd_ps(xv, LOADW(w + 4 * K + k), c4);       \
        c5 = _mm256_fmadd_ps(xv, LOADW(w + 5 * K + k), c5);       \
        c6 = _mm256_fmadd_ps(xv, LOADW(w + 6 * K + k), c6);       \
        c7 = _mm256_fmadd_ps(xv, LOADW(w + 7 * K + k), c7);       \
    } while (0)
    for (; k + 8 <= K; k += 8) NT_STEP(_mm256_loadu_ps, _mm256_loadu_ps);
    if (k < K) {
        __m256i m = cpu_tail_mask(K - k);
        NT_STEP(MLOAD, MLOAD);
    }
#undef NT_STEP
    _mm256_storeu_ps(out, cpu_hsum8(c0, c1, c2, c3, c4, c5, c6, c7));
}

/* Two x rows against four weight rows: out[r * ldo + 0..3]. */
static void nt_2x4(const float *x, int64_t ldx, const float *w, int64_t K, float *out, int64_t ldo)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    const float *y = x + ldx;
    int64_t k = 0;
#define NT_STEP(LOAD)                                             \
    do {                                                          \
        __m256 xv = LOAD(x + k), yv = LOAD(y + k), wv;            \
        wv = LOAD(w + 0 * K + k);                                 \
        a0 = _mm256_fmadd_ps(xv, wv, a0);                         \
        b0 = _mm256_fmadd_ps(yv, wv, b0);                         \
        wv = LOAD(w + 1 * K + k);                                 \
        a1 = _mm256_fmadd_ps(xv, wv, a1);                         \
        b1 = _mm256_fmadd_ps(yv, wv, b1);                         \
        wv = LOAD(w + 2 * K + k);                                 \
        a2 = _mm256_fmadd_ps(xv, wv, a2);                         \
        b2 = _mm256_fmadd_ps(yv, wv, b2);                         \
        wv = LOAD(w + 3 * K + k);                                 \
        a3 = _mm256_fmadd_ps(xv, wv, a3);                         \
        b3 = _mm256_fmadd_ps(yv, wv, b3);                         \
    } while (0)
    for (; k + 8 <= K; k += 8) NT_STEP(_mm256_loadu_ps);
    if (k < K) {
        __m256i m = cpu_tail_mask(K - k);
        NT_STEP(MLOAD);
    }
#undef NT_STEP
    _mm_storeu_ps(out, cpu_hsum4(a0, a1, a2, a3));
    _mm_storeu_ps(out + ldo, cpu_hsum4(b0, b1, b2, b3));
}

static float dot(const float *x, const float *w, int64_t K)
{
    __m256 c = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) c = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(w + k), c);
    if (k < K) {
        __m256i m = cpu_tail_mask(K - k);
        c = _mm256_fmadd_ps(_mm256_maskload_ps(x + k, m), _mm256_maskload_ps(w + k, m), c);
    }
    return cpu_hsum(c);
}

typedef struct nt_job {
    int64_t M, N, K;
    const float *a, *w, *bias;
    float *c;
} nt_job;

static void nt_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const nt_job *j = ctx;
    const int64_t M = j->M, N = j->N, K = j->K;
    for (int64_t blk = begin; blk < end; blk++) {
        const int64_t n0 = blk * NT_ROWS;
        const float *w = j->w + n0 * K;
        float *c = j->c + n0;
        if (n0 + NT_ROWS <= N) {
            /* Each half of the block stays in L1/L2 while every x pair
             * passes over it, so the weights leave memory once. */
            for (int h = 0; h < NT_ROWS; h += 4)
                for (int64_t m = 0; m + 2 <= M; m += 2)
                    nt_2x4(j->a + m * K, K, w + h * K, K, c + m * N + h, N);
            if (M & 1) nt_1x8(j->a + (M - 1) * K, w, K, c + (M - 1) * N);
        } else {
            for (int64_t m = 0; m < M; m++)
                for (int64_t r = 0; n0 + r < N; r++) c[m * N + r] = dot(j->a + m * K, w + r * K, K);
        }
        if (j->bias) {
            int64_t nr = N - n0 < NT_ROWS ? N - n0 : NT_ROWS;
            for (int64_t m = 0; m < M; m++)
                for (int64_t r = 0; r < nr; r++) c[m * N + r] += j->bias[n0 + r];
        }
    }
}

void cpu_gemm_nt(const cpu_exec *ex, int64_t M, int64_t N, int64_t K, const float *a,
                 const float *w, const float *bias, float *c, int use_blas)
{
    if (use_blas > 0 || (use_blas < 0 && M > NT_MAX_M)) {
        if (bias) {
            for (int64_t m = 0; m < M; m++) memcpy(c + m * N, bias, (size_t)N * sizeof *c);
        }
        blas_prepare(ex, M, N, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, a, (int)K,
                    w, (int)K, bias ? 1.0f : 0.0f, c, (int)N);
        return;
    }
    nt_job j = {M, N, K, a, w, bias, c};
    int64_t blocks = (N + NT_ROWS - 1) / NT_ROWS;
    /* A task should carry at least ~64 KiB of weights, or the hand-out of
     * chunks costs more than the work. */
    int64_t grain = (16384 + NT_ROWS * K - 1) / (NT_ROWS * K);
    cpu_pool_run(ex->pool, blocks, grain, nt_task, &j);
}

/* ---- c = a b, b [K, N] ---------------------------------------------------- */

/* Output columns per task of the NN kernel: four vectors. */
#define NN_COLS 32

typedef struct nn_job {
    int64_t M, N, K;
    const float *a, *b;
    float *c;
} nn_job;

static void nn_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const nn_job *j = ctx;
    const int64_t N = j->N, K = j->K, nblk = (N + NN_COLS - 1) / NN_COLS;
    for (int64_t t = begin; t < end; t++) {
        const int64_t m = t / nblk, n0 = (t % nblk) * NN_COLS;
        const float *a = j->a + m * K;
        float *c = j->c + m * N + n0;
        if (n0 + NN_COLS <= N) {
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            for (int64_t k = 0; k < K; k++) {
                const float *b = j->b + k * N + n0;
                __m256 av = _mm256_broadcast_ss(a + k);
                c0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b), c0);
                c1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 8), c1);
                c2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 16), c2);
                c3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 24), c3);
            }
            _mm256_storeu_ps(c, c0);
            _mm256_storeu_ps(c + 8, c1);
            _mm256_storeu_ps(c + 16, c2);
            _mm256_storeu_ps(c + 24, c3);
        } else {
            for (int64_t v = 0; n0 + v < N; v += 8) {
                __m256i msk = cpu_tail_mask(N - n0 - v);
                __m256 acc = _mm256_setzero_ps();
                for (int64_t k = 0; k < K; k++)
                    acc = _mm256_fmadd_ps(_mm256_broadcast_ss(a + k),
                                          _mm256_maskload_ps(j->b + k * N + n0 + v, msk), acc);
                _mm256_maskstore_ps(c + v, msk, acc);
            }
        }
    }
}

void cpu_gemm_nn(const cpu_exec *ex, int64_t M, int64_t N, int64_t K, const float *a,
                 const float *b, float *c, int use_blas)
{
    if (use_blas > 0 || (use_blas < 0 && M > NN_MAX_M)) {
        blas_prepare(ex, M, N, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, a, (int)K,
                    b, (int)N, 0.0f, c, (int)N);
        return;
    }
    nn_job j = {M, N, K, a, b, c};
    int64_t tasks = M * ((N + NN_COLS - 1) / NN_COLS);
    int64_t grain = (16384 + NN_COLS * K - 1) / (NN_COLS * K);
    cpu_pool_run(ex->pool, tasks, grain, nn_task, &j);
}

/* ---- ops ------------------------------------------------------------------ */

void cpu_linear(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *x = &nd->n.in[0], *w = &nd->n.in[1];
    const int64_t K = x->shape[x->ndim - 1], N = w->shape[0];
    cpu_gemm_nt(ex, porta_ref_numel(x) / K, N, K, nd->in[0], nd->in[1], nd->in[2], nd->out, -1);
}

void cpu_matmul(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *a = &nd->n.in[0], *b = &nd->n.in[1];
    const int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    const int64_t bt = porta_ref_numel(a) / (M * K), bt_b = porta_ref_numel(b) / (K * N);
    if (bt_b == 1) {
        /* A shared right operand: the batch folds into M. */
        cpu_gemm_nn(ex, bt * M, N, K, nd->in[0], nd->in[1], nd->out, -1);
        return;
    }
    for (int64_t i = 0; i < bt; i++)
        cpu_gemm_nn(ex, M, N, K, nd->in[0] + i * M * K, nd->in[1] + i * K * N, nd->out + i * M * N, -1);
}

/* ADD, MUL (second operand repeating over the first's leading dims), SILU and
 * SWIGLU, vectorised with SLEEF's exp. */
#include <sleef.h>

#include "cpu.h"
#include "simd.h"

/* Elements per task: large enough to amortise the hand-out, small enough to
 * split a 768-wide row batch across threads. */
#define ELT_TASK 4096

typedef struct bin_job {
    const float *a, *b;
    float *out;
    int64_t n, nb;
    int mul;
} bin_job;

static void bin_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const bin_job *j = ctx;
    int64_t i = begin * ELT_TASK, stop = end * ELT_TASK < j->n ? end * ELT_TASK : j->n;
    while (i < stop) {
        /* One run of b without wrapping. */
        int64_t jb = i % j->nb, len = j->nb - jb < stop - i ? j->nb - jb : stop - i;
        const float *a = j->a + i, *b = j->b + jb;
        float *o = j->out + i;
        int64_t k = 0;
        if (j->mul) {
            for (; k + 8 <= len; k += 8)
                _mm256_storeu_ps(o + k, _mm256_mul_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k)));
            for (; k < len; k++) o[k] = a[k] * b[k];
        } else {
            for (; k + 8 <= len; k += 8)
                _mm256_storeu_ps(o + k, _mm256_add_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k)));
            for (; k < len; k++) o[k] = a[k] + b[k];
        }
        i += len;
    }
}

static void binary(const cpu_exec *ex, const cpu_node *nd, int mul)
{
    bin_job j = {nd->in[0], nd->in[1], nd->out, porta_ref_numel(&nd->n.in[0]),
                 porta_ref_numel(&nd->n.in[1]), mul};
    cpu_pool_run(ex->pool, (j.n + ELT_TASK - 1) / ELT_TASK, 16, bin_task, &j);
}

void cpu_add(const cpu_exec *ex, const cpu_node *nd) { binary(ex, nd, 0); }
void cpu_mul(const cpu_exec *ex, const cpu_node *nd) { binary(ex, nd, 1); }

static inline __m256 silu8(__m256 x)
{
    __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* out[i] = silu(gate[i]) * up[i] (up == NULL: silu alone) for i < len. */
static void silu_run(const float *gate, const float *up, float *out, int64_t len)
{
    int64_t k = 0;
    for (; k + 8 <= len; k += 8) {
        __m256 y = silu8(_mm256_loadu_ps(gate + k));
        if (up) y = _mm256_mul_ps(y, _mm256_loadu_ps(up + k));
        _mm256_storeu_ps(out + k, y);
    }
    if (k < len) {
        __m256i m = cpu_tail_mask(len - k);
        __m256 y = silu8(_mm256_maskload_ps(gate + k, m));
        if (up) y = _mm256_mul_ps(y, _mm256_maskload_ps(up + k, m));
        _mm256_maskstore_ps(out + k, m, y);
    }
}

typedef struct silu_job {
    const float *x;
    float *out;
    int64_t n, F; /* silu: n elements; swiglu: n rows of 2F -> F */
} silu_job;

static void silu_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const silu_job *j = ctx;
    int64_t b = begin * ELT_TASK, e = end * ELT_TASK < j->n ? end * ELT_TASK : j->n;
    silu_run(j->x + b, NULL, j->out + b, e - b);
}

static void swiglu_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const silu_job *j = ctx;
    for (int64_t r = begin; r < end; r++) {
        const float *x = j->x + r * 2 * j->F;
        silu_run(x, x + j->F, j->out + r * j->F, j->F);
    }
}

void cpu_silu(const cpu_exec *ex, const cpu_node *nd)
{
    silu_job j = {nd->in[0], nd->out, porta_ref_numel(&nd->n.in[0]), 0};
    cpu_pool_run(ex->pool, (j.n + ELT_TASK - 1) / ELT_TASK, 4, silu_task, &j);
}

void cpu_swiglu(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *x = &nd->n.in[0];
    const int64_t F = x->shape[x->ndim - 1] / 2;
    silu_job j = {nd->in[0], nd->out, porta_ref_numel(x) / (2 * F), F};
    cpu_pool_run(ex->pool, j.n, (ELT_TASK + F - 1) / F, swiglu_task, &j);
}

/* RMSNORM and LAYERNORM over the last dim, one row per task. */
#include <math.h>

#include "cpu.h"
#include "simd.h"

typedef struct norm_job {
    const float *x, *w, *b;
    float *out;
    int64_t E;
    float eps;
} norm_job;

static float row_sum(const float *x, int64_t E, float shift, int square)
{
    __m256 acc = _mm256_setzero_ps(), s = _mm256_set1_ps(shift);
    int64_t k = 0;
    for (; k + 8 <= E; k += 8) {
        __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + k), s);
        acc = square ? _mm256_fmadd_ps(v, v, acc) : _mm256_add_ps(acc, v);
    }
    if (k < E) {
        __m256i m = cpu_tail_mask(E - k);
        /* Masked-off lanes must contribute zero, so shift only the live ones. */
        __m256 v = _mm256_sub_ps(_mm256_maskload_ps(x + k, m), _mm256_and_ps(s, _mm256_castsi256_ps(m)));
        acc = square ? _mm256_fmadd_ps(v, v, acc) : _mm256_add_ps(acc, v);
    }
    return cpu_hsum(acc);
}

/* out = (x - shift) * r * w + b, w and b optional. */
static void row_apply(const float *x, float *out, int64_t E, float shift, float r, const float *w,
                      const float *b)
{
    const __m256 s = _mm256_set1_ps(shift), rv = _mm256_set1_ps(r);
    int64_t k = 0;
    for (; k + 8 <= E; k += 8) {
        __m256 y = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k), s), rv);
        if (w) y = _mm256_mul_ps(y, _mm256_loadu_ps(w + k));
        if (b) y = _mm256_add_ps(y, _mm256_loadu_ps(b + k));
        _mm256_storeu_ps(out + k, y);
    }
    for (; k < E; k++) {
        float y = (x[k] - shift) * r;
        if (w) y *= w[k];
        if (b) y += b[k];
        out[k] = y;
    }
}

static void rms_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const norm_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        const float *x = j->x + i * j->E;
        float ms = row_sum(x, j->E, 0.0f, 1) / (float)j->E;
        row_apply(x, j->out + i * j->E, j->E, 0.0f, 1.0f / sqrtf(ms + j->eps), j->w, NULL);
    }
}

static void ln_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const norm_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        const float *x = j->x + i * j->E;
        /* Two passes: the variance about the mean does not cancel the way
         * E[x^2] - mean^2 does for rows with a large offset. */
        float mean = row_sum(x, j->E, 0.0f, 0) / (float)j->E;
        float var = row_sum(x, j->E, mean, 1) / (float)j->E;
        row_apply(x, j->out + i * j->E, j->E, mean, 1.0f / sqrtf(var + j->eps), j->w, j->b);
    }
}

static void run_norm(const cpu_exec *ex, const cpu_node *nd, const float *w, const float *b, cpu_task_fn fn)
{
    const porta_ref *x = &nd->n.in[0];
    const int64_t E = x->shape[x->ndim - 1];
    if (E == 0) return;
    norm_job j = {nd->in[0], w, b, nd->out, E, nd->n.p.eps};
    cpu_pool_run(ex->pool, porta_ref_numel(x) / E, (8192 + E - 1) / E, fn, &j);
}

void cpu_rmsnorm(const cpu_exec *ex, const cpu_node *nd) { run_norm(ex, nd, nd->in[1], NULL, rms_task); }
void cpu_layernorm(const cpu_exec *ex, const cpu_node *nd) { run_norm(ex, nd, nd->in[1], nd->in[2], ln_task); }

/* SOFTMAX over the last dim, one row per task, SLEEF exp. */
#include <math.h>
#include <sleef.h>

#include "cpu.h"
#include "simd.h"

typedef struct softmax_job {
    const float *x;
    float *out;
    int64_t E;
} softmax_job;

static void softmax_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const softmax_job *j = ctx;
    const int64_t E = j->E;
    for (int64_t i = begin; i < end; i++) {
        const float *x = j->x + i * E;
        float *o = j->out + i * E;
        __m256 mv = _mm256_set1_ps(-INFINITY);
        int64_t k = 0;
        for (; k + 8 <= E; k += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + k));
        float mx = cpu_hmax(mv);
        for (; k < E; k++) mx = x[k] > mx ? x[k] : mx;
        const __m256 m8 = _mm256_set1_ps(mx);
        __m256 sv = _mm256_setzero_ps();
        for (k = 0; k + 8 <= E; k += 8) {
            __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(x + k), m8));
            _mm256_storeu_ps(o + k, e);
            sv = _mm256_add_ps(sv, e);
        }
        if (k < E) {
            __m256i m = cpu_tail_mask(E - k);
            __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(x + k, m), m8));
            e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
            _mm256_maskstore_ps(o + k, m, e);
            sv = _mm256_add_ps(sv, e);
        }
        const __m256 inv = _mm256_set1_ps(1.0f / cpu_hsum(sv));
        for (k = 0; k + 8 <= E; k += 8) _mm256_storeu_ps(o + k, _mm256_mul_ps(_mm256_loadu_ps(o + k), inv));
        for (; k < E; k++) o[k] *= _mm256_cvtss_f32(inv);
    }
}

void cpu_softmax(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *x = &nd->n.in[0];
    const int64_t E = x->shape[x->ndim - 1];
    if (E == 0) return;
    softmax_job j = {nd->in[0], nd->out, E};
    cpu_pool_run(ex->pool, porta_ref_numel(x) / E, (8192 + E - 1) / E, softmax_task, &j);
}

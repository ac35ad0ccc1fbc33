/* MIXTURE_SAMPLE: the draw of mixture_sample.h on each output element, a
 * block of draws per task (draws are independent: any split gives the same
 * values). */
#include "cpu.h"
#include "mixture_sample.h"

typedef struct sample_job {
    const float *p[4], *key;
    float *out;
    int64_t K, M;
} sample_job;

static void sample_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const sample_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        int64_t o = i % j->M * j->K;
        pmx_rng r = pmx_rng_init(j->key[0], j->key[1], j->key[2], j->key[3], (uint32_t)i);
        j->out[i] = (float)pmx_draw(&r, j->p[0] + o, j->p[1] + o, j->p[2] + o, j->p[3] + o, (int)j->K);
    }
}

void cpu_mixture_sample(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *x = &nd->n.in[0];
    sample_job j = {{nd->in[0], nd->in[1], nd->in[2], nd->in[3]}, nd->in[4], nd->out, x->shape[x->ndim - 1], 0};
    j.M = porta_ref_numel(x) / j.K;
    cpu_pool_run(ex->pool, porta_ref_numel(&nd->n.out), 64, sample_task, &j);
}

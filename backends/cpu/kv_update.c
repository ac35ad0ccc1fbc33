/* KV_APPEND: scatter the step's live rows into the cache at pos[b] + i. */
#include <string.h>

#include "cpu.h"

typedef struct kv_job {
    const cpu_exec *ex;
    const porta_node *n;
    const float *x;
    float *cache;
} kv_job;

static void kv_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const kv_job *j = ctx;
    const porta_ref *x = &j->n->in[0], *c = &j->n->out;
    const int64_t T = x->shape[1], H = x->shape[2], D = x->shape[3], L = c->shape[2];
    for (int64_t r = begin; r < end; r++) {
        const int64_t b = r / T, i = r % T;
        int64_t pos, nb;
        cpu_step_row(j->ex, 1, b, T, &pos, &nb);
        /* Core refuses a step that would overflow; the bound check keeps a
         * stray step block from writing outside the layer. */
        if (i >= nb || pos + i < 0 || pos + i >= L) continue;
        for (int64_t h = 0; h < H; h++) {
            const float *s = j->x + b * x->stride[0] + i * x->stride[1] + h * x->stride[2];
            float *d = j->cache + b * c->stride[0] + h * c->stride[1] + (pos + i) * c->stride[2];
            if (x->stride[3] == 1) {
                memcpy(d, s, (size_t)D * sizeof *d);
            } else {
                for (int64_t k = 0; k < D; k++) d[k] = s[k * x->stride[3]];
            }
        }
    }
}

void cpu_kv_append(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *x = &nd->n.in[0];
    kv_job j = {ex, &nd->n, nd->in[0], nd->out};
    const int64_t HD = x->shape[2] * x->shape[3];
    cpu_pool_run(ex->pool, x->shape[0] * x->shape[1], (8192 + HD - 1) / (HD ? HD : 1), kv_task, &j);
}

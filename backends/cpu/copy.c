/* COPY: a strided view of up to six dims into a dense row-major tensor. */
#include <string.h>

#include "cpu.h"

typedef struct copy_job {
    int nd;                                  /* dims after merging, >= 1 */
    int64_t shape[PORTA_PLAN_MAX_DIMS];
    int64_t stride[PORTA_PLAN_MAX_DIMS];
    const float *src;
    float *dst;
} copy_job;

/* Rows of the innermost dim per task. */
#define COPY_ROW_ELEMS 4096

static void copy_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const copy_job *j = ctx;
    const int64_t inner = j->shape[j->nd - 1], is = j->stride[j->nd - 1];
    for (int64_t r = begin; r < end; r++) {
        int64_t off = 0, rem = r;
        for (int d = j->nd - 2; d >= 0; d--) {
            off += (rem % j->shape[d]) * j->stride[d];
            rem /= j->shape[d];
        }
        const float *s = j->src + off;
        float *o = j->dst + r * inner;
        if (is == 1) {
            memcpy(o, s, (size_t)inner * sizeof *o);
        } else {
            for (int64_t k = 0; k < inner; k++) o[k] = s[k * is];
        }
    }
}

void cpu_copy(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *x = &nd->n.in[0];
    copy_job j = {0, {0}, {0}, nd->in[0], nd->out};
    /* Drop unit dims and merge dims that are contiguous with each other, so
     * that a permuted view walks the fewest, longest runs. */
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (j.nd > 0 && j.stride[j.nd - 1] == x->stride[d] * x->shape[d]) {
            j.shape[j.nd - 1] *= x->shape[d];
            j.stride[j.nd - 1] = x->stride[d];
            continue;
        }
        j.shape[j.nd] = x->shape[d];
        j.stride[j.nd] = x->stride[d];
        j.nd++;
    }
    if (j.nd == 0) {
        j.nd = 1;
        j.shape[0] = 1;
        j.stride[0] = 1;
    }
    const int64_t inner = j.shape[j.nd - 1], rows = porta_ref_numel(x) / (inner ? inner : 1);
    if (inner == 0) return;
    cpu_pool_run(ex->pool, rows, (COPY_ROW_ELEMS + inner - 1) / inner, copy_task, &j);
}

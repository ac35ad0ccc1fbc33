/* KV_APPEND: scatters the step's rows into the cache at pos[b] + i. The
 * positions come from the device step block, so the captured kernel is the
 * same at every step. */
#include "common.cuh"

typedef struct kv_args {
    float *cache;              /* one layer's K or V, [B,H,L,D] */
    const float *x;            /* [B,T,H,D] */
    int64_t cs[4], xs[4];
    int B, T, H, L, D;
    int rows;                  /* step block rows: n[b] is step[rows + b] */
    const int32_t *step;
} kv_args;

static __global__ void kv_append(kv_args a)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, (int64_t)a.B * a.T * a.H * a.D)
    {
        int d = (int)(i % a.D);
        int64_t r = i / a.D;
        int h = (int)(r % a.H);
        r /= a.H;
        int t = (int)(r % a.T);
        int b = (int)(r / a.T);
        int p = a.step[b] + t;
        /* The host refuses steps that overflow; the bound keeps a bad step
         * block from writing outside the cache. */
        if (t >= a.step[a.rows + b] || p >= a.L) continue;
        a.cache[b * a.cs[0] + h * a.cs[1] + (int64_t)p * a.cs[2] + d * a.cs[3]] =
            a.x[b * a.xs[0] + t * a.xs[1] + h * a.xs[2] + d * a.xs[3]];
    }
}

extern "C" porta_status pc_kv_update(pc_rec *r, const porta_node *n)
{
    const porta_ref *x = &n->in[0], *c = &n->out;
    if (x->ndim != 4 || c->ndim != 4 || x->shape[0] > c->shape[0] || x->shape[2] != c->shape[1] ||
        x->shape[3] != c->shape[3] || c->shape[2] > 0x7fffffff || x->shape[1] > 0x7fffffff)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: kv_append x[B,T,H,D] into cache [B,H,L,D]", n->name);
    if (x->shape[0] > r->step_rows)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: kv_append batch %lld exceeds the step block's %d rows", n->name,
                       (long long)x->shape[0], r->step_rows);
    kv_args a;
    a.B = (int)x->shape[0];
    a.T = (int)x->shape[1];
    a.H = (int)x->shape[2];
    a.D = (int)x->shape[3];
    a.L = (int)c->shape[2];
    int64_t total = (int64_t)a.B * a.T * a.H * a.D;
    if (r->dry || total == 0) return PORTA_OK;
    a.cache = pc_ptr(r, c);
    a.x = pc_ptr(r, x);
    for (int i = 0; i < 4; i++) {
        a.cs[i] = c->stride[i];
        a.xs[i] = x->stride[i];
    }
    a.step = r->step;
    a.rows = r->step_rows;
    PC_CK(r->be, pc_launch(r, kv_append, dim3(pc_blocks(total, PC_THREADS)), dim3(PC_THREADS), 0, a));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

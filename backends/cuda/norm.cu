/* RMSNORM and LAYERNORM over the last dim, one warp per row. Both reduce in
 * two passes over the row (statistics, then output) so that layernorm's
 * variance is taken around the mean rather than as E[x^2] - E[x]^2. */
#include "common.cuh"

#define ROWS_PER_BLOCK 8

typedef struct norm_args {
    float *out;
    const float *x, *w, *b;  /* w, b may be NULL */
    int64_t rs, cs, ws, bs;  /* x row and column strides, w and b strides */
    int64_t M, E;
    float eps;
    int layer;               /* nonzero: layernorm */
} norm_args;

static __global__ void norm_rows(norm_args a)
{
    int64_t m = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (m >= a.M) return;
    const float *x = a.x + m * a.rs;
    float *y = a.out + m * a.E;
    float mean = 0.0f;
    if (a.layer) {
        float s = 0.0f;
        for (int64_t e = lane; e < a.E; e += 32) s += x[e * a.cs];
        mean = pc_warp_sum(s) / (float)a.E;
    }
    float ss = 0.0f;
    for (int64_t e = lane; e < a.E; e += 32) {
        float d = x[e * a.cs] - mean;
        ss += d * d;
    }
    float inv = 1.0f / sqrtf(pc_warp_sum(ss) / (float)a.E + a.eps);
    for (int64_t e = lane; e < a.E; e += 32) {
        float v = (x[e * a.cs] - mean) * inv;
        if (a.w) v *= a.w[e * a.ws];
        if (a.b) v += a.b[e * a.bs];
        y[e] = v;
    }
}

static int vector_of(const pc_rec *r, const porta_node *n, int i, int64_t E, const float **p, int64_t *stride)
{
    if (!pc_has(n, i)) {
        *p = NULL;
        *stride = 0;
        return 1;
    }
    const porta_ref *v = &n->in[i];
    *p = pc_ptr(r, v);
    *stride = v->ndim ? v->stride[v->ndim - 1] : 1;
    return porta_ref_numel(v) == E && pc_collapse(v, 0, v->ndim, &E, stride);
}

extern "C" porta_status pc_norm(pc_rec *r, const porta_node *n)
{
    norm_args a;
    int64_t Mo, Eo, ors, ocs;
    if (!pc_matrix(&n->in[0], &a.M, &a.E, &a.rs, &a.cs) || !pc_matrix(&n->out, &Mo, &Eo, &ors, &ocs))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: norm input does not collapse to rows", n->name);
    if (Mo != a.M || Eo != a.E || !porta_ref_dense(&n->out))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: norm [%lld,%lld] -> [%lld,%lld] (dense)", n->name,
                       (long long)a.M, (long long)a.E, (long long)Mo, (long long)Eo);
    a.layer = n->op == PORTA_OP_LAYERNORM;
    if (!vector_of(r, n, 1, a.E, &a.w, &a.ws) || !vector_of(r, n, 2, a.E, &a.b, &a.bs) || (!a.layer && a.b))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: norm weights must be [%lld]", n->name, (long long)a.E);
    int64_t blocks = (a.M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    if (blocks > 0x7fffffff) return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: too many rows", n->name);
    if (r->dry || a.M == 0) return PORTA_OK;
    a.out = pc_ptr(r, &n->out);
    a.x = pc_ptr(r, &n->in[0]);
    a.eps = n->p.eps;
    norm_rows<<<(unsigned)blocks, 32 * ROWS_PER_BLOCK, 0, r->be->stream>>>(a);
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

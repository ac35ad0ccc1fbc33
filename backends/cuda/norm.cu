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

/* Rows of unit stride, 16-byte aligned, E % 4 == 0 and E <= 32 * 4 * NV: each
 * lane loads its float4s once, all before the first reduction. */
#define NV 8
static __global__ void norm_rows_vec(norm_args a)
{
    pc_dep_wait();
    int64_t m = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31, E4 = (int)(a.E / 4);
    if (m >= a.M) return;
    const float4 *x = reinterpret_cast<const float4 *>(a.x + m * a.rs);
    float4 *y = reinterpret_cast<float4 *>(a.out + m * a.E);
    float4 xv[NV];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int e = lane + 32 * i;
        xv[i] = e < E4 ? __ldg(x + e) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        s += xv[i].x + xv[i].y + xv[i].z + xv[i].w;
    }
    float mean = a.layer ? pc_warp_sum(s) / (float)a.E : 0.0f, ss = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        if (lane + 32 * i >= E4) continue;
        float4 d = make_float4(xv[i].x - mean, xv[i].y - mean, xv[i].z - mean, xv[i].w - mean);
        xv[i] = d;
        ss += d.x * d.x + d.y * d.y + d.z * d.z + d.w * d.w;
    }
    float inv = 1.0f / sqrtf(pc_warp_sum(ss) / (float)a.E + a.eps);
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int e = lane + 32 * i;
        if (e >= E4) continue;
        float o[4] = { xv[i].x * inv, xv[i].y * inv, xv[i].z * inv, xv[i].w * inv };
        for (int c = 0; c < 4; c++) {
            if (a.w) o[c] *= a.w[(4 * e + c) * a.ws];
            if (a.b) o[c] += a.b[(4 * e + c) * a.bs];
        }
        y[e] = make_float4(o[0], o[1], o[2], o[3]);
    }
}

static __global__ void norm_rows(norm_args a)
{
    pc_dep_wait();
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

static porta_status launch_norm(pc_rec *r, const norm_args &a)
{
    int64_t blocks = (a.M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    int vec = a.cs == 1 && a.E % 4 == 0 && a.E <= 32 * 4 * NV && a.rs % 4 == 0 && ((uintptr_t)a.x & 15) == 0 &&
              ((uintptr_t)a.out & 15) == 0;
    if (vec) PC_CK(r->be, pc_launch(r, norm_rows_vec, dim3((unsigned)blocks), dim3(32 * ROWS_PER_BLOCK), 0, a));
    else PC_CK(r->be, pc_launch(r, norm_rows, dim3((unsigned)blocks), dim3(32 * ROWS_PER_BLOCK), 0, a));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

extern "C" porta_status pc_rmsnorm_rows(pc_rec *r, float *out, const float *x, int64_t M, int64_t K, int64_t xrs,
                                        int64_t xcs, const float *g, int64_t gs, float eps)
{
    norm_args a = { out, x, g, NULL, xrs, xcs, gs, 0, M, K, eps, 0 };
    if ((M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK > 0x7fffffff)
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda: norm of too many rows");
    return M > 0 ? launch_norm(r, a) : PORTA_OK;
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
    return launch_norm(r, a);
}

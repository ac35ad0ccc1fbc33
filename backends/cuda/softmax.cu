/* SOFTMAX over the last dim, one warp per row. */
#include "common.cuh"

#define ROWS_PER_BLOCK 8

static __global__ void softmax_rows(float *out, const float *in, int64_t rs, int64_t cs, int64_t M, int64_t E)
{
    pc_dep_wait();
    int64_t m = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (m >= M) return;
    const float *x = in + m * rs;
    float *y = out + m * E;
    float mx = -INFINITY;
    for (int64_t e = lane; e < E; e += 32) mx = fmaxf(mx, x[e * cs]);
    mx = pc_warp_max(mx);
    float s = 0.0f;
    for (int64_t e = lane; e < E; e += 32) s += expf(x[e * cs] - mx);
    float inv = 1.0f / pc_warp_sum(s);
    for (int64_t e = lane; e < E; e += 32) y[e] = expf(x[e * cs] - mx) * inv;
}

extern "C" porta_status pc_softmax(pc_rec *r, const porta_node *n)
{
    int64_t M, E, rs, cs, Mo, Eo, ors, ocs;
    if (!pc_matrix(&n->in[0], &M, &E, &rs, &cs) || !pc_matrix(&n->out, &Mo, &Eo, &ors, &ocs))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: softmax input does not collapse to rows", n->name);
    if (Mo != M || Eo != E || !porta_ref_dense(&n->out))
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: softmax [%lld,%lld] -> [%lld,%lld] (dense)", n->name,
                       (long long)M, (long long)E, (long long)Mo, (long long)Eo);
    int64_t blocks = (M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    if (blocks > 0x7fffffff) return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: too many rows", n->name);
    if (r->dry || M == 0) return PORTA_OK;
    PC_CK(r->be, pc_launch(r, softmax_rows, dim3((unsigned)blocks), dim3(32 * ROWS_PER_BLOCK), 0, pc_ptr(r, &n->out),
                                                                             pc_ptr(r, &n->in[0]), rs, cs, M, E));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

/* ADD, MUL, SILU, SWIGLU. */
#include "common.cuh"

enum { EW_ADD, EW_MUL, EW_SILU };

static __device__ __forceinline__ float silu(float x)
{
    return x / (1.0f + expf(-x));
}

static __device__ __forceinline__ float apply(int op, float a, float b)
{
    return op == EW_ADD ? a + b : op == EW_MUL ? a * b : silu(a);
}

/* Dense operands, four elements per thread; b (nb elements, nb % 4 == 0)
 * repeats over a. */
static __global__ void ew_dense4(int op, float4 *out, const float4 *a, const float4 *b, int64_t n4, int64_t nb4)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, n4)
    {
        float4 x = a[i], y = b ? b[i % nb4] : x, z;
        z.x = apply(op, x.x, y.x);
        z.y = apply(op, x.y, y.y);
        z.z = apply(op, x.z, y.z);
        z.w = apply(op, x.w, y.w);
        out[i] = z;
    }
}

static __global__ void ew_strided(int op, float *out, const float *a, pc_strided sa, const float *b, pc_strided sb,
                                  int64_t n, int64_t nb)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, n)
    {
        float x = a[pc_offset(sa, i)];
        out[i] = apply(op, x, b ? b[pc_offset(sb, i % nb)] : x);
    }
}

static __global__ void swiglu(float *out, const float *x, int64_t rs, int64_t cs, int64_t M, int64_t F)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, M * F)
    {
        int64_t m = i / F, f = i - m * F;
        const float *row = x + m * rs;
        out[i] = silu(row[f * cs]) * row[(f + F) * cs];
    }
}

static int aligned4(const float *p)
{
    return ((uintptr_t)p & 15) == 0;
}

static porta_status swiglu_node(pc_rec *r, const porta_node *n)
{
    int64_t M, F2, rs, cs, Mo, F, ors, ocs;
    if (!pc_matrix(&n->in[0], &M, &F2, &rs, &cs) || !pc_matrix(&n->out, &Mo, &F, &ors, &ocs))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: swiglu input does not collapse to rows", n->name);
    if (F2 != 2 * F || Mo != M)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: swiglu [%lld,%lld] -> [%lld,%lld]", n->name, (long long)M,
                       (long long)F2, (long long)Mo, (long long)F);
    if (!porta_ref_dense(&n->out))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: swiglu into a strided output", n->name);
    if (r->dry || M * F == 0) return PORTA_OK;
    PC_CK(r->be, pc_launch(r, swiglu, dim3(pc_blocks(M * F, PC_THREADS)), dim3(PC_THREADS), 0, pc_ptr(r, &n->out),
                           pc_ptr(r, &n->in[0]), rs, cs, M, F));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

extern "C" porta_status pc_eltwise(pc_rec *r, const porta_node *n)
{
    if (n->op == PORTA_OP_SWIGLU) return swiglu_node(r, n);
    int op = n->op == PORTA_OP_ADD ? EW_ADD : n->op == PORTA_OP_MUL ? EW_MUL : EW_SILU;
    const porta_ref *ra = &n->in[0], *rb = op == EW_SILU ? NULL : &n->in[1];
    int64_t numel = porta_ref_numel(&n->out), nb = rb ? porta_ref_numel(rb) : 1;
    if (porta_ref_numel(ra) != numel || nb == 0 || numel % nb != 0)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: elementwise a %lld, b %lld, out %lld elements", n->name,
                       (long long)porta_ref_numel(ra), (long long)nb, (long long)numel);
    if (!porta_ref_dense(&n->out))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: elementwise into a strided output", n->name);
    if (r->dry || numel == 0) return PORTA_OK;

    float *out = pc_ptr(r, &n->out);
    const float *a = pc_ptr(r, ra), *b = rb ? pc_ptr(r, rb) : NULL;
    if (porta_ref_dense(ra) && (!rb || (porta_ref_dense(rb) && nb % 4 == 0 && aligned4(b))) && numel % 4 == 0 &&
        aligned4(out) && aligned4(a)) {
        PC_CK(r->be, pc_launch(r, ew_dense4, dim3(pc_blocks(numel / 4, PC_THREADS)), dim3(PC_THREADS), 0, op,
                               (float4 *)out, (const float4 *)a, (const float4 *)b, numel / 4, nb / 4));
    } else {
        pc_strided sb = pc_view(rb ? rb : ra);
        PC_CK(r->be, pc_launch(r, ew_strided, dim3(pc_blocks(numel, PC_THREADS)), dim3(PC_THREADS), 0, op, out, a,
                               pc_view(ra), b, sb, numel, nb));
    }
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}

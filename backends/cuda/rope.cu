/* ROPE with Toto's xPos scaling (see porta_rope in graph.h). Angles and scales
 * are evaluated in double: positions reach thousands and float sin/cos of
 * p * theta^(-2j/D) would carry most of the op's error for a negligible share of
 * a step's time. */
#include "common.cuh"

typedef struct rope_args {
    float *out;                /* dense [B,T,H,D] */
    const float *x;
    int64_t xs[4];             /* x strides b, t, h, d */
    int B, T, H, D;
    float theta, scale_base;
    int xpos, is_key;
    const int32_t *step;       /* NULL: pos 0, n T */
    int rows;
} rope_args;

static __device__ double xpos_u(int k, int D)
{
    return (2.0 * k + 0.4 * D) / (1.4 * D);
}

/* The rotated (and xPos-scaled) pair j of row (b, t, h): y0, y1. Returns 0
 * for rows past the step's count. */
static __device__ __forceinline__ int rope_pair(const rope_args &a, int b, int t, int h, int j, int *pos_out,
                                                float *y0o, float *y1o)
{
    int half = a.D / 2;
    int pos = 0, cnt = a.T;
    if (a.step) {
        pos = a.step[b];
        cnt = a.step[a.rows + b];
    }
    *pos_out = pos;
    if (t >= cnt) return 0;
    const float *x = a.x + b * a.xs[0] + t * a.xs[1] + h * a.xs[2] + 2 * j * a.xs[3];
    double x0 = x[0], x1 = x[a.xs[3]];
    double p = (double)pos + t;
    double sn, cs;
    sincos(p * pow((double)a.theta, -2.0 * j / a.D), &sn, &cs);
    double y0 = x0 * cs - x1 * sn, y1 = x1 * cs + x0 * sn;
    if (a.xpos) {
        int centre = (pos + cnt - 1) / 2;
        double e = (p - centre) / a.scale_base;
        if (a.is_key) e = -e;
        y0 *= pow(xpos_u((2 * j) % half, a.D), e);
        y1 *= pow(xpos_u((2 * j + 1) % half, a.D), e);
    }
    *y0o = (float)y0;
    *y1o = (float)y1;
    return 1;
}

/* Work item i: pair j of head h of row t of batch b. */
static __device__ __forceinline__ void rope_item(const rope_args &a, int64_t i, int *b, int *t, int *h, int *j)
{
    int half = a.D / 2;
    *j = (int)(i % half);
    int64_t r = i / half;
    *h = (int)(r % a.H);
    r /= a.H;
    *t = (int)(r % a.T);
    *b = (int)(r / a.T);
}

static __global__ void rope(rope_args a)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, (int64_t)a.B * a.T * a.H * (a.D / 2))
    {
        int b, t, h, j;
        rope_item(a, i, &b, &t, &h, &j);
        float *y = a.out + (((int64_t)b * a.T + t) * a.H + h) * a.D + 2 * j;
        int pos;
        float y0 = 0.0f, y1 = 0.0f;
        rope_pair(a, b, t, h, j, &pos, &y0, &y1);
        y[0] = y0;
        y[1] = y1;
    }
}

/* KV_APPEND_ROPE: the rotated rows go straight into the cache at pos[b] + t. */
static __global__ void rope_append(rope_args a, int64_t c0, int64_t c1, int64_t c2, int64_t c3, int L)
{
    pc_dep_wait();
    PC_GRID_STRIDE(i, (int64_t)a.B * a.T * a.H * (a.D / 2))
    {
        int b, t, h, j, pos;
        rope_item(a, i, &b, &t, &h, &j);
        float y0, y1;
        /* The host refuses steps that overflow; the bound keeps a bad step
         * block from writing outside the cache. */
        if (!rope_pair(a, b, t, h, j, &pos, &y0, &y1) || pos + t >= L) continue;
        float *c = a.out + b * c0 + h * c1 + (int64_t)(pos + t) * c2 + 2 * j * c3;
        c[0] = y0;
        c[c3] = y1;
    }
}

/* ROPE writes a dense [B,T,H,D]; KV_APPEND_ROPE writes the same rows into
 * the cache layer [B,H,L,D] at the step's positions. */
extern "C" porta_status pc_rope(pc_rec *r, const porta_node *n)
{
    const porta_ref *x = &n->in[0], *o = &n->out;
    int cache = n->op == PORTA_OP_KV_APPEND_ROPE;
    if (x->ndim != 4 || o->ndim != 4 || x->shape[3] % 2 != 0)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: rope wants x[B,T,H,D] with D even", n->name);
    for (int i = 0; i < 4; i++)
        if (x->shape[i] > 0x7fffffff || o->shape[i] > 0x7fffffff)
            return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: rope dims past 2^31", n->name);
    if (cache ? x->shape[0] > o->shape[0] || x->shape[2] != o->shape[1] || x->shape[3] != o->shape[3]
              : x->shape[0] != o->shape[0] || x->shape[1] != o->shape[1] || x->shape[2] != o->shape[2] ||
                    x->shape[3] != o->shape[3])
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: rope x[B,T,H,D] into %s", n->name,
                       cache ? "a cache layer [B,H,L,D]" : "an output of its shape");
    if (!cache && !porta_ref_dense(o))
        return PC_FAIL(r, PORTA_ERR_UNSUPPORTED, "cuda %s: rope into a strided output", n->name);
    rope_args a;
    a.B = (int)x->shape[0];
    a.T = (int)x->shape[1];
    a.H = (int)x->shape[2];
    a.D = (int)x->shape[3];
    a.step = cache || n->p.rope.cached ? r->step : NULL;
    a.rows = r->step_rows;
    if (a.step && a.B > a.rows)
        return PC_FAIL(r, PORTA_ERR_SHAPE, "cuda %s: rope batch %d but the step block has %d rows", n->name, a.B,
                       a.rows);
    int64_t total = (int64_t)a.B * a.T * a.H * (a.D / 2);
    if (r->dry || total == 0) return PORTA_OK;
    a.out = pc_ptr(r, o);
    a.x = pc_ptr(r, x);
    for (int i = 0; i < 4; i++) a.xs[i] = x->stride[i];
    a.theta = n->p.rope.theta;
    a.scale_base = n->p.rope.scale_base;
    a.xpos = n->p.rope.xpos;
    a.is_key = n->p.rope.is_key;
    dim3 grid(pc_blocks(total, PC_THREADS)), block(PC_THREADS);
    if (cache)
        PC_CK(r->be, pc_launch(r, rope_append, grid, block, 0, a, o->stride[0], o->stride[1], o->stride[2],
                               o->stride[3], (int)o->shape[2]));
    else
        PC_CK(r->be, pc_launch(r, rope, grid, block, 0, a));
    PC_CK(r->be, cudaGetLastError());
    return PORTA_OK;
}
